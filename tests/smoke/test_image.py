"""docker/Dockerfile, built and run: each process of the fleet starts from it and is ready.

One Redis container (the fleet's broker) and a container per command of docker/compose.yaml
(``worker``, ``beat``, ``serve``, ``flower``) on a network of this module's own; the web ports
are published on the host's loopback only. Everything is removed at the end, the image is kept.
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.smoke.engine import skip_or_fail_module

skip_or_fail_module()

from tests.smoke.containers import host_port, http_get, wait_for_log  # noqa: E402
from tests.smoke.images import base_image  # noqa: E402
from tests.smoke.stale import run_labels  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a first run builds the image
FLOWER_AUTH = "ops:image-test"


class Fleet:
    """The containers of this module, by command."""

    def __init__(self, engine: Any, image: Any, network: str, redis: Any) -> None:
        self.engine, self.image, self.network, self.redis = engine, image, network, redis
        self.env = {"REDIS_URL": f"redis://{redis.name}:6379/0", "JOBENGINE_TIMEZONE": "UTC"}
        self.started: dict[str, Any] = {}

    def start(self, name: str, command: list[str], **kwargs: Any) -> Any:
        container = self.engine.containers.run(
            self.image.id,
            command,
            name=f"{self.network}-{name}",
            network=self.network,
            environment={**self.env, **kwargs.pop("environment", {})},
            labels=run_labels(),
            detach=True,
            **kwargs,
        )
        self.started[name] = container
        return container


@pytest.fixture(scope="module")
def fleet(engine: Any, jobengine_image: Any) -> Iterator[Fleet]:
    network = engine.networks.create(
        f"jobengine-image-{uuid.uuid4().hex[:8]}", driver="bridge", labels=run_labels()
    )
    redis = None
    running: Fleet | None = None
    try:
        redis = engine.containers.run(
            base_image(engine, "redis"), ["redis-server"], name=f"{network.name}-redis",
            network=network.name, labels=run_labels(), detach=True,
        )  # fmt: skip
        wait_for_log(redis, "Ready to accept connections")
        running = Fleet(engine, jobengine_image, network.name, redis)
        loopback = {"8080/tcp": ("127.0.0.1", None)}
        running.start("worker", ["worker", "--concurrency", "1"])
        running.start("beat", ["beat"])
        running.start("serve", ["serve", "--host", "0.0.0.0", "--port", "8080"], ports=loopback)
        running.start(
            "flower", ["flower", "--address", "0.0.0.0", "--port", "5555"],
            ports={"5555/tcp": ("127.0.0.1", None)},
            environment={"FLOWER_BASIC_AUTH": FLOWER_AUTH},
        )  # fmt: skip
        yield running
    finally:
        for container in [*(running.started.values() if running else []), redis]:
            if container is not None:
                container.remove(force=True, v=True)
        network.remove()


def _proc_uid(container: Any) -> int:
    """The uid the container's main process really runs as (read on the host)."""
    container.reload()
    pid = container.attrs["State"]["Pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    [uid_line] = [ln for ln in status.splitlines() if ln.startswith("Uid:")]
    return int(uid_line.split()[1])


def test_the_worker_is_ready_and_runs_as_the_non_root_user(fleet: Fleet) -> None:
    worker = fleet.started["worker"]
    wait_for_log(worker, r"celery@\S+ ready\.")
    assert _proc_uid(worker) == 10001
    code, out = worker.exec_run(["id", "-un"])
    assert (code, out.decode().strip()) == (0, "jobengine")


def test_the_image_holds_our_imagemagick_policy(fleet: Fleet) -> None:
    worker = fleet.started["worker"]
    code, out = worker.exec_run(["convert", "-list", "policy"])
    assert code == 0 and "Path: /etc/jobengine/imagemagick/policy.xml" in out.decode()
    probe = (
        "from wand.image import Image\n"
        "with Image(width=4, height=4, background='red') as im:\n"
        "    im.format = 'png'; print('png', len(im.make_blob()) > 0)\n"  # allowed: PNG
        "for name in ('xc:red', 'svg:/dev/null', '/etc/passwd'):\n"  # a coder, a path
        "    try:\n"
        "        Image(filename=name); print(name, 'allowed')\n"
        "    except Exception as exc:\n"
        "        print(name, type(exc).__name__)\n"
    )
    code, out = worker.exec_run(["python", "-c", probe])
    assert code == 0 and out.decode().split("\n")[:4] == [
        "png True", "xc:red PolicyError", "svg:/dev/null PolicyError", "/etc/passwd PolicyError"
    ]  # fmt: skip
    # Debian's own policy (without ours) lets XC through: the refusals above are our policy's
    code, out = worker.exec_run(["env", "MAGICK_CONFIGURE_PATH=", "python", "-c", probe])
    assert "xc:red allowed" in out.decode()


def test_the_image_ships_the_store_migrations(fleet: Fleet) -> None:
    from jobengine.store.migrate import head

    code, out = fleet.started["worker"].exec_run(["jobengine", "db", "current"])
    assert code == 0, out
    assert f"store: {head()}; this jobengine: {head()}" in out.decode()  # upgraded at start


def test_beat_starts_and_takes_the_leader_lock(fleet: Fleet) -> None:
    from jobengine.engine.scheduling import LOCK_KEY

    beat = fleet.started["beat"]
    wait_for_log(beat, "beat: Starting")
    assert _proc_uid(beat) == 10001
    held = ""
    for _ in range(60):
        _, out = fleet.redis.exec_run(["redis-cli", "exists", LOCK_KEY])
        held = out.decode().strip()
        if held == "1":
            break
        time.sleep(0.5)
    assert held == "1", beat.logs().decode()[-2000:]


def test_serve_answers_the_wsdl_on_the_loopback(fleet: Fleet) -> None:
    serve = fleet.started["serve"]
    port = host_port(serve, "8080/tcp")
    wsdl = http_get(f"http://127.0.0.1:{port}/scene7/webservice/IpsApi.wsdl", timeout=90)
    assert b"definitions" in wsdl and b"submitJob" in wsdl
    assert _proc_uid(serve) == 10001


def test_flower_answers_with_basic_auth_on_the_loopback(fleet: Fleet) -> None:
    flower = fleet.started["flower"]
    port = host_port(flower, "5555/tcp")
    assert http_get(f"http://127.0.0.1:{port}/healthcheck", timeout=90) == b"OK"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
    assert refused.value.code == 401
    token = base64.b64encode(FLOWER_AUTH.encode()).decode()
    page = http_get(f"http://127.0.0.1:{port}/workers", headers={"Authorization": f"Basic {token}"})
    assert b"Flower" in page
    assert _proc_uid(flower) == 10001
