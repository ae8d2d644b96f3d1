"""Smoke test of the docker/ image with pytest-celery: a real worker container of our image.

pytest-celery starts a Redis container (broker and results) on its own Docker network; this module
builds ``docker/Dockerfile`` and runs the compose ``worker`` service's command in a container of
it. The test process submits a job as a producer would, and waits for its job log. The job store
(SQLite) and the storage root live in a host directory bind-mounted at the same path into the
worker, so both sides share them (Linux Docker engines; Docker Desktop's file sharing does not
give SQLite's WAL shared memory). PostgreSQL, beat and Flower are covered by the other tests.

Skipped with the reason when pytest-celery is not installed or no Docker engine answers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_celery = pytest.importorskip(
    "pytest_celery", reason="pytest-celery is not installed (pip install 'pytest-celery[redis]')"
)
docker = pytest.importorskip("docker", reason="the Docker SDK (docker) is not installed")


def _engine_problem() -> str | None:
    try:
        client = docker.from_env()
        client.ping()
        client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


_PROBLEM = _engine_problem()
if _PROBLEM:
    pytest.skip(f"no Docker engine answers: {_PROBLEM}", allow_module_level=True)

from pytest_celery import CeleryWorkerContainer  # noqa: E402
from pytest_docker_tools import container, fxtr  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = ("pyproject.toml", "README.md", "jobengine", "tasks", "config", "docker")
TAG = "jobengine:smoke"


class JobengineWorker(CeleryWorkerContainer):
    """The compose ``worker`` service: our image, its entrypoint, ``worker`` command."""

    @classmethod
    def command(cls, *args: str, **kwargs: Any) -> list[str]:
        return ["worker", "--concurrency", "2", "--loglevel", "info"]


@pytest.fixture(scope="session")
def jobengine_image(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """docker/Dockerfile built from a context holding only what the image copies."""
    context = tmp_path_factory.mktemp("docker-context")
    for name in CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    client = docker.from_env()
    try:
        image, _ = client.images.build(
            path=str(context), dockerfile="docker/Dockerfile", tag=TAG, rm=True
        )
    finally:
        client.close()
    return image


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Store and storage, at the same path on the host and in the worker (uid 10001)."""
    path = tmp_path_factory.mktemp("fleet")
    (path / "storage").mkdir()
    for p in (path, path / "storage"):
        p.chmod(0o777)
    return path


@pytest.fixture
def default_worker_container_cls() -> type[CeleryWorkerContainer]:
    return JobengineWorker


@pytest.fixture(scope="session")
def default_worker_container_session_cls() -> type[CeleryWorkerContainer]:
    return JobengineWorker


@pytest.fixture
def fleet_env(celery_redis_broker: Any, shared_dir: Path) -> dict[str, str]:
    """The worker's environment: the compose variables, with this network's Redis."""
    return {
        "REDIS_URL": celery_redis_broker.config()["url"],
        "DATABASE_URL": f"sqlite:///{shared_dir / 'store.db'}",
        "JOBENGINE_STORAGE": str(shared_dir / "storage"),
        "JOBENGINE_HOME": str(shared_dir),
        "JOBENGINE_TIMEZONE": "UTC",
    }


default_worker_container = container(
    image="{jobengine_image.id}",
    environment=fxtr("fleet_env"),
    network="{default_pytest_celery_network.name}",
    volumes={"{shared_dir}": {"bind": "{shared_dir}", "mode": "rw"}},
    wrapper_class=JobengineWorker,
    timeout=120,
    command=JobengineWorker.command(),
)


@pytest.fixture
def producer(
    celery_setup: Any, celery_redis_broker: Any, fleet_env: dict[str, str]
) -> Iterator[None]:
    """This test process as a producer on the fleet's Redis (its host port) and store."""
    from jobengine.celery_app import configure
    from jobengine.runtime import reset_runtime

    saved = dict(os.environ)
    os.environ.update({**fleet_env, "REDIS_URL": celery_redis_broker.config()["local_url"]})
    reset_runtime()
    configure()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_runtime()
        configure()


def test_a_worker_container_of_our_image_runs_an_export(celery_setup: Any, producer: None) -> None:
    from jobengine import submit
    from jobengine.devstack import wait_for_runs
    from tests.helpers import export_request, make_company

    company, assets = make_company(3)
    handle = submit(export_request(company, assets, "Smoke"))
    [log] = wait_for_runs(company, [handle], timeout=120)
    assert log.state == "Done" and log.file_success_count == 3
    assert "zip" in log.output
    assert celery_setup.worker.logs().count("jobengine.export.item") >= 3
