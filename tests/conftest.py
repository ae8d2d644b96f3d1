"""Real parts for the tests: Redis, a job store (SQLite and PostgreSQL), Celery worker processes.

* Redis: ``REDIS_URL`` when set (its database is flushed), else the embedded server.
* Store: every test that uses ``stack`` runs once on SQLite and once on PostgreSQL
  (``TEST_POSTGRES_URL``, default the CI machines' server). Locally a missing PostgreSQL skips
  those runs with the reason; under CI (``CI=true``) it fails them.
* Workers: real ``celery worker`` processes (prefork), started per store and stopped by PID.
"""

from __future__ import annotations

import os
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import Service

# Without REDIS_URL, anything that reads Celery's configuration before base_env applies starts
# the embedded Redis of JOBENGINE_HOME: give this session a home of its own, so that such a
# server never lands in a developer's ./var, and stop it at the end.
_COLLECTION_HOME = tempfile.mkdtemp(prefix="jobengine-tests-")
os.environ.setdefault("JOBENGINE_HOME", _COLLECTION_HOME)
# The suite's stores are new databases that its processes (this one, the workers it starts)
# share: they migrate them at start, on PostgreSQL too (whose default, check, and the upgrade
# itself are tested in tests/test_migrations.py).
os.environ.setdefault("JOBENGINE_DB_UPGRADE", "auto")


def pytest_sessionfinish(session: pytest.Session) -> None:
    from jobengine.embedded import stop_redis
    from jobengine.settings import Settings

    stop_redis(Settings.from_env({"JOBENGINE_HOME": _COLLECTION_HOME}))  # ours only: its pidfile


POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

TEST_ENV = {
    "JOBENGINE_LEASE_SECONDS": "3",
    "JOBENGINE_OUTBOX_GRACE": "1",
    "JOBENGINE_STALL_SECONDS": "6",
    "JOBENGINE_IDLE_SECONDS": "2",
    "JOBENGINE_ETA_HORIZON": "5",
    "JOBENGINE_VISIBILITY_TIMEOUT": "60",
    "JOBENGINE_TASK_TIME_LIMIT": "30",
    "JOBENGINE_BEAT_INTERVAL": "0.2",
    "JOBENGINE_TIMEZONE": "UTC",
    # UploadUrlsJob fetches from the tests' own HTTP servers (tests/test_upload_urls.py)
    "JOBENGINE_UPLOAD_ALLOWED_HOSTS": "127.0.0.1",
    "JOBENGINE_UPLOAD_MAX_BYTES": "1048576",
    "JOBENGINE_UPLOAD_READ_TIMEOUT": "2",
    "JOBENGINE_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",  # tests/test_callbacks.py's HTTP server
}


def unavailable(what: str, why: str) -> None:
    """Skip locally, fail under CI: a CI machine must have every real service."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI: {why}")
    pytest.skip(f"{what} not available: {why}")


def _apply_env(env: dict[str, str]) -> None:
    os.environ.update(env)
    from jobengine.engine.app import configure
    from jobengine.runtime import reset_runtime

    reset_runtime()
    configure()


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
    _apply_env(env)
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


def _store_url(backend: str, home: Path) -> str:
    """A fresh store: a SQLite file, or a PostgreSQL database of this test session's own."""
    if backend == "sqlite":
        return f"sqlite:///{home / 'store.db'}"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from jobengine.store.db import normalize_url

    name = f"jobengine_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", f"{POSTGRES_URL}: {exc}")
    admin.dispose()
    _CREATED_DATABASES.append(name)
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


_CREATED_DATABASES: list[str] = []


def _drop_databases() -> None:
    from sqlalchemy import create_engine, text

    from jobengine.store.db import normalize_url

    admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in _CREATED_DATABASES:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    _CREATED_DATABASES.clear()


class Worker(Service):
    """A real ``celery worker`` process with our app, stopped by its PID."""

    what = "worker"

    def __init__(
        self,
        env: dict[str, str],
        concurrency: int = 2,
        name: str | None = None,
        queues: list[str] | None = None,
    ) -> None:
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        from jobengine.cli.devstack import worker_command

        argv = [*worker_command(concurrency, queues=queues), "-n", f"{self.name}@%h"]
        self.start(argv, Path(env["JOBENGINE_HOME"]) / f"{self.name}.log", env)
        self.wait_ready()

    def ready(self) -> bool:
        return b" ready." in self.log.read_bytes()

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        super().stop(sig, timeout)


class Stack:
    """The running system for one store backend, with helpers for the tests."""

    def __init__(self, env: dict[str, str], backend: str) -> None:
        self.env, self.backend = env, backend
        self.workers: list[Worker] = []

    def start_worker(self, concurrency: int = 2) -> Worker:
        worker = Worker(self.env, concurrency)
        self.workers.append(worker)
        return worker

    def company(self, n_images: int = 3, **kwargs: Any) -> tuple[str, list[str]]:
        """A fresh company with a user and ``n_images`` generated images; (handle, assets)."""
        from tests.helpers import make_company

        return make_company(n_images, **kwargs)

    def wait(self, company: str, handle: str, timeout: float = 60) -> Any:
        """The finished job log (with details) of the job's latest run."""
        from jobengine.cli.devstack import wait_for_runs

        return wait_for_runs(company, [handle], timeout=timeout)[-1]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


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
        "DATABASE_URL": _store_url(str(request.param), home),
        "JOBENGINE_STORAGE": str(home / "storage"),
    }
    _apply_env(env)
    yield env
    from jobengine.runtime import reset_runtime

    reset_runtime()
    if _CREATED_DATABASES:
        _drop_databases()


@pytest.fixture(scope="session")
def stack(store_backend: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A store backend with one running worker."""
    _apply_env(store_backend)
    backend = "postgres" if "postgresql" in store_backend["DATABASE_URL"] else "sqlite"
    running = Stack(store_backend, backend)
    running.start_worker()
    yield running
    running.stop()


@pytest.fixture
def store_only(store_backend: dict[str, str]) -> dict[str, str]:
    """A store backend without a worker (for tests that start their own processes)."""
    _apply_env(store_backend)
    return store_backend


@pytest.fixture
def private_queue(store_only: dict[str, str]) -> Iterator[tuple[dict[str, str], str]]:
    """This process routes ExportJob to a queue of its own (a fresh name) for one test: its
    messages wait there, read by no worker of the session."""
    queue = f"convert-{uuid.uuid4().hex[:8]}"
    env = {**store_only, "JOBENGINE_QUEUES": f"export={queue}"}
    _apply_env(env)
    try:
        yield env, queue
    finally:
        os.environ.pop("JOBENGINE_QUEUES", None)
        _apply_env(store_only)
