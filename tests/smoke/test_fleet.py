"""Smoke test of the docker/ image with pytest-celery: a real worker container of our image.

pytest-celery starts the fleet's Redis (compose's image; broker and results, as in
docker/compose.yaml) on a Docker network of its own; this module builds ``docker/Dockerfile`` and
runs the compose ``worker`` service's command in a container of it on that network. The test
process submits a job as a producer would, through the Redis port published on the host, and
waits for its job log. The job store (SQLite) and the storage root live in a host directory
bind-mounted at the same path into the worker, which runs as the test process's uid:gid so both
sides can write them (a Linux Docker engine on this machine: Docker Desktop's file sharing does
not give SQLite's WAL shared memory, a remote engine has no such directory). PostgreSQL, beat
and Flower are covered by tests/test_docker_files.py and the other suites.

Written against pytest-celery 1.3 (tests/smoke/conftest.py loads its fixtures). Skipped with the
reason when pytest-celery is not installed or no Docker engine answers; the first run builds the
image (Debian's ImageMagick, ``pip install .``), hence the long timeout.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.smoke.conftest import SKIP_REASON

if SKIP_REASON:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from pytest_celery import (
    CeleryBrokerCluster,
    CeleryTestSetup,
    CeleryWorkerContainer,
    RedisTestBroker,
)
from pytest_docker_tools import container, fxtr

ROOT = Path(__file__).resolve().parents[2]
# What docker/Dockerfile copies, and the Dockerfile: nothing else is sent to the engine.
CONTEXT = ("pyproject.toml", "README.md", "jobengine", "tasks", "config", "docker/Dockerfile")
TAG = "jobengine:smoke"
COMPOSE_WORKER = ["worker", "--concurrency", "2"]  # docker/compose.yaml, WORKER_CONCURRENCY=2


class JobengineWorker(CeleryWorkerContainer):
    """The compose ``worker`` service: our image, its entrypoint (``jobengine``), ``worker``."""

    @classmethod
    def command(cls, *args: str, **kwargs: Any) -> list[str]:
        return [*COMPOSE_WORKER, "--loglevel", "info", *args]

    @classmethod
    def worker_name(cls) -> str:
        return "celery"  # `jobengine worker` keeps Celery's default node name, celery@<host>

    @classmethod
    def worker_queue(cls) -> str:
        return "jobengine"  # the one queue every jobengine worker consumes


def _compose_service(name: str) -> dict[str, Any]:
    import yaml

    services: dict[str, Any] = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())[
        "services"
    ]
    return dict(services[name])


@pytest.fixture(scope="session")
def jobengine_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """docker/Dockerfile built from a context holding only what the image copies."""
    context = tmp_path_factory.mktemp("docker-context")
    for name in CONTEXT:
        source, target = ROOT / name, context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    image, _ = docker_client.images.build(
        path=str(context), dockerfile="docker/Dockerfile", tag=TAG, rm=True, forcerm=True
    )
    return image


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Store and storage, at the same path on the host and in the worker."""
    path = tmp_path_factory.mktemp("fleet")
    (path / "storage").mkdir()
    return path


# pytest-celery's defaults, narrowed to the fleet of docker/compose.yaml: one Redis (its image)
# as broker and result backend, and our worker container in place of pytest-celery's own.


@pytest.fixture
def default_redis_broker_image() -> str:
    return str(_compose_service("redis")["image"])


@pytest.fixture
def celery_broker_cluster(celery_redis_broker: RedisTestBroker) -> Iterator[CeleryBrokerCluster]:
    """Redis only (not every broker pytest-celery knows, such as RabbitMQ)."""
    cluster = CeleryBrokerCluster(celery_redis_broker)
    yield cluster
    cluster.teardown()


@pytest.fixture
def celery_backend_cluster() -> None:
    """No backend container: jobengine keeps results on REDIS_URL, the broker's Redis."""
    return None


@pytest.fixture
def default_worker_container_cls() -> type[CeleryWorkerContainer]:
    return JobengineWorker


@pytest.fixture(scope="session")
def default_worker_container_session_cls() -> type[CeleryWorkerContainer]:
    return JobengineWorker


@pytest.fixture
def fleet_env(celery_redis_broker: RedisTestBroker, shared_dir: Path) -> dict[str, str]:
    """The compose variables, with this network's Redis (by its container host name)."""
    return {
        "REDIS_URL": celery_redis_broker.config()["url"],
        "DATABASE_URL": f"sqlite:///{shared_dir / 'store.db'}",
        "JOBENGINE_STORAGE": str(shared_dir / "storage"),
        "JOBENGINE_HOME": str(shared_dir),
        "JOBENGINE_TIMEZONE": "UTC",
    }


@pytest.fixture
def worker_env(fleet_env: dict[str, str], shared_dir: Path) -> dict[str, str]:
    return {**fleet_env, "HOME": str(shared_dir)}  # the uid below has no home in the image


default_worker_container = container(
    image="{jobengine_image.id}",
    environment=fxtr("worker_env"),
    network="{default_pytest_celery_network.name}",
    volumes={"{shared_dir}": {"bind": "{shared_dir}", "mode": "rw"}},
    user=f"{os.getuid()}:{os.getgid()}",
    wrapper_class=JobengineWorker,
    timeout=120,
    command=JobengineWorker.command(),
)


@pytest.fixture
def producer(
    celery_setup: CeleryTestSetup, celery_redis_broker: RedisTestBroker, fleet_env: dict[str, str]
) -> Iterator[None]:
    """This test process as a producer on the fleet's Redis (its host port) and store."""
    from jobengine.celery_app import configure
    from jobengine.runtime import reset_runtime

    saved = dict(os.environ)
    for key in list(os.environ):  # nothing of other tests' settings (a RabbitMQ broker URL...)
        if key.startswith("JOBENGINE_") or key in ("REDIS_URL", "DATABASE_URL"):
            del os.environ[key]
    os.environ.update({**fleet_env, "REDIS_URL": celery_redis_broker.config()["host_url"]})
    reset_runtime()
    configure()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_runtime()
        configure()


def test_the_smoke_worker_is_the_compose_worker() -> None:
    command = _compose_service("worker")["command"]
    assert [a.replace("${WORKER_CONCURRENCY:-2}", "2") for a in command] == COMPOSE_WORKER


@pytest.mark.timeout(1800)  # the first run builds the image
def test_a_worker_container_of_our_image_runs_an_export(
    celery_setup: CeleryTestSetup, producer: None
) -> None:
    from jobengine import submit
    from jobengine.devstack import wait_for_runs
    from tests.helpers import export_request, make_company

    company, assets = make_company(3)
    handle = submit(export_request(company, assets, "Smoke"))
    [log] = wait_for_runs(company, [handle], timeout=120)
    assert log.state == "Done" and log.file_success_count == 3
    assert "zip" in log.output
    assert celery_setup.worker.logs().count("jobengine.export.item") >= 3
