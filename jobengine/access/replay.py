"""Things accepted once: the IDs of SAML assertions, remembered until they expire.

:meth:`ReplayCache.first_use` records an ID with ``SET NX PX`` in Redis (the result backend's
server, shared by every web process of a fleet): the first call for an ID says yes, every later
one no, until the ID's time is up (then the assertion itself has expired). IDs are stored
hashed under ``jobengine:{saml-seen}:``. While Redis does not answer, IDs are remembered in this
process (bounded; the outage is logged once): a replay to another process is then possible for
the outage only, and a sign-on never fails because Redis is down.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobengine.settings import get_settings

__all__ = ["SAML_ASSERTIONS", "ReplayCache"]

logger = logging.getLogger(__name__)


def _settings_redis() -> redis.Redis:
    """A client of the result backend's Redis with short timeouts and no retries (a retried
    SET NX could refuse the very call that made it)."""
    from jobengine.embedded import redis_url

    return redis.Redis.from_url(
        redis_url(get_settings()),
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


class ReplayCache:
    """IDs seen, each until its expiry: in Redis, else (an outage) in this process."""

    def __init__(
        self,
        prefix: str,
        *,
        connect: Callable[[], redis.Redis] = _settings_redis,
        max_local: int = 100_000,
        retry_interval: float = 5.0,
    ) -> None:
        self.prefix, self.max_local, self.retry_interval = prefix, max_local, retry_interval
        self._connect = connect
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._client_settings: object = None
        self._local: dict[str, float] = {}  # hashed id -> forgotten at (monotonic)
        self._down_until = 0.0
        self._outage = False

    def first_use(self, value: str, ttl: float) -> bool:
        """True the first time ``value`` is seen within ``ttl`` seconds, False after that."""
        key = self.prefix + hashlib.sha256(value.encode()).hexdigest()
        client = self._redis()
        if client is not None:
            try:
                fresh = bool(client.set(key, 1, nx=True, px=max(1000, round(ttl * 1000))))
            except Exception as exc:  # any failure of the shared record: remember it here
                self._failed(exc)
            else:
                self._answered()
                return fresh and self._first_locally(key, ttl, keep_only=True)
        return self._first_locally(key, ttl)

    def _first_locally(self, key: str, ttl: float, *, keep_only: bool = False) -> bool:
        """Record ``key`` here (``keep_only``: Redis decided; an ID seen here during an outage
        still counts). True when it was not seen here."""
        now = time.monotonic()
        with self._lock:
            seen = self._local.get(key, 0.0) > now
            if not keep_only or seen:
                self._local[key] = now + ttl
            self._trim(now)
        return not seen

    def _trim(self, now: float) -> None:
        if len(self._local) <= self.max_local:
            return
        for key, until in list(self._local.items()):
            if until <= now:
                del self._local[key]
        while len(self._local) > self.max_local:
            del self._local[next(iter(self._local))]

    def _redis(self) -> redis.Redis | None:
        with self._lock:
            if time.monotonic() < self._down_until:
                return None
            settings = get_settings()
            if self._client is None or self._client_settings is not settings:
                try:
                    self._client = self._connect()
                except Exception as exc:
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
                "replay checks are per process: Redis is unavailable (%s: %s)",
                type(exc).__name__,
                exc,
            )

    def _answered(self) -> None:
        if self._outage:
            with self._lock:
                self._outage = False
            logger.warning("replay checks are shared through Redis again")


SAML_ASSERTIONS = ReplayCache("jobengine:{saml-seen}:")
