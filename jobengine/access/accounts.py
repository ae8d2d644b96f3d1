"""The catalog's accounts as operators administer them: companies, users, API tokens.

``jobengine companies|users|tokens`` (:mod:`jobengine.cli.admin`) calls these. The rows are
written where the demo seeding and the tests write them too: companies and users by
:func:`jobengine.assets.catalog.create_company` and :func:`jobengine.assets.catalog.create_user`
(which hashes the password with scrypt, as :func:`jobengine.access.auth.authenticate` checks it),
tokens by
:func:`jobengine.access.auth.create_token` and revoked by :mod:`jobengine.access.auth`. What this
module adds is an operator's strictness: a duplicate is an error, not an update (the seeding
refreshes on purpose), and every value is checked before anything is written. Each failure is an IPS
fault with a one-line reason: InvalidParameter (30001) for a bad or duplicate value,
MissingParameter (30002) for an empty password, InvalidCompany (20000) for an unknown company and
InvalidRequestUser (20002) for an unknown user.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exc, func, select
from sqlalchemy.orm import Session

from jobengine.access.auth import (
    TokenInfo,
    create_token,
    list_tokens,
    revoke_token,
    revoke_token_id,
)
from jobengine.assets.catalog import (
    USER_TYPES,
    company_by_handle,
    create_company,
    create_user,
    set_user_password,
    user_by_handle,
)
from jobengine.errors import InvalidParameter, InvalidRequestUser, MissingParameter, caller_faults
from jobengine.runtime import get_runtime
from jobengine.store.schema import Company, Membership, User

__all__ = [
    "USER_TYPES",
    "CompanyInfo",
    "TokenInfo",
    "UserInfo",
    "add_company",
    "add_user",
    "create_token",
    "list_companies",
    "list_tokens",
    "list_users",
    "revoke_token",
    "revoke_token_id",
    "set_password",
]

# A handle names the company in every IPS call and job handle (``47``, ``c|47``): one plain
# token, so neither ``|`` nor white space.
_COMPANY_HANDLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# One address: a local part and a dotted domain, no white space and one ``@``. Not RFC 5322;
# enough to catch a slip (a missing ``@``, a pasted name) before it becomes a login.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_MAX_EMAIL = 255
_MAX_NAME = 100  # first and last names (the users table's columns)
_MAX_COMPANY_NAME = 255
_MAX_PASSWORD = 1024  # scrypt reads it all: no megabyte passwords


@dataclass(frozen=True)
class CompanyInfo:
    """A company as ``jobengine companies list`` shows it."""

    handle: str
    name: str
    created_at: datetime
    users: int


@dataclass(frozen=True)
class UserInfo:
    """A user as ``jobengine users list`` shows it (never its password hash)."""

    handle: str
    email: str
    user_type: str
    first_name: str
    last_name: str
    companies: tuple[str, ...]
    created_at: datetime


def _plain_text(value: str, what: str, field: str, limit: int, *, required: bool) -> str:
    """``value`` without surrounding white space, checked: length and no control characters."""
    text = value.strip()
    if required and not text:
        raise InvalidParameter(f"{what} cannot be empty", field=field)
    if len(text) > limit:
        raise InvalidParameter(f"{what} has at most {limit} characters", field=field)
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise InvalidParameter(f"{what} cannot hold control characters", field=field)
    return text


def _check_email(email: str) -> str:
    address = email.strip()
    if len(address) > _MAX_EMAIL or not _EMAIL.fullmatch(address):
        raise InvalidParameter(
            f"{address[:80]!r} is not an e-mail address (name@example.com)", field="email"
        )
    return address


def _check_user_type(user_type: str) -> str:
    if user_type not in USER_TYPES:
        raise InvalidParameter(
            f"unknown user type {user_type[:40]!r}; one of {', '.join(USER_TYPES)}",
            field="userType",
        )
    return user_type


def _check_password(password: str) -> str:
    if not password:
        raise MissingParameter("the password cannot be empty", field="password")
    if len(password) > _MAX_PASSWORD:
        raise InvalidParameter(
            f"the password has at most {_MAX_PASSWORD} characters", field="password"
        )
    return password


@contextmanager
def _unique(what: str, field: str) -> Iterator[None]:
    """A unique constraint that fails at commit (two operators at once) as the duplicate it is."""
    try:
        yield
    except exc.IntegrityError:
        raise InvalidParameter(f"{what} exists already", field=field) from None


@caller_faults
def add_company(handle: str, name: str) -> CompanyInfo:
    """Create a company (with its root folder); InvalidParameter if the handle is taken."""
    if not _COMPANY_HANDLE.fullmatch(handle):
        raise InvalidParameter(
            f"company handle {handle[:80]!r} must be 1 to 64 letters, digits, '-', '_' or '.'",
            field="companyHandle",
        )
    title = _plain_text(name, "the company name", "name", _MAX_COMPANY_NAME, required=True)
    duplicate = f"a company with handle {handle!r}"
    with _unique(duplicate, "companyHandle"), get_runtime().store.write() as session:
        if session.scalar(select(Company.id).where(Company.handle == handle)) is not None:
            raise InvalidParameter(f"{duplicate} exists already", field="companyHandle")
        company = create_company(session, handle, title)
        return CompanyInfo(company.handle, company.name, company.created_at, 0)


@caller_faults
def list_companies() -> list[CompanyInfo]:
    """Every company, by handle, with its number of users."""
    with get_runtime().store.read() as session:
        companies = session.scalars(select(Company).order_by(Company.handle)).all()
        counts: dict[int, int] = {}
        for company_id in session.scalars(select(Membership.company_id)):
            counts[company_id] = counts.get(company_id, 0) + 1
        return [CompanyInfo(c.handle, c.name, c.created_at, counts.get(c.id, 0)) for c in companies]


@caller_faults
def add_user(
    email: str,
    password: str,
    user_type: str,
    companies: Sequence[str],
    *,
    first_name: str = "",
    last_name: str = "",
) -> UserInfo:
    """Create a user of ``user_type``, a member of ``companies`` (handles; IpsAdmin may have none).

    InvalidParameter for a bad e-mail or user type, or an e-mail already taken; MissingParameter
    for an empty password; InvalidCompany for an unknown company.
    """
    address = _check_email(email)
    kind = _check_user_type(user_type)
    secret = _check_password(password)
    first = _plain_text(first_name, "the first name", "firstName", _MAX_NAME, required=False)
    last = _plain_text(last_name, "the last name", "lastName", _MAX_NAME, required=False)
    if not companies and kind != "IpsAdmin":
        raise MissingParameter(f"a {kind} needs at least one company", field="companyHandle")
    duplicate = f"a user with e-mail {address!r}"
    with _unique(duplicate, "email"), get_runtime().store.write() as session:
        members = [company_by_handle(session, handle) for handle in dict.fromkeys(companies)]
        if _email_taken(session, address):
            raise InvalidParameter(f"{duplicate} exists already", field="email")
        user = create_user(
            session, address, secret, kind, members, first_name=first, last_name=last
        )
        return _info(user, [c.handle for c in members])


def _email_taken(session: Session, address: str) -> bool:
    """Whether a user has this e-mail in any case (SAML sign-in compares e-mails without case,
    and refuses a name two users share), or has it as its handle (sign-in accepts both)."""
    clash = select(User.id).where(
        (func.lower(User.email) == address.lower()) | (User.handle == address)
    )
    return session.scalar(clash.limit(1)) is not None


def _info(user: User, companies: list[str]) -> UserInfo:
    return UserInfo(
        user.handle,
        user.email,
        user.user_type,
        user.first_name,
        user.last_name,
        tuple(sorted(companies)),
        user.created_at,
    )


@caller_faults
def list_users(company: str | None = None) -> list[UserInfo]:
    """Every user by e-mail, or the members of one company (InvalidCompany if unknown)."""
    with get_runtime().store.read() as session:
        query = select(User).order_by(User.email)
        if company is not None:
            company_id = company_by_handle(session, company).id
            query = query.join(Membership, Membership.user_id == User.id).where(
                Membership.company_id == company_id
            )
        users = session.scalars(query).all()
        rows = session.execute(
            select(Membership.user_id, Company.handle).join(
                Company, Company.id == Membership.company_id
            )
        ).all()
        handles: dict[int, list[str]] = {}
        for user_id, handle in rows:
            handles.setdefault(user_id, []).append(handle)
        return [_info(u, handles.get(u.id, [])) for u in users]


@caller_faults
def set_password(user: str, password: str) -> None:
    """Give a user (handle or e-mail) a new password; InvalidRequestUser if unknown."""
    secret = _check_password(password)
    with get_runtime().store.write() as session:
        row = user_by_handle(session, user)
        if row is None:
            raise InvalidRequestUser(f"unknown user {user[:80]!r}", field="userHandle")
        set_user_password(row, secret)
