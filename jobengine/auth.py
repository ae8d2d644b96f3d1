"""Who is calling, and may they: authentication, API tokens and the IPS role matrix.

* :func:`authenticate` checks a user (e-mail or user handle) and password against the catalog's
  scrypt hash. A wrong password and an unknown user give the same fault (10001, same reason) after
  the same work: an unknown user is verified against a dummy scrypt hash, so response time tells
  nothing about which users exist.
* Failed attempts are limited per user name and per client (:data:`LIMITER`): after
  :data:`MAX_FAILURES` attempts within :data:`FAILURE_WINDOW` seconds further attempts fail fast
  (no scrypt, no database) for the rest of the window. The limiter lives in this process and is
  thread-safe; a fleet of web processes multiplies the allowance by the process count and should
  move it to Redis (an ``INCR`` + ``EXPIRE`` per key does the same job).
* :func:`authenticate_token` accepts ``je_...`` API tokens for services; only the SHA-256 of the
  secret is stored (:class:`jobengine.store.schema.ApiToken`).
* :data:`OPERATIONS` is section 10 of the IPS reference, literally (its slips included);
  :func:`authorize` applies it and the caller's company memberships, and
  :func:`check_impersonation` rules submitJob's ``userHandle``.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobengine.catalog import company_by_handle, hash_password, user_by_handle, verify_password
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
from jobengine.runtime import get_runtime
from jobengine.store.schema import ApiToken, Membership, User, utcnow

__all__ = [
    "ADMIN_TYPES",
    "FAILURE_WINDOW",
    "LIMITER",
    "MAX_FAILURES",
    "OPERATIONS",
    "TOKEN_PREFIX",
    "Caller",
    "FailureLimiter",
    "InvalidCredentials",
    "NoCredentials",
    "NoImpersonationPermission",
    "TooManyAttempts",
    "authenticate",
    "authenticate_token",
    "authorize",
    "check_impersonation",
    "create_token",
    "revoke_token",
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
MAX_FAILURES = 5
FAILURE_WINDOW = 60.0

_BAD_CREDENTIALS = "invalid user name or password"
_BAD_TOKEN = "invalid API token"  # noqa: S105 (a fault reason)
_MAX_NAME = 320  # longer user names cannot exist (e-mail limit); not looked up
_MAX_TOKEN = 128
_LAST_USED_RESOLUTION = 60.0  # seconds; a token's last_used_at is written at most this often


@dataclass(frozen=True)
class Caller:
    """An authenticated user, as every operation sees it."""

    user_id: int
    handle: str
    email: str
    user_type: str
    company_ids: frozenset[int]


class FailureLimiter:
    """Attempts per key (user name, client) in fixed windows; thread-safe, in this process only.

    An attempt is counted when it starts (so concurrent guesses cannot pass the limit together)
    and given back when it succeeds. A key with ``max_failures`` counted attempts in its window is
    locked until the window, which starts at its first attempt, has passed.
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures, self.window, self.clock, self.max_keys = (
            max_failures,
            window,
            clock,
            max_keys,
        )
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, int]] = {}  # key -> (window start, attempts)

    def begin(self, keys: Sequence[str]) -> None:
        """Count an attempt on every key; TooManyAttempts (counting nothing) if one is locked."""
        with self._lock:
            now = self.clock()
            live = {key: self._live(key, now) for key in keys}
            locked = [start for start, count in live.values() if count >= self.max_failures]
            if locked:
                raise TooManyAttempts(max(locked) + self.window - now)
            for key, (start, count) in live.items():
                if self._entries.get(key, (None,))[0] != start:
                    self._entries.pop(key, None)  # a new window goes last: kept in start order
                self._entries[key] = (start, count + 1)
            self._trim(now)

    def give_back(self, keys: Sequence[str]) -> None:
        """Uncount the attempt begun on these keys (it succeeded, or never got to check)."""
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries[key] = (entry[0], max(0, entry[1] - 1))

    def clear(self, key: str | None = None) -> None:
        """Forget one key, or everything."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def _live(self, key: str, now: float) -> tuple[float, int]:
        entry = self._entries.get(key)
        if entry is None or now - entry[0] >= self.window:
            return (now, 0)
        return entry

    def _trim(self, now: float) -> None:
        if len(self._entries) <= self.max_keys:
            return
        for key, (start, _) in list(self._entries.items()):
            if now - start >= self.window:
                del self._entries[key]
        while len(self._entries) > self.max_keys:  # still full: drop the oldest windows
            del self._entries[next(iter(self._entries))]


LIMITER = FailureLimiter()


@functools.cache
def _dummy_hash() -> str:
    """A real scrypt hash that no password matches, verified for users that do not exist."""
    return hash_password(secrets.token_urlsafe(32))


def _limit_keys(user: str, client: str) -> list[str]:
    keys = [f"user:{user.strip().lower()[:_MAX_NAME]}"]
    if client:
        keys.append(f"client:{client[:_MAX_NAME]}")
    return keys


def _caller(session: Session, user: User) -> Caller:
    companies = session.scalars(
        select(Membership.company_id).where(Membership.user_id == user.id)
    ).all()
    return Caller(
        user_id=user.id,
        handle=user.handle,
        email=user.email,
        user_type=user.user_type,
        company_ids=frozenset(companies),
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
        found = session.get(User, user_id)
        return None if found is None else _caller(session, found)


def authenticate(user: str | None, password: str | None, *, client: str = "") -> Caller:
    """The caller named by ``user`` (e-mail or user handle) if ``password`` is theirs.

    NoCredentials (10000) when either is missing or empty; InvalidCredentials (10001) for a wrong
    password or an unknown user alike; TooManyAttempts (10001) while the user name or ``client``
    (the remote address, for example) is locked out by :data:`LIMITER`.
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
    LIMITER.clear(keys[0])
    LIMITER.give_back(keys[1:])
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
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        if row is None or row.revoked_at is not None:
            raise InvalidCredentials(_BAD_TOKEN)
        owner = session.get(User, row.user_id)
        if owner is None:
            raise InvalidCredentials(_BAD_TOKEN)
        caller = _caller(session, owner)
        last_used, token_id = row.last_used_at, row.id
    now = utcnow()
    if last_used is None or (now - last_used).total_seconds() >= _LAST_USED_RESOLUTION:
        with store.write() as session:
            fresh = session.get(ApiToken, token_id)
            if fresh is not None:
                fresh.last_used_at = now
    return caller


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
        session.add(ApiToken(user_id=user.id, name=name, token_hash=_token_hash(secret)))
    return secret


