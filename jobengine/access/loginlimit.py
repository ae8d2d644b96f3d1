"""Failed-login limits that slow an attacker without letting one lock out an office.

Keys (built by :mod:`jobengine.access.auth`) are ``<kind>:<value>``; the kind decides the limit:

* ``pair:<user name> <address>``: :attr:`FailureLimiter.max_failures` (5) attempts per window.
  The pair is what guessing one account from one place costs; a lock there touches no one else.
* ``user:<user name>`` and ``client:<address>``: :attr:`FailureLimiter.spray_failures` (50).
  They stop guessing one account from many addresses and spraying many accounts from one
  address. A pair that signed in successfully within :data:`KNOWN_FOR` (30 days) is *known*
  and is not held by these two: a spray from an office's shared address, or from anywhere at one
  user, never locks out the people who sign in from where they always do.

A key with its limit of attempts in a window (which starts at its first attempt) is locked; each
lock of the same key within :data:`STRIKE_MEMORY` (a day) lasts twice as long as the one before
(60 s, 120 s, 240 s ...), at most :data:`MAX_LOCK` (an hour). Attempts are counted when they
start, so concurrent guesses cannot pass a limit together, and given back when they succeed.

:class:`FailureLimiter` counts in this process; :class:`RedisFailureLimiter` counts in Redis
(one Lua script per attempt: checked and counted atomically across every web process) and falls
back to a :class:`FailureLimiter` while Redis fails, never skipping the limit.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import cast

import redis

from jobengine.access.shared_redis import SharedRedis, settings_redis
from jobengine.errors import TooManyAttempts

__all__ = [
    "FAILURE_WINDOW",
    "KNOWN_FOR",
    "MAX_FAILURES",
    "MAX_LOCK",
    "SPRAY_FAILURES",
    "STRIKE_MEMORY",
    "FailureLimiter",
    "RedisFailureLimiter",
]

MAX_FAILURES = 5  # per user name and address pair, in one window
SPRAY_FAILURES = 50  # per user name (any address) and per address (any user name)
FAILURE_WINDOW = 60.0  # seconds; the first lock of a key lasts this long
MAX_LOCK = 3600.0  # the longest lock, however many came before
STRIKE_MEMORY = 86400.0  # earlier locks of a key count for its backoff this long
KNOWN_FOR = 30 * 86400.0  # a pair that signed in is known (not held by spray locks) this long

logger = logging.getLogger(__name__)


class FailureLimiter:
    """The limits of the module docstring, in this process only; thread-safe and bounded."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW,
        *,
        spray_failures: int = SPRAY_FAILURES,
        max_lock: float = MAX_LOCK,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures, self.window, self.spray_failures = max_failures, window, spray_failures
        self.max_lock, self.clock, self.max_keys = max_lock, clock, max_keys
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, int]] = {}  # key -> (window end, attempts)
        self._strikes: dict[str, tuple[float, int]] = {}  # key -> (forgotten at, locks)
        self._known: dict[str, float] = {}  # pair key -> forgotten at

    def limit(self, key: str) -> int:
        """The attempts a key allows in a window: by its kind (``pair:`` or the others)."""
        return self.max_failures if key.startswith("pair:") else self.spray_failures

    def lock_ms(self, strikes: int) -> int:
        """How long the ``strikes``-th lock of a key lasts (ms)."""
        return round(min(self.max_lock, self.window * 2.0 ** min(strikes - 1, 40)) * 1000)

    def begin(self, keys: Sequence[str]) -> None:
        """Count an attempt on every key; TooManyAttempts (counting nothing) if one is locked."""
        with self._lock:
            now = self.clock()
            self._raise_if_locked(keys, now)
            for key in keys:
                end, count = self._live(key, now)
                count += 1
                if count == self.limit(key):  # this attempt fills the window: the lock
                    strikes = self._strike(key, now)
                    end = max(end, now + self.lock_ms(strikes) / 1000)
                self._entries.pop(key, None)  # kept in insertion order for trimming
                self._entries[key] = (end, count)
            self._trim(now)

    def check(self, keys: Sequence[str]) -> None:
        """TooManyAttempts if one of the keys is locked; counts nothing."""
        with self._lock:
            self._raise_if_locked(keys, self.clock())

    def give_back(self, keys: Sequence[str]) -> None:
        """Uncount the attempt begun on these keys (it succeeded, or never got to check)."""
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None or entry[1] <= 0:
                    continue
                if entry[1] == self.limit(key):  # that attempt had struck: it was no failure
                    until, strikes = self._strikes.get(key, (0.0, 0))
                    self._strikes[key] = (until, max(0, strikes - 1))
                self._entries[key] = (entry[0], entry[1] - 1)

    def clear(self, key: str | None = None) -> None:
        """Forget one key (its count and its earlier locks), or everything."""
        with self._lock:
            if key is None:
                self._entries.clear()
                self._strikes.clear()
                self._known.clear()
            else:
                self._entries.pop(key, None)
                self._strikes.pop(key, None)

    def remember(self, key: str) -> None:
        """Mark a pair as known (it signed in) for :data:`KNOWN_FOR`."""
        with self._lock:
            self._known.pop(key, None)
            self._known[key] = self.clock() + KNOWN_FOR
            while len(self._known) > self.max_keys:
                del self._known[next(iter(self._known))]

    def known(self, key: str) -> bool:
        """Whether a pair signed in within :data:`KNOWN_FOR`."""
        with self._lock:
            return self._known.get(key, 0.0) > self.clock()

    def _raise_if_locked(self, keys: Sequence[str], now: float) -> None:
        locked = [
            end for key in keys for end, count in [self._live(key, now)] if count >= self.limit(key)
        ]
        if locked:
            raise TooManyAttempts(max(locked) - now)

    def _live(self, key: str, now: float) -> tuple[float, int]:
        entry = self._entries.get(key)
        if entry is None or now >= entry[0]:
            return (now + self.window, 0)
        return entry

    def _strike(self, key: str, now: float) -> int:
        until, strikes = self._strikes.get(key, (0.0, 0))
        strikes = strikes + 1 if until > now else 1
        self._strikes[key] = (now + STRIKE_MEMORY, strikes)
        return strikes

    def _trim(self, now: float) -> None:
        for table in (self._entries, self._strikes):
            if len(table) <= self.max_keys:
                continue
            for key, (until, _) in list(table.items()):
                if until <= now:
                    del table[key]
            while len(table) > self.max_keys:  # still full: drop the oldest
                del table[next(iter(table))]


