"""A Redis shared by every process of a fleet, used while it answers.

The failed-login limits (:mod:`jobengine.access.loginlimit`) and the SAML replay cache
(:mod:`jobengine.access.replay`) keep their records there, and fall back to this process while it
does not answer. :class:`SharedRedis` is the part they share: the client (made again when the
settings change), a pause of ``retry_interval`` seconds after a failure before Redis is asked
again, and the outage and the recovery each logged once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobengine.embedded import redis_url
from jobengine.settings import get_settings

__all__ = ["SharedRedis", "settings_redis"]

logger = logging.getLogger(__name__)


def settings_redis() -> redis.Redis:
    """A client of the result backend's Redis (``REDIS_URL``, else the embedded server).

    Short timeouts and no retries: a caller waits at most about a second for an unreachable
    Redis, and a retried script or ``SET NX`` never counts or refuses the very call that made it.
    """
    return redis.Redis.from_url(
        redis_url(get_settings()),
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


class SharedRedis:
    """The shared Redis of one use, with its outage handling; ``outage`` and ``recovery`` are
    the lines logged on ``log`` (the user's logger; the outage's line takes the error)."""

    def __init__(
        self,
        outage: str,
        recovery: str,
        *,
        connect: Callable[[], redis.Redis] = settings_redis,
        retry_interval: float = 5.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.retry_interval = retry_interval
        self._log = log or logger
        self._outage_line, self._recovery_line = outage, recovery
        self._connect = connect
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._client_settings: object = None
        self._down_until = 0.0  # monotonic time before which Redis is not tried
        self._outage = False

    def client(self) -> redis.Redis | None:
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

    def failed(self, exc: Exception) -> None:
        """A call on the client failed: Redis is left alone for ``retry_interval`` seconds."""
        with self._lock:
            self._down_until = time.monotonic() + self.retry_interval
            self._log_outage(exc)

    def answered(self) -> None:
        """A call on the client succeeded (the end of an outage is logged once)."""
        if self._outage:
            with self._lock:
                if self._outage:
                    self._outage = False
                    self._log.warning(self._recovery_line)

    def _log_outage(self, exc: Exception) -> None:
        if not self._outage:
            self._outage = True
            self._log.warning("%s (%s: %s)", self._outage_line, type(exc).__name__, exc)
