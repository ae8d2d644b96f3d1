"""The compose fleet for real: 0.1.0's fleet with data, upgraded to this image, then scaled.

1. 0.1.0's fleet, as its docker/compose.yaml described it (Redis, PostgreSQL, the API, 2
   workers, beat, Flower) on the 0.1.0 image (tests/smoke/images.py builds it from git): the
   demo company is seeded, the IPS documentation's example is sent to the API's SOAP endpoint
   from the host, and its log is read back through getJobLogs.
2. The upgrade an operator does: jobs are still queued or running when this tree's compose file
   and image replace the old ones (``up -d``); its ``migrate`` service upgrades the store, which
   0.1.0 made with ``create_all``, and every job ends with all its files, old logs included.
3. Scaling: the workers go to 3 and back to 2 while jobs run; none is lost.

The project (its own name, network and volumes) publishes the API and Flower on free ports of
the host's loopback only, and ``down --volumes`` removes all of it at the end, which the test
checks. One run takes a few minutes; a first one also builds both images.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.smoke.engine import skip_or_fail_module

skip_or_fail_module()

from jobengine.cli.demo import DEMO_COMPANY, SEED_EXAMPLE_XML  # noqa: E402
from tests.smoke.compose import Project, find_compose, free_loopback_port  # noqa: E402
from tests.smoke.containers import http_get, logs_of, wait_for_log  # noqa: E402
from tests.smoke.images import (  # noqa: E402
    OLD_RELEASE,
    OLD_TAG,
    ROOT,
    TAG,
    base_image,
    build,
    old_release_source,
)
from tests.smoke.soap import Soap, export_param, finished_whole  # noqa: E402
from tests.smoke.stale import project_name  # noqa: E402
from tests.support.stack import unavailable  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
USER, PASSWORD = "ops@example.com", "fleet-test-password"
# Seeds the fleet's store from a worker container: the 0.1.0 image has the demo at
# jobengine.demo, this one at jobengine.cli.demo.
SEED = (
    "import json\n"
    "try:\n    from jobengine.cli.demo import seed_demo\n"
    "except ImportError:\n    from jobengine.demo import seed_demo\n"
    f"print(json.dumps(seed_demo({USER!r}, {PASSWORD!r})))"
)


class Fleet:
    """The compose project of this module, and what the tests learn about it."""

    def __init__(self, project: Project, engine: Any, api_port: int, flower_port: int) -> None:
        self.project, self.engine, self.flower_port = project, engine, flower_port
        self.soap = Soap(f"http://127.0.0.1:{api_port}", USER, PASSWORD)
        self.api = f"http://127.0.0.1:{api_port}"
        self.assets: list[str] = []
        self.submitted: list[str] = []  # every job name, to be found ended in the end

    def up(self, *args: str, **env: str) -> None:
        self.project("up", "-d", "--no-build", *args, **env)
        http_get(f"{self.api}/scene7/webservice/IpsApi.wsdl", timeout=180)

    def running(self) -> list[str]:
        """The services of the running containers, one entry per container, sorted."""
        return sorted(
            c.labels["com.docker.compose.service"]
            for c in self.project.containers(self.engine)
            if c.status == "running"
        )

    def workers(self) -> list[Any]:
        return [c for c in self.project.containers(self.engine, "worker") if c.status == "running"]

    def submit_exports(self, prefix: str, count: int) -> list[str]:
        names = [f"{prefix} {i}" for i in range(count)]
        for name in names:
            self.soap.submit(export_param(DEMO_COMPANY, name, self.assets))
        self.submitted += names
        return names


def _old_compose(redis: str, postgres: str, flower_port: int) -> str:
    """0.1.0's docker/compose.yaml, with this machine's images and a free Flower port (that
    file hard-coded them; its other settings are variables)."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{OLD_RELEASE}:docker/compose.yaml"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    for old, new in (
        ("image: jobengine:latest", f"image: {OLD_TAG}"),
        ("image: redis:7.4-bookworm", f"image: {redis}"),
        ("image: postgres:16-bookworm", f"image: {postgres}"),
        ('"127.0.0.1:5555:5555"', f'"127.0.0.1:{flower_port}:5555"'),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def old_image(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    try:
        source = old_release_source(tmp_path_factory.mktemp("release-0.1.0"))
    except (subprocess.CalledProcessError, OSError) as exc:
        unavailable("0.1.0's source (git history)", str(exc))
    image, seconds = build(engine, source, tmp_path_factory.mktemp("context-0.1.0"), OLD_TAG)
    print(f"\nbuilt {OLD_TAG} in {seconds:.1f} s")
    return image


@pytest.fixture(scope="module")
def fleet(
    engine: Any, jobengine_image: Any, old_image: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    compose = find_compose()
    if compose is None:
        unavailable("a compose (plugin or docker-compose)", "run `make docker-engine`")
    assert compose is not None
    api_port, flower_port = free_loopback_port(), free_loopback_port()
    env = {
        "POSTGRES_PASSWORD": "fleet-test", "FLOWER_BASIC_AUTH": "ops:fleet-test",
        "API_PUBLISH": f"127.0.0.1:{api_port}", "FLOWER_PUBLISH": f"127.0.0.1:{flower_port}",
        "JOBENGINE_TIMEZONE": "UTC", "WORKER_CONCURRENCY": "2",
        "PYTHON_IMAGE": base_image(engine, "python"), "REDIS_IMAGE": base_image(engine, "redis"),
        "POSTGRES_IMAGE": base_image(engine, "postgres"),
    }  # fmt: skip
    name = project_name(uuid.uuid4().hex[:8])  # with our PID: see tests/smoke/stale.py
    project = Project(compose, name, tmp_path_factory.mktemp("fleet"), env)
    project.use(_old_compose(env["REDIS_IMAGE"], env["POSTGRES_IMAGE"], flower_port), "0.1.0")
    try:
        yield Fleet(project, engine, api_port, flower_port)
    finally:
        project("down", "--volumes", "--remove-orphans", "--timeout", "30")
        assert project.leftovers(engine) == []


def _published_on_loopback_only(fleet: Fleet) -> None:
    for container in fleet.project.containers(fleet.engine):
        container.reload()
        for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values():
            for binding in bindings or []:
                assert binding["HostIp"] == "127.0.0.1", (container.name, binding)


def test_the_0_1_0_fleet_runs_the_documented_example(fleet: Fleet) -> None:
    fleet.project("up", "-d", "--no-build", "redis", "postgres")
    fleet.assets = _seed_0_1_0(fleet)  # the store's tables made by one process, see below
    fleet.up("--scale", "worker=2")
    assert fleet.running() == ["api", "beat", "flower", "postgres", "redis", "worker", "worker"]
    _published_on_loopback_only(fleet)
    flower = f"http://127.0.0.1:{fleet.flower_port}/healthcheck"
    assert http_get(flower, timeout=120) == b"OK"
    handle = fleet.soap.submit(SEED_EXAMPLE_XML)  # verbatim: company 47
    assert handle == f"{DEMO_COMPANY}|My Test Job|"
    fleet.submitted.append("My Test Job")
    log = fleet.soap.wait_for_jobs(DEMO_COMPANY, ["My Test Job"])["My Test Job"]
    assert finished_whole(log) and log["jobSubType"] == "full", log
    assert log["submitUserEmail"] == USER


def _seed_0_1_0(fleet: Fleet, timeout: float = 120) -> list[str]:
    """The demo company, through a one-off container of the 0.1.0 image, before the fleet's
    other services start: 0.1.0's processes each ran ``create_all`` at start, which races on a
    new PostgreSQL store (a unique violation in pg_type; the migrations' advisory lock ended
    that). Tried again (it is idempotent) until PostgreSQL, just started, accepts it."""
    argv = ("run", "--rm", "--no-deps", "--entrypoint", "python", "worker", "-c", SEED)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return list(json.loads(fleet.project(*argv).strip().splitlines()[-1]))
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_an_upgrade_to_this_image_keeps_every_job(fleet: Fleet) -> None:
    from jobengine.store.migrate import head

    assert fleet.assets, "the 0.1.0 fleet did not come up"
    queued = fleet.submit_exports("Before upgrade", 6)  # still queued or running below
    ended = [log for log in fleet.soap.job_logs(DEMO_COMPANY) if log["originalJobName"] in queued]
    assert sum(bool(log.get("endDate")) for log in ended) < len(queued)  # work is pending
    fleet.project.use((ROOT / "docker" / "compose.yaml").read_text(), "new")
    fleet.up("--scale", "worker=2", JOBENGINE_IMAGE=TAG)
    images = {c.image.id for c in fleet.project.containers(fleet.engine) if c.status == "running"}
    assert images <= {fleet.engine.images.get(TAG).id, *_base_ids(fleet)}, images
    assert fleet.running() == ["api", "beat", "flower", "postgres", "redis", "worker", "worker"]
    [migrate] = fleet.project.containers(fleet.engine, "migrate")  # ran, exited
    assert migrate.attrs["State"]["ExitCode"] == 0
    assert f"no revision -> {head()}" in logs_of(migrate)  # 0.1.0's store, adopted
    logs = fleet.soap.wait_for_jobs(DEMO_COMPANY, ["My Test Job", *queued])
    assert all(finished_whole(log) for log in logs.values()), logs
    current = fleet.project(
        "run", "--rm", "--no-deps", "worker", "db", "current", JOBENGINE_IMAGE=TAG
    )
    assert f"store: {head()}; this jobengine: {head()}" in current


def _base_ids(fleet: Fleet) -> set[str]:
    env = fleet.project.env
    return {fleet.engine.images.get(env[k]).id for k in ("REDIS_IMAGE", "POSTGRES_IMAGE")}


def test_workers_scale_to_three_and_back_without_losing_a_job(fleet: Fleet) -> None:
    assert fleet.assets, "the fleet did not come up"
    new = {"JOBENGINE_IMAGE": TAG}
    fleet.project("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=3", **new)
    workers = fleet.workers()
    assert len(workers) == 3
    for worker in workers:
        wait_for_log(worker, r"celery@\S+ ready\.", timeout=120)
    before = {w.id: _items(w) for w in workers}
    batch = fleet.submit_exports("While scaling", 16)
    _until(lambda: all(_items(w) > before[w.id] for w in workers), "every worker takes work")
    pending = [log for log in fleet.soap.job_logs(DEMO_COMPANY) if not log.get("endDate")]
    assert pending, "the jobs ended before the scale-down: nothing was exercised"
    fleet.project("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=2", **new)
    assert len(fleet.workers()) == 2  # one stopped (its running items finish or go back)
    logs = fleet.soap.wait_for_jobs(DEMO_COMPANY, fleet.submitted)
    assert all(finished_whole(log) for log in logs.values()), logs
    assert set(batch) <= set(logs)
    _published_on_loopback_only(fleet)


def _items(worker: Any) -> int:
    """Item tasks a worker container has received (its INFO log)."""
    return len(re.findall(r"Task jobengine\.\w+\.item\[[^\]]+\] received", logs_of(worker)))


def _until(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.5)
