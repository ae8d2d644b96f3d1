"""Who is calling, and may they: authentication, API tokens and the IPS role matrix.

* :func:`authenticate` checks a user (e-mail or user handle) and password against the catalog's
  scrypt hash. A wrong password and an unknown user give the same fault (10001, same reason) after
  the same work: an unknown user is verified against a dummy scrypt hash, so response time tells
  nothing about which users exist.
* Failed attempts are limited (:data:`LIMITER`, designed in :mod:`jobengine.access.loginlimit`): per
  user name and address pair (:data:`MAX_FAILURES` in :data:`FAILURE_WINDOW` seconds, each
  further lock twice as long), and, for pairs that have not signed in before, per user name and
  per address (:data:`SPRAY_FAILURES`); a locked attempt fails fast (no scrypt, no database).
  So one address can slow a spray but not lock an office's users out. :data:`LIMITER` counts in
  Redis (the result backend's server), so the limits hold across every web process of a fleet;
  while Redis does not answer it counts in this process and logs it: a login never fails because
  Redis is down, and an error of the limiter never skips the limit. The address is the peer's,
  or with ``JOBENGINE_TRUSTED_PROXIES`` the one those proxies forwarded
  (:func:`jobengine.web.http.client_address`).
* :func:`authenticate_token` accepts ``je_...`` API tokens for services; only the SHA-256 of the
  secret is stored (:class:`jobengine.store.schema.ApiToken`).
* :func:`authenticate_saml` accepts a SAML 2.0 response or assertion signed by the configured
  identity provider (:mod:`jobengine.access.saml` checks the XML, the signature and the conditions);
  its NameID is a user's e-mail, compared without regard to case.
* :data:`OPERATIONS` is section 10 of the IPS reference, literally (its slips included);
  :func:`authorize_company` applies it and the caller's company memberships (and gives the
  operation the company it resolved), and :func:`check_impersonation` rules submitJob's
  ``userHandle``; :func:`authorize_submit` does both for submitJob and resolves, once, the
  :class:`~jobengine.store.users.Actor` the submission service records.
* The tables are read through :mod:`jobengine.store.users` and :mod:`jobengine.assets.catalog` only.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from jobengine.access.loginlimit import (
    FAILURE_WINDOW,
    MAX_FAILURES,
    SPRAY_FAILURES,
    FailureLimiter,
    RedisFailureLimiter,
)
from jobengine.access.replay import SAML_ASSERTIONS
from jobengine.assets.catalog import (
    company_by_handle,
    hash_password,
    user_by_handle,
    verify_password,
)
from jobengine.errors import (
    IllegalCompany,
    IllegalRequestUser,
    InvalidCredentials,
    InvalidParameter,
    InvalidRequestUser,
    NoCredentials,
    NoImpersonationPermission,
    NoOperationPermission,
    TooManyAttempts,
)
from jobengine.handles import MAX_ROW_ID
from jobengine.runtime import get_runtime
from jobengine.settings import get_settings
from jobengine.store.schema import ApiToken, Company, User, utcnow
from jobengine.store.users import (
    Actor,
    CompanyRef,
    add_token,
    company_ids,
    is_member,
    member_company_ids,
    not_a_member,
    token_by_hash,
    token_by_id,
    token_last_used,
    tokens_with_owner_email,
    user_by_email,
    user_by_id,
)

if TYPE_CHECKING:
    from jobengine.access.saml import SamlConfig, SamlIdentity

__all__ = [
    "ADMIN_TYPES",
    "FAILURE_WINDOW",
    "LIMITER",
    "MAX_FAILURES",
    "OPERATIONS",
    "SPRAY_FAILURES",
    "TOKEN_PREFIX",
    "Actor",
    "Caller",
    "FailureLimiter",
    "InvalidCredentials",
    "NoCredentials",
    "NoImpersonationPermission",
    "RedisFailureLimiter",
    "TokenInfo",
    "TooManyAttempts",
    "authenticate",
    "authenticate_saml",
    "authenticate_token",
    "authorize",
    "authorize_company",
    "authorize_submit",
    "check_impersonation",
    "create_token",
    "list_tokens",
    "revoke_token",
    "revoke_token_id",
]


# Section 10 of the IPS reference, column for column. WebServiceUser is in no column.
_COLUMNS = (
    "IpsUser",
    "IpsAdmin",
    "IpsCompanyAdmin",
    "TrialSiteAdmin",
    "TrialSiteUser",
    "ImagePortalAdmin",
    "ImagePortalUser",
    "ImagePortalContrib",
    "ImagePortalContribUser",
)
_MATRIX: dict[tuple[str, ...], str] = {
    # operations                                    IU IA CA TA TU PA PU PC PCU
    ("submitJob", "executeJob"): "YY.YYY.YY",
    ("getActiveJobs", "getScheduledJobs"): "YYYYYY.YY",
    ("stopJob", "pauseJob", "resumeJob", "deleteJob"): "YYYYYY.YY",
    ("getJobLogs", "getAssetJobLogs"): "YYYYYYYYY",
    ("getJobLogDetails",): "YYY.YYYYY",
    ("saveImageFormat", "deleteImageFormat"): "YYY..Y...",
    ("getImageFormats",): "YYY..YYYY",
}

OPERATIONS: dict[str, frozenset[str]] = {
    operation: frozenset(role for role, mark in zip(_COLUMNS, marks, strict=True) if mark == "Y")
    for operations, marks in _MATRIX.items()
    for operation in operations
}

# The user types that may submit a job as another member of their company.
ADMIN_TYPES = frozenset({"IpsAdmin", "IpsCompanyAdmin", "ImagePortalAdmin", "TrialSiteAdmin"})

TOKEN_PREFIX = "je_"  # noqa: S105 (a prefix, not a secret)

_BAD_CREDENTIALS = "invalid user name or password"
_BAD_TOKEN = "invalid API token"  # noqa: S105 (a fault reason)
_MAX_NAME = 320  # longer user names cannot exist (e-mail limit); not looked up
_MAX_TOKEN = 128
_LAST_USED_RESOLUTION = 60.0  # seconds; a token's last_used_at is written at most this often

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """An authenticated user, as every operation sees it."""

    user_id: int
    handle: str
    email: str
    user_type: str
    company_ids: frozenset[int]


LIMITER: FailureLimiter | RedisFailureLimiter = RedisFailureLimiter()


@functools.cache
def _dummy_hash() -> str:
    """A real scrypt hash that no password matches, verified for users that do not exist."""
    return hash_password(secrets.token_urlsafe(32))


def _pair(user: str, client: str) -> str:
    """The user name and address of an attempt, as one value (names are case-insensitive)."""
    return f"{user.strip().lower()[:_MAX_NAME]} {client[:_MAX_NAME]}"


def _limit_keys(user: str, client: str) -> list[str]:
    """The limiter keys one password attempt counts on: its pair first, then (unless the pair
    signed in before) the user name and the address, which catch guessing from many addresses
    and spraying many names from one (see :mod:`jobengine.access.loginlimit`)."""
    pair = _pair(user, client)
    keys = [f"pair:{pair}"]
    if not LIMITER.known(f"known:{pair}"):
        keys.append(f"user:{user.strip().lower()[:_MAX_NAME]}")
        if client:
            keys.append(f"client:{client[:_MAX_NAME]}")
    return keys


def _caller(session: Session, user: User) -> Caller:
    return Caller(
        user_id=user.id,
        handle=user.handle,
        email=user.email,
        user_type=user.user_type,
        company_ids=member_company_ids(session, user.id),
    )


def _check_password(user: str, password: str) -> Caller | None:
    """The caller if the password is right; None otherwise, after the same scrypt work.

    Known and unknown users cost the same: one indexed lookup, then one scrypt verification
    (against a dummy hash when there is no user or it has no password). Memberships are read
    only after success.
    """
    user_id: int | None = None
    stored = ""
    store = get_runtime().store
    if len(user) <= _MAX_NAME:
        with store.read() as session:
            row = user_by_handle(session, user)
            if row is not None:
                user_id, stored = row.id, row.password_hash
    if not stored.startswith("scrypt$"):
        user_id, stored = None, _dummy_hash()
    if not verify_password(password, stored) or user_id is None:
        return None
    with store.read() as session:
        found = user_by_id(session, user_id)
        return None if found is None else _caller(session, found)


def authenticate(user: str | None, password: str | None, *, client: str = "") -> Caller:
    """The caller named by ``user`` (e-mail or user handle) if ``password`` is theirs.

    NoCredentials (10000) when either is missing or empty; InvalidCredentials (10001) for a wrong
    password or an unknown user alike; TooManyAttempts (10001) while the pair of user name and
    ``client`` (the remote address) is locked out by :data:`LIMITER`, or, for a pair that has not
    signed in before, the user name or the address is.
    """
    if not user or not password:
        raise NoCredentials("no user name and password were given")
    keys = _limit_keys(user, client)
    LIMITER.begin(keys)
    try:
        caller = _check_password(user, password)
    except BaseException:
        LIMITER.give_back(keys)  # the store failed: not the caller's failure
        raise
    if caller is None:
        raise InvalidCredentials(_BAD_CREDENTIALS)
    LIMITER.clear(keys[0])  # the pair's count and its earlier locks
    LIMITER.give_back(keys[1:])
    LIMITER.remember(f"known:{_pair(user, client)}")
    return caller


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate_token(token: str) -> Caller:
    """The owner of a live API token; NoCredentials (10000) if empty, else InvalidCredentials."""
    if not token:
        raise NoCredentials("no API token was given")
    if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN or not token.isascii():
        raise InvalidCredentials(_BAD_TOKEN)
    digest = _token_hash(token)
    store = get_runtime().store
    with store.read() as session:
        row = token_by_hash(session, digest)
        if row is None or row.revoked_at is not None:
            raise InvalidCredentials(_BAD_TOKEN)
        owner = user_by_id(session, row.user_id)
        if owner is None:
            raise InvalidCredentials(_BAD_TOKEN)
        caller = _caller(session, owner)
        last_used, token_id = row.last_used_at, row.id
    now = utcnow()
    if last_used is None or (now - last_used).total_seconds() >= _LAST_USED_RESOLUTION:
        with store.write() as session:
            token_last_used(session, token_id, now)
    return caller


def _user_by_email(email: str) -> Caller | None:
    """The caller whose e-mail is ``email`` (exactly, else ignoring case; None if not one)."""
    with get_runtime().store.read() as session:
        user = user_by_email(session, email)
        return None if user is None else _caller(session, user)


def _first_use(identity: SamlIdentity, config: SamlConfig) -> None:
    """SamlError when the assertion was accepted before (by any web process): each is used
    once, remembered until it expires."""
    from jobengine.access.saml import SamlError

    ttl = (identity.not_on_or_after - utcnow()).total_seconds() + config.clock_skew
    if not SAML_ASSERTIONS.first_use(f"{identity.issuer}\x00{identity.assertion_id}", ttl):
        raise SamlError("the SAML assertion was already used (each is accepted once)")


def authenticate_saml(text: str, *, client: str = "") -> Caller:
    """The user a signed SAML 2.0 response (base64, as in ``authHeader/samlResponse``) names.

    InvalidCredentials (10001) when SAML sign-on is not configured, when any check of
    :func:`jobengine.access.saml.verify_saml` fails (its reason is the fault's), when the assertion
    was used before, or when the NameID is no user's e-mail. A company IdP
    (:mod:`jobengine.access.samlidps`) signs users in for its companies only. Failures are not
    counted in :data:`LIMITER`: a signed assertion cannot be guessed, and counting garbage against
    ``client`` (often an office's shared address) would only let anyone lock that address's
    users out. ``client`` names the caller in the log. A server whose certificate or IdP file
    cannot be read raises ConfigurationError (a server fault).
    """
    from jobengine.access.saml import SamlError, verify_saml  # lxml and signxml: load on use
    from jobengine.access.samlidps import trusted_idp, trusted_idps

    if not text or not text.strip():
        raise NoCredentials("no SAML response was given")
    trusted = trusted_idps(get_settings())
    if not trusted:
        raise InvalidCredentials("SAML sign-on is not configured on this server")
    try:
        idp = trusted_idp(text, trusted)
        identity = verify_saml(text, idp.config)
        _first_use(identity, idp.config)
    except SamlError as exc:
        logger.info("SAML sign-on from %s refused: %s", client or "?", exc.reason)
        raise InvalidCredentials(f"SAML sign-on failed: {exc.reason}") from None
    caller = _user_by_email(identity.name_id)
    if caller is None:
        logger.info("SAML sign-on of an unknown user refused (issuer %s)", identity.issuer)
        raise InvalidCredentials("SAML sign-on failed: the asserted user is not known here")
    return caller if idp.companies is None else _within(caller, idp.companies)


def _within(caller: Caller, handles: frozenset[str]) -> Caller:
    """The caller as a company IdP may vouch for it: a member of that IdP's companies only; an
    IpsAdmin (who acts on every company) is refused."""
    if caller.user_type == "IpsAdmin":
        raise InvalidCredentials(
            "SAML sign-on failed: an IpsAdmin cannot sign in through a company's identity provider"
        )
    with get_runtime().store.read() as session:
        served = company_ids(session, handles)
    companies = caller.company_ids & served
    if not companies:
        raise InvalidCredentials(
            "SAML sign-on failed: the user is in no company this identity provider serves"
        )
    return dataclasses.replace(caller, company_ids=frozenset(companies))


def create_token(user_handle: str, name: str) -> str:
    """A new API token for the user (handle or e-mail); the secret is returned only here."""
    name = name.strip()
    if not name or len(name) > 255:
        raise InvalidParameter("a token name of 1 to 255 characters is required", field="name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with get_runtime().store.write() as session:
        user = user_by_handle(session, user_handle)
        if user is None:
            raise InvalidRequestUser(f"unknown user {user_handle!r}", field="userHandle")
        add_token(session, user.id, name, _token_hash(secret))
    return secret


def revoke_token(token: str) -> None:
    """Revoke an API token (revoking it again does nothing); InvalidParameter if unknown."""
    digest = _token_hash(token)
    _revoke(lambda session: token_by_hash(session, digest))


def revoke_token_id(token_id: int) -> None:
    """Revoke the API token with this id (as :func:`list_tokens` shows it), like revoke_token."""
    if not 0 < token_id <= MAX_ROW_ID:  # no row has it; the store would refuse the number
        raise InvalidParameter("unknown API token", field="token")
    _revoke(lambda session: token_by_id(session, token_id))


def _revoke(find: Callable[[Session], ApiToken | None]) -> None:
    with get_runtime().store.write() as session:
        row = find(session)
        if row is None:
            raise InvalidParameter("unknown API token", field="token")
        if row.revoked_at is None:
            row.revoked_at = utcnow()


@dataclass(frozen=True)
class TokenInfo:
    """An API token as an operator sees it: never its secret (only its hash is stored)."""

    token_id: int
    user: str  # the owner's e-mail
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def list_tokens(user_handle: str | None = None) -> list[TokenInfo]:
    """The API tokens, oldest first, of every user or of one (handle or e-mail)."""
    with get_runtime().store.read() as session:
        owner_id = None
        if user_handle is not None:
            owner = user_by_handle(session, user_handle)
            if owner is None:
                raise InvalidRequestUser(f"unknown user {user_handle!r}", field="userHandle")
            owner_id = owner.id
        rows = tokens_with_owner_email(session, owner_id)
        return [
            TokenInfo(t.id, email, t.name, t.created_at, t.last_used_at, t.revoked_at)
            for t, email in rows
        ]


def _permit(caller: Caller, operation: str) -> None:
    """NoOperationPermission (20003) unless the caller's user type may call ``operation``."""
    if caller.user_type not in OPERATIONS.get(operation, frozenset()):
        raise NoOperationPermission(f"user type {caller.user_type} may not call {operation}")


def _company(session: Session, caller: Caller, company_handle: str) -> Company:
    """The company named by ``company_handle`` if the caller may act on it: InvalidCompany
    (20000) if none, IllegalCompany (20006) if the caller is no member (IpsAdmin acts on all)."""
    company = company_by_handle(session, company_handle)
    if caller.user_type != "IpsAdmin" and company.id not in caller.company_ids:
        raise IllegalCompany(
            f"company {company_handle!r} is not one of the caller's", field="companyHandle"
        )
    return company


def authorize_company(
    caller: Caller, operation: str, company_handle: str | None
) -> CompanyRef | None:
    """The company the caller may run ``operation`` on (None without a company handle),
    resolved for the operation to use as it is.

    NoOperationPermission (20003) if the caller's user type may not call the operation (or the
    operation is unknown); InvalidCompany (20000) if the handle names no company; IllegalCompany
    (20006) if the caller is not a member of it (IpsAdmin acts on every company).
    """
    _permit(caller, operation)
    if company_handle is None:
        return None
    with get_runtime().store.read() as session:
        company = _company(session, caller, company_handle)
        return CompanyRef(company.id, company.handle)


def authorize(caller: Caller, operation: str, company_handle: str | None) -> int | None:
    """The id of the company :func:`authorize_company` resolves (None without a handle)."""
    company = authorize_company(caller, operation, company_handle)
    return None if company is None else company.id


def _is_self(caller: Caller, user_handle: str) -> bool:
    return user_handle in (caller.handle, caller.email)


def _may_impersonate(caller: Caller, company_id: int) -> None:
    """NoImpersonationPermission (20004) unless the caller is an :data:`ADMIN_TYPES` user of
    the company (IpsAdmin: of any); asked before the other user is looked up (no oracle)."""
    admin_here = caller.user_type in ADMIN_TYPES and (
        caller.user_type == "IpsAdmin" or company_id in caller.company_ids
    )
    if not admin_here:
        raise NoImpersonationPermission(
            f"{caller.handle} may not submit jobs as another user", field="userHandle"
        )


def _impersonated(session: Session, caller: Caller, user_handle: str, company_id: int) -> int:
    """The id of the user an admin submits as: InvalidRequestUser (20002) if unknown,
    IllegalRequestUser (20007) if outside the company (and not the caller)."""
    target = user_by_handle(session, user_handle)
    if target is None:
        raise InvalidRequestUser(f"unknown user {user_handle!r}", field="userHandle")
    if target.id != caller.user_id and not is_member(session, target.id, company_id):
        raise IllegalRequestUser(
            f"user {user_handle!r} is not a member of the company", field="userHandle"
        )
    return target.id


def check_impersonation(caller: Caller, user_handle: str | None, company_id: int) -> None:
    """Whether the caller may submit a job in ``company_id`` to run as ``user_handle``.

    The caller itself (handle or e-mail) always passes. Otherwise the caller must be an
    :data:`ADMIN_TYPES` user of that company (IpsAdmin: of any), else NoImpersonationPermission
    (20004) without looking the user up (no oracle of who exists); for such an admin, an unknown
    user is InvalidRequestUser (20002) and one outside the company IllegalRequestUser (20007).
    """
    if not user_handle or _is_self(caller, user_handle):
        return
    _may_impersonate(caller, company_id)
    with get_runtime().store.read() as session:
        _impersonated(session, caller, user_handle, company_id)


def authorize_submit(caller: Caller, company_handle: str, user_handle: str | None) -> Actor:
    """Who a submitJob of the caller acts as, resolved once, in one read of the store.

    The rules of :func:`authorize` ("submitJob") and :func:`check_impersonation`, then the
    submission service's own: the submitter and the user the job runs as are members of the
    company (IllegalRequestUser, 20007: an IpsAdmin may name any company, but submits only in
    its own). The caller's memberships are those read when it was authenticated.
    """
    _permit(caller, "submitJob")
    with get_runtime().store.read() as session:
        company = _company(session, caller, company_handle)
        company_id, handle = company.id, company.handle
        run_as: int | None = None
        if user_handle and not _is_self(caller, user_handle):
            _may_impersonate(caller, company_id)
            run_as = _impersonated(session, caller, user_handle, company_id)
    member = company_id in caller.company_ids
    if user_handle:
        run_as = caller.user_id if run_as is None else run_as
        if run_as == caller.user_id and not member:
            raise not_a_member(user_handle, handle, "userHandle")
    if not member:
        raise not_a_member(caller.handle, handle, "user")
    return Actor(company_id, handle, caller.user_id, run_as)
