"""pytest-celery: worker containers of our image run real jobs, and a second one shares the work.

pytest-celery starts Redis (the local base image, or the public one docker/compose.yaml names)
as broker and result backend on a Docker network of its own, and a worker container of
``docker/Dockerfile`` running the compose ``worker`` command. The test process is the producer:
it seeds the demo company (47) and submits the IPS documentation's example and an ExportJob
with conversion through the Redis port published on the host's loopback, then reads the job
logs from the store. A second worker container then joins the same queue, and a larger
conversion job is shared by both.

The store (SQLite) and the storage root live in a host directory bind-mounted at the same path
into the workers (a Linux Docker engine on this machine). The workers run as the image's user
(10001) when the tests run as root, which hands the directory over to it; else as the test's
own uid, which then owns both sides.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.smoke.engine import skip_or_fail_module

skip_or_fail_module()

from pytest_celery import (  # noqa: E402
    REDIS_CONTAINER_TIMEOUT,
    CeleryBrokerCluster,
    CeleryTestSetup,
    CeleryWorkerContainer,
    RedisContainer,
    RedisTestBroker,
)
from pytest_docker_tools import container, fxtr  # noqa: E402

from tests.smoke.containers import host_port, logs_of, wait_for_log  # noqa: E402
from tests.smoke.images import ROOT, base_image  # noqa: E402
from tests.smoke.stale import run_labels  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a first run builds the image
COMPOSE_WORKER = ["worker", "--concurrency", "2"]  # docker/compose.yaml, WORKER_CONCURRENCY=2
IMAGE_UID = 10001  # docker/Dockerfile's USER
RUN_AS = (IMAGE_UID, IMAGE_UID) if os.getuid() == 0 else (os.getuid(), os.getgid())


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


class LoopbackRedis(RedisContainer):
    """pytest-celery's Redis, reached from the host at the port published on 127.0.0.1.

    pytest-celery's own ``host_url`` is ``localhost:<port>`` with the port pytest-docker-tools
    reports, which is the container's own (6379) when the tests run inside a container (it looks
    for /.dockerenv): that would be the host's Redis, not this one.
    """

    @property
    def host_url(self) -> str:
        return f"redis://127.0.0.1:{host_port(self, '6379/tcp')}/{self.vhost}"


def _compose_service(name: str) -> dict[str, Any]:
    import yaml

    services: dict[str, Any] = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())[
        "services"
    ]
    return dict(services[name])


def _hand_over(path: Path) -> None:
    """Give the workers' user the shared directory and all in it (when we are root)."""
    if os.getuid() != 0:
        return
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, *RUN_AS)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Store and storage, at the same path on the host and in the workers."""
    path = tmp_path_factory.mktemp("fleet")
    (path / "storage").mkdir()
    _hand_over(path)  # before the worker starts: it makes the store (SQLite keeps its owner)
    return path


# pytest-celery's defaults, narrowed to the fleet of docker/compose.yaml: one Redis as broker and
# result backend, published on the host's loopback only, and our worker container.


@pytest.fixture
def default_redis_broker_image(engine: Any) -> str:
    return base_image(engine, "redis")


@pytest.fixture
def default_redis_broker_ports() -> dict[str, Any]:
    return {"6379/tcp": ("127.0.0.1", None)}  # pytest-celery's default: every address


default_redis_broker = container(
    image="{default_redis_broker_image}",
    ports=fxtr("default_redis_broker_ports"),
    environment=fxtr("default_redis_broker_env"),
    network="{default_pytest_celery_network.name}",
    wrapper_class=LoopbackRedis,
    timeout=REDIS_CONTAINER_TIMEOUT,
    command=fxtr("default_redis_broker_command"),
    labels=run_labels(),
)


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
    return {**fleet_env, "HOME": str(shared_dir)}  # a uid other than the image's has no home


_WORKER = {
    "image": "{jobengine_image.id}",
    "environment": fxtr("worker_env"),
    "network": "{default_pytest_celery_network.name}",
    "volumes": {"{shared_dir}": {"bind": "{shared_dir}", "mode": "rw"}},
    "user": f"{RUN_AS[0]}:{RUN_AS[1]}",
    "wrapper_class": JobengineWorker,
    "timeout": 120,
    "command": JobengineWorker.command(),
    "labels": run_labels(),
}
default_worker_container = container(**_WORKER)
second_worker_container = container(**_WORKER)  # started by the test that asks for it


@pytest.fixture
def producer(
    celery_setup: CeleryTestSetup,
    celery_redis_broker: RedisTestBroker,
    fleet_env: dict[str, str],
    shared_dir: Path,
) -> Iterator[None]:
    """This test process as a producer on the fleet's Redis (its host port) and store."""
    from jobengine.engine.app import configure
    from jobengine.runtime import reset_runtime

    saved = dict(os.environ)
    for key in list(os.environ):  # nothing of other tests' settings (a RabbitMQ broker URL...)
        if key.startswith("JOBENGINE_") or key in ("REDIS_URL", "DATABASE_URL"):
            del os.environ[key]
    host_url = celery_redis_broker.config()["host_url"]
    assert host_url.startswith("redis://127.0.0.1:") and not host_url.endswith(":6379/0")
    os.environ.update({**fleet_env, "REDIS_URL": host_url})
    reset_runtime()
    configure()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_runtime()
        configure()


