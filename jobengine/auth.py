"""Who is calling, and may they: authentication, API tokens and the IPS role matrix.

* :func:`authenticate` checks a user (e-mail or user handle) and password against the catalog's
  scrypt hash. A wrong password and an unknown user give the same fault (10001, same reason) after
  the same work: an unknown user is verified against a dummy scrypt hash, so response time tells
  nothing about which users exist.
* Failed attempts are limited per user name and per client (:data:`LIMITER`): after
  :data:`MAX_FAILURES` attempts within :data:`FAILURE_WINDOW` seconds further attempts fail fast
  (no scrypt, no database) for the rest of the window. :data:`LIMITER` counts in Redis (the
  result backend's server), so the limits hold across every web process of a fleet
  (:class:`RedisFailureLimiter`: one Lua script per attempt, keys with the window as TTL). While
  Redis does not answer it counts in this process (:class:`FailureLimiter`) and logs it: a login
  never fails because Redis is down, and an error of the limiter never skips the limit.
* :func:`authenticate_token` accepts ``je_...`` API tokens for services; only the SHA-256 of the
  secret is stored (:class:`jobengine.store.schema.ApiToken`).
* :func:`authenticate_saml` accepts a SAML 2.0 response or assertion signed by the configured
  identity provider (:mod:`jobengine.saml` checks the XML, the signature and the conditions); its
  NameID is a user's e-mail, compared without regard to case. Failed attempts count against the
  client in :data:`LIMITER`, as failed passwords do.
* :data:`OPERATIONS` is section 10 of the IPS reference, literally (its slips included);
  :func:`authorize` applies it and the caller's company memberships, and
  :func:`check_impersonation` rules submitJob's ``userHandle``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import func, select
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
from jobengine.settings import get_settings
from jobengine.store.schema import ApiToken, Membership, User, utcnow

if TYPE_CHECKING:
    from jobengine.saml import SamlConfig

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
    "RedisFailureLimiter",
    "TooManyAttempts",
    "authenticate",
    "authenticate_saml",
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

logger = logging.getLogger(__name__)


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

    def check(self, keys: Sequence[str]) -> None:
        """TooManyAttempts if one of the keys is locked; counts nothing."""
        with self._lock:
            now = self.clock()
            live = (self._live(key, now) for key in keys)
            locked = [start for start, count in live if count >= self.max_failures]
            if locked:
                raise TooManyAttempts(max(locked) + self.window - now)

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


# One attempt on every key, atomically: nothing is counted if one key is locked, and then the
# longest remaining lock (ms) is returned; -1 once every key is counted. A key's window starts
# at its first attempt (PEXPIRE when INCR creates it); a key found without a TTL gets one.
_BEGIN_SCRIPT = """
local max, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local locked = -1
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= max then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, window)
      ttl = window
    end
    locked = math.max(locked, ttl)
  end
end
if locked >= 0 then
  return locked
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 or redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, window)
  end
end
return -1
"""
# Uncount one attempt per key (never below zero, never creating a key; DECR keeps the TTL).
_GIVE_BACK_SCRIPT = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
  end
end
return 0
"""


