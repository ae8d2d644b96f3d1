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

from jobengine.access.shared_redis import SharedRedis, settings_redis

__all__ = ["SAML_ASSERTIONS", "ReplayCache"]

logger = logging.getLogger(__name__)


class ReplayCache:
    """IDs seen, each until its expiry: in Redis, else (an outage) in this process."""

    def __init__(
        self,
        prefix: str,
        *,
        connect: Callable[[], redis.Redis] = settings_redis,
        max_local: int = 100_000,
        retry_interval: float = 5.0,
    ) -> None:
        self.prefix, self.max_local, self.retry_interval = prefix, max_local, retry_interval
        self._shared = SharedRedis(
            "replay checks are per process: Redis is unavailable",
            "replay checks are shared through Redis again",
            connect=connect,
            retry_interval=retry_interval,
            log=logger,
        )
        self._lock = threading.Lock()
        self._local: dict[str, float] = {}  # hashed id -> forgotten at (monotonic)

    def first_use(self, value: str, ttl: float) -> bool:
        """True the first time ``value`` is seen within ``ttl`` seconds, False after that."""
        key = self.prefix + hashlib.sha256(value.encode()).hexdigest()
        client = self._shared.client()
        if client is not None:
            try:
                fresh = bool(client.set(key, 1, nx=True, px=max(1000, round(ttl * 1000))))
            except Exception as exc:  # any failure of the shared record: remember it here
                self._shared.failed(exc)
            else:
                self._shared.answered()
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


SAML_ASSERTIONS = ReplayCache("jobengine:{saml-seen}:")