def _items_run(worker: Any, kind: str = "export") -> int:
    """How many item tasks of ``kind`` a worker container received (its INFO log)."""
    return len(re.findall(rf"Task jobengine\.{kind}\.item\[[^\]]+\] received", logs_of(worker)))


def test_the_smoke_worker_is_the_compose_worker() -> None:
    command = _compose_service("worker")["command"]
    assert [a.replace("${WORKER_CONCURRENCY:-2}", "2") for a in command] == COMPOSE_WORKER


def test_workers_of_our_image_run_the_seed_example_and_a_conversion_then_share_the_work(
    celery_setup: CeleryTestSetup,
    producer: None,
    shared_dir: Path,
    request: pytest.FixtureRequest,
) -> None:
    from jobengine import submit
    from jobengine.cli.demo import DEMO_COMPANY, SEED_EXAMPLE_XML, seed_demo
    from jobengine.cli.devstack import wait_for_runs

    user = "smoke@example.com"
    handles = seed_demo(user, "smoke-password")
    _hand_over(shared_dir)
    publish = submit(SEED_EXAMPLE_XML, user=user)
    assert publish == f"{DEMO_COMPANY}|My Test Job|"
    convert = submit(_convert_request("Smoke Convert", handles), user=user)
    runs = wait_for_runs(DEMO_COMPANY, [publish, convert], 180)
    logs = {log.original_job_name: log for log in runs}
    first = celery_setup.worker.container
    _check_publish(logs["My Test Job"])
    _check_conversion(logs["Smoke Convert"], 4)
    assert _items_run(first) == 4

    # A second worker container joins the same queue; a larger conversion is shared by both.
    second = request.getfixturevalue("second_worker_container")
    wait_for_log(second, r"celery@\S+ ready\.")
    before = _items_run(first)
    more = _import_images(12, shared_dir)
    shared = submit(_convert_request("Smoke Shared", handles + more), user=user)
    [log] = wait_for_runs(DEMO_COMPANY, [shared], 240)
    _check_conversion(log, 16)
    by_first, by_second = _items_run(first) - before, _items_run(second)
    assert by_first + by_second == 16
    assert by_first > 0 and by_second > 0, (by_first, by_second)


def _import_images(count: int, shared_dir: Path) -> list[str]:
    """``count`` more images in the demo company (folder /more); their handles."""
    import tempfile

    from jobengine.assets.catalog import company_by_handle, import_files
    from jobengine.runtime import get_runtime
    from tests.support.helpers import make_images

    runtime = get_runtime()
    with tempfile.TemporaryDirectory() as tmp, runtime.store.write() as session:
        company = company_by_handle(session, "47")
        files = make_images(Path(tmp), count, size=(800, 600))
        assets = import_files(session, runtime.storage, company, files, folder="/more")
        handles = [a.handle for a in assets]
    _hand_over(shared_dir)
    return handles


def _check_publish(log: Any) -> None:
    """The seed example's job log: every demo image published."""
    assert (log.state, log.file_error_count) == ("Done", 0), log
    assert log.file_success_count == log.total_file_count > 0
    types = [d.log_type for d in log.details]
    assert types[0] == "BeginImageServingPublish" and types[-1] == "EndImageServingPublish"
    assert types.count("ImageServingPublishSuccess") == log.file_success_count


def _check_conversion(log: Any, files: int) -> None:
    """The conversion's job log and its ZIP: ``files`` TIFFs 400 pixels wide (the macro's
    format, the modifier's width)."""
    from PIL import Image

    from jobengine.runtime import get_runtime

    assert (log.state, log.file_success_count, log.file_error_count) == ("Done", files, 0)
    types = [d.log_type for d in log.details]
    assert types[0] == "BeginGet" and types[-1] == "EndGet", types
    assert log.output["files"] == files
    with get_runtime().storage.open(log.output["zip"]) as raw, zipfile.ZipFile(raw) as archive:
        names = archive.namelist()
        assert len(names) == files
        for name in names:
            with archive.open(name) as member, Image.open(io.BytesIO(member.read())) as image:
                assert (image.format, image.width) == ("TIFF", 400), name


def _convert_request(name: str, assets: list[str]) -> dict[str, Any]:
    """The demo's ExportJob with conversion (``make run``): PNG 400 px wide, preset ``test``."""
    return {
        "companyHandle": "47",
        "jobName": name,
        "exportJob": {
            "assetHandleArray": {"items": assets},
            "fmt": "convert",
            "is_modifier": "&fmt=png&wid=400",
            "macro": "$test$",
            "emailSetting": "None",
        },
    }