def _settings_redis() -> redis.Redis:
    """A client of the result backend's Redis (``REDIS_URL``, else the embedded server).

    Short timeouts and no retries: a login waits at most about a second for an unreachable
    Redis, and an attempt is never counted twice by a retried script.
    """
    from jobengine.embedded import redis_url

    return redis.Redis.from_url(
        redis_url(get_settings()),
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


class RedisFailureLimiter:
    """:class:`FailureLimiter`'s limits, counted in Redis: shared by every process using it.

    ``connect`` makes the client (default: the result backend's Redis, made again when the
    settings change). The keys (``user:<name>``, ``client:<address>``) are stored hashed under
    ``prefix``, with the window as their TTL, so nothing is left behind. Each call tries Redis
    (one Lua script: checked and counted atomically across processes); when Redis fails
    (down, timeout, out of memory, any error) the same call goes to ``fallback``, an in-process
    :class:`FailureLimiter`, and Redis is tried again after ``retry_interval`` seconds. Locks
    that the fallback took during an outage still hold once Redis answers again. The outage and
    the recovery are logged once each.
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW,
        *,
        connect: Callable[[], redis.Redis] = _settings_redis,
        prefix: str = "jobengine:{login-failures}:",
        retry_interval: float = 5.0,
        fallback: FailureLimiter | None = None,
    ) -> None:
        self.max_failures, self.window, self.prefix = max_failures, window, prefix
        self.retry_interval = retry_interval
        self.fallback = FailureLimiter(max_failures, window) if fallback is None else fallback
        self._connect = connect
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._client_settings: object = None
        self._down_until = 0.0  # monotonic time before which Redis is not tried
        self._outage = False

    def begin(self, keys: Sequence[str]) -> None:
        """Count an attempt on every key; TooManyAttempts (counting nothing) if one is locked."""
        self.fallback.check(keys)  # a lock taken while Redis was down
        client = self._redis()
        if client is not None:
            try:
                locked = self._run(client, _BEGIN_SCRIPT, keys, self.max_failures, self._ms())
            except Exception as exc:  # any failure of the shared count: count here instead
                self._failed(exc)
            else:
                self._answered()
                if locked >= 0:
                    raise TooManyAttempts(locked / 1000)
                return
        self.fallback.begin(keys)

    def give_back(self, keys: Sequence[str]) -> None:
        """Uncount the attempt begun on these keys (it succeeded, or never got to check)."""
        if not self._shared(_GIVE_BACK_SCRIPT, keys):
            self.fallback.give_back(keys)

    def clear(self, key: str | None = None) -> None:
        """Forget one key, or every key of this limiter (here and in Redis)."""
        self.fallback.clear(key)
        client = self._redis()
        if client is None:
            return
        try:
            if key is not None:
                client.delete(self._key(key))
            else:
                for found in client.scan_iter(match=self._glob() + "*", count=500):
                    client.delete(found)
        except Exception as exc:
            self._failed(exc)
        else:
            self._answered()

    def _shared(self, script: str, keys: Sequence[str]) -> bool:
        """Run a script on the shared counts; False if Redis did not do it."""
        client = self._redis()
        if client is None:
            return False
        try:
            self._run(client, script, keys)
        except Exception as exc:
            self._failed(exc)
            return False
        self._answered()
        return True

    def _run(self, client: redis.Redis, script: str, keys: Sequence[str], *args: int) -> int:
        # EVALSHA, loading the script when the server does not have it (redis-py's Script)
        return int(cast("int", client.register_script(script)([self._key(k) for k in keys], args)))

    def _ms(self) -> int:
        return max(1, round(self.window * 1000))

    def _key(self, key: str) -> str:
        """``<prefix><kind>:<sha256 of the rest>``: a password typed as user name is not kept."""
        kind, _, value = key.partition(":")
        return f"{self.prefix}{kind}:{hashlib.sha256(value.encode()).hexdigest()}"

    def _glob(self) -> str:
        return "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)  # Redis glob

    def _redis(self) -> redis.Redis | None:
        """The client for the current settings, or None while Redis is taken to be down."""
        with self._lock:
            if time.monotonic() < self._down_until:
                return None
            settings = get_settings()
            if self._client is None or self._client_settings is not settings:
                old, self._client = self._client, None
                if old is not None:
                    with contextlib.suppress(Exception):
                        old.close()
                try:
                    self._client = self._connect()
                except Exception as exc:  # the embedded Redis would not start, a bad URL...
                    self._down_until = time.monotonic() + self.retry_interval
                    self._log_outage(exc)
                    return None
                self._client_settings = settings
            return self._client

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self.retry_interval
            self._log_outage(exc)

    def _log_outage(self, exc: Exception) -> None:
        if not self._outage:
            self._outage = True
            logger.warning(
                "failed-login limits are counted per process: Redis is unavailable (%s: %s)",
                type(exc).__name__,
                exc,
            )

    def _answered(self) -> None:
        if self._outage:
            with self._lock:
                if self._outage:
                    self._outage = False
                    logger.warning("failed-login limits are shared through Redis again")


LIMITER: FailureLimiter | RedisFailureLimiter = RedisFailureLimiter()


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


def _saml_config() -> SamlConfig | None:
    """The SAML settings, None when sign-on is off; ConfigurationError for an unreadable cert."""
    from jobengine.saml import SamlConfig, load_certificates  # lxml and signxml: load on use

    settings = get_settings()
    if not settings.saml_idp_cert:
        return None
    return SamlConfig(
        certificates=load_certificates(settings.saml_idp_cert),
        entity_id=settings.saml_idp_entity_id or "",
        audience=settings.saml_audience or "",
        clock_skew=settings.saml_clock_skew,
    )


def _user_by_email(email: str) -> Caller | None:
    """The caller whose e-mail is ``email`` (exactly, else ignoring case; None if not one)."""
    with get_runtime().store.read() as session:
        user = session.scalar(select(User).where(User.email == email))
        if user is None:
            found = session.scalars(
                select(User).where(func.lower(User.email) == func.lower(email)).limit(2)
            ).all()
            user = found[0] if len(found) == 1 else None  # two e-mails differing in case: none
        return None if user is None else _caller(session, user)


def authenticate_saml(text: str, *, client: str = "") -> Caller:
    """The user a signed SAML 2.0 response (base64, as in ``authHeader/samlResponse``) names.

    InvalidCredentials (10001) when SAML sign-on is not configured, when any check of
    :func:`jobengine.saml.verify_saml` fails (its reason is the fault's), or when the NameID is
    no user's e-mail; TooManyAttempts (10001) while ``client`` is locked out. Failures count
    against ``client`` in :data:`LIMITER` (there is no user name to count them on). A server
    whose certificate file cannot be read raises ConfigurationError (a server fault, logged).
    """
    from jobengine.saml import SamlError, verify_saml

    if not text or not text.strip():
        raise NoCredentials("no SAML response was given")
    config = _saml_config()
    if config is None:
        raise InvalidCredentials("SAML sign-on is not configured on this server")
    keys = [f"client:{client[:_MAX_NAME]}"] if client else []
    if keys:
        LIMITER.begin(keys)
    try:
        identity = verify_saml(text, config)
        caller = _user_by_email(identity.name_id)
    except SamlError as exc:
        raise InvalidCredentials(f"SAML sign-on failed: {exc.reason}") from None
    except BaseException:
        if keys:
            LIMITER.give_back(keys)  # the store failed: not the caller's failure
        raise
    if caller is None:
        logger.info("SAML sign-on of an unknown user refused (issuer %s)", identity.issuer)
        raise InvalidCredentials("SAML sign-on failed: the asserted user is not known here")
    if keys:
        LIMITER.give_back(keys)
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
