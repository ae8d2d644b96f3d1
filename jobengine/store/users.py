"""Users, memberships, API tokens and companies as the surfaces ask about them, and the
:class:`Actor` a request acts as.

Each function reads (or writes) in the caller's session and is named for what it returns, so
that :mod:`jobengine.access.auth`, the web layer and the operations never write a query of their
own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobengine.errors import IllegalRequestUser
from jobengine.store.schema import ApiToken, Company, Membership, User

__all__ = [
    "Actor",
    "CompanyLike",
    "CompanyRef",
    "add_token",
    "company_handles",
    "company_ids",
    "is_member",
    "member_company_ids",
    "not_a_member",
    "token_by_hash",
    "token_by_id",
    "token_last_used",
    "tokens_with_owner_email",
    "user_by_email",
    "user_by_id",
]


class CompanyLike(Protocol):
    """A company as the operations use it: its id and stored handle (a row or a CompanyRef)."""

    @property
    def id(self) -> int: ...

    @property
    def handle(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CompanyRef:
    """A company its caller resolved already (:func:`jobengine.access.auth.authorize_company`): an
    operation given one does not look the company up again."""

    id: int
    handle: str


@dataclass(frozen=True, slots=True)
class Actor:
    """Who a submission acts as, resolved once per request: the company (id and stored
    handle), the submitting user and the user the job runs as (``userHandle``), each already
    checked to be a member of the company. ``None`` for a user not given."""

    company_id: int
    company_handle: str
    user_id: int | None = None
    run_as_id: int | None = None


def not_a_member(user: str, company_handle: str, field: str) -> IllegalRequestUser:
    """The fault (20007) for a submitter or run-as user (``field``) outside the company."""
    return IllegalRequestUser(
        f"user {user!r} is not a member of company {company_handle!r}", field=field
    )


def user_by_id(session: Session, user_id: int) -> User | None:
    """The user with this id, if any."""
    return session.get(User, user_id)


def user_by_email(session: Session, email: str) -> User | None:
    """The user whose e-mail is ``email`` exactly, else the one user whose e-mail matches it
    ignoring case (None when none does, or two e-mails differ only in case)."""
    user = session.scalar(select(User).where(User.email == email))
    if user is not None:
        return user
    found = session.scalars(
        select(User).where(func.lower(User.email) == func.lower(email)).limit(2)
    ).all()
    return found[0] if len(found) == 1 else None


def member_company_ids(session: Session, user_id: int) -> frozenset[int]:
    """The ids of the companies the user is a member of."""
    rows = session.scalars(select(Membership.company_id).where(Membership.user_id == user_id))
    return frozenset(rows.all())


def is_member(session: Session, user_id: int, company_id: int) -> bool:
    """Whether the user is a member of the company."""
    return session.get(Membership, (user_id, company_id)) is not None


def company_ids(session: Session, handles: Iterable[str]) -> set[int]:
    """The ids of the companies with these (stored) handles; unknown handles are left out."""
    return set(session.scalars(select(Company.id).where(Company.handle.in_(list(handles)))))


def company_handles(session: Session, ids: Iterable[int]) -> set[str]:
    """The handles of the companies with these ids; unknown ids are left out."""
    return set(session.scalars(select(Company.handle).where(Company.id.in_(list(ids)))))


def token_by_hash(session: Session, token_hash: str) -> ApiToken | None:
    """The API token whose secret hashes to ``token_hash`` (revoked or not), if any."""
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))


def token_by_id(session: Session, token_id: int) -> ApiToken | None:
    """The API token with this id, if any."""
    return session.get(ApiToken, token_id)


def add_token(session: Session, user_id: int, name: str, token_hash: str) -> ApiToken:
    """Record a new API token of the user (only the hash of its secret)."""
    token = ApiToken(user_id=user_id, name=name, token_hash=token_hash)
    session.add(token)
    return token


def tokens_with_owner_email(
    session: Session, user_id: int | None = None
) -> list[tuple[ApiToken, str]]:
    """The API tokens, oldest first, each with its owner's e-mail: every user's, or one's."""
    query = select(ApiToken, User.email).join(User, User.id == ApiToken.user_id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return [(token, str(email)) for token, email in session.execute(query.order_by(ApiToken.id))]


def token_last_used(session: Session, token_id: int, when: datetime) -> None:
    """Record when the token was last used (nothing if it is gone)."""
    token = session.get(ApiToken, token_id)
    if token is not None:
        token.last_used_at = when