def revoke_token(token: str) -> None:
    """Revoke an API token (revoking it again does nothing); InvalidParameter if unknown."""
    with get_runtime().store.write() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
        if row is None:
            raise InvalidParameter("unknown API token", field="token")
        if row.revoked_at is None:
            row.revoked_at = utcnow()


def authorize(caller: Caller, operation: str, company_handle: str | None) -> int | None:
    """The company id the caller may run ``operation`` on (None without a company handle).

    NoOperationPermission (20003) if the caller's user type may not call the operation (or the
    operation is unknown); InvalidCompany (20000) if the handle names no company; IllegalCompany
    (20006) if the caller is not a member of it (IpsAdmin acts on every company).
    """
    if caller.user_type not in OPERATIONS.get(operation, frozenset()):
        raise NoOperationPermission(f"user type {caller.user_type} may not call {operation}")
    if company_handle is None:
        return None
    with get_runtime().store.read() as session:
        company_id = company_by_handle(session, company_handle).id
    if caller.user_type != "IpsAdmin" and company_id not in caller.company_ids:
        raise IllegalCompany(
            f"company {company_handle!r} is not one of the caller's", field="companyHandle"
        )
    return company_id


def check_impersonation(caller: Caller, user_handle: str | None, company_id: int) -> None:
    """Whether the caller may submit a job in ``company_id`` to run as ``user_handle``.

    The caller itself (handle or e-mail) always passes. Otherwise the caller must be an
    :data:`ADMIN_TYPES` user of that company (IpsAdmin: of any), else NoImpersonationPermission
    (20004) without looking the user up (no oracle of who exists); for such an admin, an unknown
    user is InvalidRequestUser (20002) and one outside the company IllegalRequestUser (20007).
    """
    if not user_handle or user_handle in (caller.handle, caller.email):
        return
    admin_here = caller.user_type in ADMIN_TYPES and (
        caller.user_type == "IpsAdmin" or company_id in caller.company_ids
    )
    if not admin_here:
        raise NoImpersonationPermission(
            f"{caller.handle} may not submit jobs as another user", field="userHandle"
        )
    with get_runtime().store.read() as session:
        target = user_by_handle(session, user_handle)
        if target is None:
            raise InvalidRequestUser(f"unknown user {user_handle!r}", field="userHandle")
        member = session.get(Membership, (target.id, company_id)) is not None
    if target.id != caller.user_id and not member:
        raise IllegalRequestUser(
            f"user {user_handle!r} is not a member of the company", field="userHandle"
        )
