"""The running system the tests use: its environment, its stores, its worker processes.

``tests/conftest.py`` builds its fixtures (``stack``, ``store_only``...) from these; a test module
imports them for types (``Stack``) or to start a process of its own (``Worker``).
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Service

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
    # UploadUrlsJob fetches from the tests' own HTTP servers (tests/kinds/test_upload_urls.py)
    "JOBENGINE_UPLOAD_ALLOWED_HOSTS": "127.0.0.1",
    "JOBENGINE_UPLOAD_MAX_BYTES": "1048576",
    "JOBENGINE_UPLOAD_READ_TIMEOUT": "2",
    "JOBENGINE_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",  # the callback server (tests/support/net.py)
}


def unavailable(what: str, why: str) -> None:
    """Skip locally, fail under CI: a CI machine must have every real service."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI: {why}")
    pytest.skip(f"{what} not available: {why}")


def apply_env(env: dict[str, str]) -> None:
    os.environ.update(env)
    from jobengine.engine.app import configure
    from jobengine.runtime import reset_runtime

    reset_runtime()
    configure()


def store_url(backend: str, home: Path) -> str:
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


def drop_database(url: str) -> None:
    """Drop one database ``store_url`` created (nothing for a SQLite file), before the end of
    the session: for a module's own store."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    if name in _CREATED_DATABASES:
        _drop([name])
        _CREATED_DATABASES.remove(name)


def drop_databases() -> None:
    """Drop the PostgreSQL databases ``store_url`` created (none on SQLite)."""
    _drop(_CREATED_DATABASES)
    _CREATED_DATABASES.clear()


def _drop(names: list[str]) -> None:
    if not names:
        return
    from sqlalchemy import create_engine, text

    from jobengine.store.db import normalize_url

    admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class Worker(Service):
    """A real ``celery worker`` process with our app, stopped by its PID."""

    what = "worker"

    def __init__(
        self,
        env: dict[str, str],
        concurrency: int = 2,
        name: str | None = None,
        queues: list[str] | None = None,
        prefetch: int = 1,
    ) -> None:
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        from jobengine.cli.devstack import worker_command

        argv = worker_command(concurrency, queues=queues, name=self.name, prefetch=prefetch)
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
        from tests.support.helpers import make_company

        return make_company(n_images, **kwargs)

    def wait(self, company: str, handle: str, timeout: float = 60) -> Any:
        """The finished job log (with details) of the job's latest run."""
        from jobengine.cli.devstack import wait_for_runs

        return wait_for_runs(company, [handle], timeout=timeout)[-1]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
