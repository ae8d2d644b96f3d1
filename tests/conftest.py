"""Real parts for the tests: Redis, a job store (SQLite and PostgreSQL), Celery worker processes.

* Redis: ``REDIS_URL`` when set (its database is flushed), else the embedded server.
* Store: every test that uses ``stack`` runs once on SQLite and once on PostgreSQL
  (``TEST_POSTGRES_URL``, default the CI machines' server). Locally a missing PostgreSQL skips
  those runs with the reason; under CI (``CI=true``) it fails them.
* Workers: real ``celery worker`` processes (prefork), started per store and stopped by PID.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

# Without REDIS_URL, anything that reads Celery's configuration before base_env applies starts
# the embedded Redis of JOBENGINE_HOME: give this session a home of its own, so that such a
# server never lands in a developer's ./var, and stop it at the end.
_COLLECTION_HOME = tempfile.mkdtemp(prefix="jobengine-tests-")
os.environ.setdefault("JOBENGINE_HOME", _COLLECTION_HOME)
# The suite's stores are new databases that its processes (this one, the workers it starts)
# share: they migrate them at start, on PostgreSQL too (whose default, check, and the upgrade
# itself are tested in tests/store/test_migrations.py).
os.environ.setdefault("JOBENGINE_DB_UPGRADE", "auto")

# After the environment above: these import jobengine, which may read it.
from tests.support.moto_s3 import MotoS3  # noqa: E402
from tests.support.stack import TEST_ENV, Stack, apply_env, drop_databases, store_url  # noqa: E402
from tests.support.web import WebServer  # noqa: E402


def pytest_sessionfinish(session: pytest.Session) -> None:
    from jobengine.embedded import stop_redis
    from jobengine.settings import Settings

    stop_redis(Settings.from_env({"JOBENGINE_HOME": _COLLECTION_HOME}))  # ours only: its pidfile


@pytest.fixture(scope="session")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment shared by the test process and the workers it starts."""
    home = tmp_path_factory.mktemp("jobengine")
    env = {"JOBENGINE_HOME": str(home), **TEST_ENV}
    started = False
    settings: Any = None
    if os.environ.get("REDIS_URL"):
        import redis

        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    else:
        from jobengine.embedded import start_redis
        from jobengine.settings import Settings

        settings = Settings.from_env({**os.environ, **env})
        started = start_redis(settings)
    apply_env(env)
    yield env
    if started:
        from jobengine.embedded import stop_redis

        stop_redis(settings)


@pytest.fixture(autouse=True)
def _fresh_login_limits(request: pytest.FixtureRequest) -> Iterator[None]:
    """Failed logins of one test do not lock out the next.

    jobengine.access.auth counts failed logins in Redis, shared by this process and the web servers
    the tests start, all calling from 127.0.0.1: after a test that used the session's Redis, its
    counts are dropped (as a window's end would).
    """
    yield
    if "base_env" in request.fixturenames:
        from jobengine.access.auth import RedisFailureLimiter

        if not _LOGIN_LIMITS:
            _LOGIN_LIMITS.append(RedisFailureLimiter())  # one client, for the whole session
        _LOGIN_LIMITS[0].clear()


_LOGIN_LIMITS: list[Any] = []


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def store_backend(
    request: pytest.FixtureRequest,
    base_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """The environment for one store backend (the session runs each in turn)."""
    home = tmp_path_factory.mktemp(str(request.param))
    env = {
        **base_env,
        "DATABASE_URL": store_url(str(request.param), home),
        "JOBENGINE_STORAGE": str(home / "storage"),
    }
    apply_env(env)
    yield env
    from jobengine.runtime import reset_runtime

    reset_runtime()
    drop_databases()


@pytest.fixture(scope="session")
def stack(store_backend: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A store backend with one running worker."""
    apply_env(store_backend)
    backend = "postgres" if "postgresql" in store_backend["DATABASE_URL"] else "sqlite"
    running = Stack(store_backend, backend)
    running.start_worker()
    yield running
    running.stop()


@pytest.fixture
def store_only(store_backend: dict[str, str]) -> dict[str, str]:
    """A store backend without a worker (for tests that start their own processes)."""
    apply_env(store_backend)
    return store_backend


@pytest.fixture
def private_queue(store_only: dict[str, str]) -> Iterator[tuple[dict[str, str], str]]:
    """This process routes ExportJob to a queue of its own (a fresh name) for one test: its
    messages wait there, read by no worker of the session."""
    queue = f"convert-{uuid.uuid4().hex[:8]}"
    env = {**store_only, "JOBENGINE_QUEUES": f"export={queue}"}
    apply_env(env)
    try:
        yield env, queue
    finally:
        os.environ.pop("JOBENGINE_QUEUES", None)
        apply_env(store_only)


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[WebServer]:
    """``jobengine serve`` on the module's stack (one server per test module)."""
    server = WebServer(stack.env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto's real S3 server, one per test module."""
    server = MotoS3(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()