# One attempt on every key, atomically. KEYS: the counters, then each one's strike counter;
# ARGV: window, longest lock, strike memory (ms), then each counter's limit. Nothing is counted
# if a key is locked, and the longest remaining lock (ms) is returned; -1 once all are counted.
# A window starts at a key's first attempt (PEXPIRE when INCR creates it); the attempt that
# fills it sets the lock, doubled for each lock of the key remembered in its strike counter.
_BEGIN_SCRIPT = """
local n = #KEYS / 2
local window, cap, memory = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local locked = -1
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[3 + i]) then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], window)
      ttl = window
    end
    locked = math.max(locked, ttl)
  end
end
if locked >= 0 then
  return locked
end
for i = 1, n do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 or redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], window)
  end
  if count == tonumber(ARGV[3 + i]) then
    local strikes = redis.call('INCR', KEYS[n + i])
    redis.call('PEXPIRE', KEYS[n + i], memory)
    local lock = math.min(cap, window * 2 ^ math.min(strikes - 1, 40))
    redis.call('PEXPIRE', KEYS[i], math.max(redis.call('PTTL', KEYS[i]), math.floor(lock)))
  end
end
return -1
"""
# Uncount one attempt per key (never below zero, never creating a key; DECR keeps the TTL); an
# attempt that had struck takes its strike back. KEYS and ARGV (limits only) as above.
_GIVE_BACK_SCRIPT = """
local n = #KEYS / 2
for i = 1, n do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count > 0 then
    redis.call('DECR', KEYS[i])
    if count == tonumber(ARGV[i]) and tonumber(redis.call('GET', KEYS[n + i]) or '0') > 0 then
      redis.call('DECR', KEYS[n + i])
    end
  end
end
return 0
"""


class RedisFailureLimiter:
    """:class:`FailureLimiter`'s limits, counted in Redis: shared by every process using it.

    ``connect`` makes the client (default: the result backend's Redis, made again when the
    settings change). Keys are stored hashed under ``prefix`` (a password typed as user name is
    never kept), with their window or lock as TTL, so nothing is left behind. Each call tries
    Redis; when Redis fails (down, timeout, out of memory, any error) the same call goes to
    ``fallback``, an in-process :class:`FailureLimiter`, and Redis is tried again after
    ``retry_interval`` seconds. Locks the fallback took during an outage still hold once Redis
    answers again. The outage and the recovery are logged once each.
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW,
        *,
        spray_failures: int = SPRAY_FAILURES,
        max_lock: float = MAX_LOCK,
        connect: Callable[[], redis.Redis] = settings_redis,
        prefix: str = "jobengine:{login-failures}:",
        retry_interval: float = 5.0,
        fallback: FailureLimiter | None = None,
    ) -> None:
        self.max_failures, self.window, self.prefix = max_failures, window, prefix
        self.spray_failures, self.max_lock = spray_failures, max_lock
        self.retry_interval = retry_interval
        self.fallback = (
            FailureLimiter(max_failures, window, spray_failures=spray_failures, max_lock=max_lock)
            if fallback is None
            else fallback
        )
        self._shared = SharedRedis(
            "failed-login limits are counted per process: Redis is unavailable",
            "failed-login limits are shared through Redis again",
            connect=connect,
            retry_interval=retry_interval,
            log=logger,
        )

    def begin(self, keys: Sequence[str]) -> None:
        """Count an attempt on every key; TooManyAttempts (counting nothing) if one is locked."""
        self.fallback.check(keys)  # a lock taken while Redis was down
        client = self._shared.client()
        if client is not None:
            ms = [self._ms(self.window), self._ms(self.max_lock), self._ms(STRIKE_MEMORY)]
            args = [*ms, *(self.fallback.limit(k) for k in keys)]
            try:
                locked = self._run(client, _BEGIN_SCRIPT, keys, *args)
            except Exception as exc:  # any failure of the shared count: count here instead
                self._shared.failed(exc)
            else:
                self._shared.answered()
                if locked >= 0:
                    raise TooManyAttempts(locked / 1000)
                return
        self.fallback.begin(keys)

    def give_back(self, keys: Sequence[str]) -> None:
        """Uncount the attempt begun on these keys (it succeeded, or never got to check)."""
        client = self._shared.client()
        if client is not None:
            try:
                self._run(client, _GIVE_BACK_SCRIPT, keys, *map(self.fallback.limit, keys))
            except Exception as exc:
                self._shared.failed(exc)
            else:
                self._shared.answered()
                return
        self.fallback.give_back(keys)

    def clear(self, key: str | None = None) -> None:
        """Forget one key (its count and earlier locks), or every key of this limiter."""
        self.fallback.clear(key)

        def forget(client: redis.Redis) -> None:
            if key is not None:
                client.delete(*self._keys([key]))
                return
            for found in client.scan_iter(match=self._glob() + "*", count=500):
                client.delete(found)

        self._try(forget)

    def remember(self, key: str) -> None:
        """Mark a pair as known (it signed in) for :data:`KNOWN_FOR`, in every process."""
        if not self._try(lambda client: client.set(self._hashed(key), 1, px=self._ms(KNOWN_FOR))):
            self.fallback.remember(key)

    def known(self, key: str) -> bool:
        """Whether a pair signed in within :data:`KNOWN_FOR` (in Redis, else here)."""
        shared = False

        def look(client: redis.Redis) -> None:
            nonlocal shared
            shared = bool(client.exists(self._hashed(key)))

        self._try(look)
        return shared or self.fallback.known(key)

    def _try(self, call: Callable[[redis.Redis], object]) -> bool:
        """Run ``call`` on the shared Redis; False if Redis did not do it."""
        client = self._shared.client()
        if client is None:
            return False
        try:
            call(client)
        except Exception as exc:
            self._shared.failed(exc)
            return False
        self._shared.answered()
        return True

    def _run(self, client: redis.Redis, script: str, keys: Sequence[str], *args: int) -> int:
        # EVALSHA, loading the script when the server does not have it (redis-py's Script)
        return int(cast("int", client.register_script(script)(self._keys(keys), args)))

    def _keys(self, keys: Sequence[str]) -> list[str]:
        """The Redis keys of counters: each counter, then each one's strike counter."""
        counters = [self._hashed(k) for k in keys]
        return [*counters, *(f"{c}:strikes" for c in counters)]

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    def _hashed(self, key: str) -> str:
        """``<prefix><kind>:<sha256 of the rest>``: a password typed as user name is not kept."""
        kind, _, value = key.partition(":")
        return f"{self.prefix}{kind}:{hashlib.sha256(value.encode()).hexdigest()}"

    def _glob(self) -> str:
        return "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)  # Redis glob
