"""Steps under stress: one that works far longer than its lease on a live worker (done once,
never taken over), and a stopJob in the middle of an export (Stopped promptly, nothing left)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from jobengine import get_active_jobs, stop_job, submit
from jobengine.cli.devstack import wait_for_runs
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from jobengine.store.schema import Asset, Run, RunItem
from tests.support.fleet import Figures, Fleet, RedisServer, fleet_env, scenario, wait_until
from tests.support.helpers import export_request, make_company, make_images

pytestmark = pytest.mark.slow

SLOW_SECONDS = 4.0  # how long the upload's source takes to answer in full
LEASE = 0.5


class _SlowSource(http.server.ThreadingHTTPServer):
    """An image on 127.0.0.1 that trickles out over SLOW_SECONDS; counts the GETs."""

    def __init__(self, image: bytes) -> None:
        self.image, self.gets = image, 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _SlowSource

    def do_GET(self) -> None:
        self.server.gets += 1
        body = self.server.image
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        chunks = 20
        step = -(-len(body) // chunks)
        for n in range(chunks):
            self.wfile.write(body[n * step : (n + 1) * step])
            self.wfile.flush()
            time.sleep(SLOW_SECONDS / chunks)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_source(tmp_path: Path) -> Iterator[_SlowSource]:
    [image] = make_images(tmp_path, 1, size=(200, 150))
    server = _SlowSource(image.read_bytes())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_step_far_longer_than_its_lease_is_done_once_by_its_live_worker(
    fault_home: Path, fleet_parts: list[object], slow_source: _SlowSource
) -> None:
    redis = RedisServer(fault_home)
    fleet_parts.append(redis)
    env = fleet_env(
        fault_home,
        redis,
        f"sqlite:///{fault_home / 'store.db'}",
        JOBENGINE_LEASE_SECONDS=str(LEASE),  # the step lasts eight leases
        JOBENGINE_OUTBOX_GRACE="0.2",
        JOBENGINE_UPLOAD_ALLOWED_HOSTS="127.0.0.1",
    )
    fleet = Fleet(env, fault_home)
    fleet_parts.append(fleet)
    url = f"http://127.0.0.1:{slow_source.server_address[1]}/slow.jpg"
    with scenario(env):
        company, _ = make_company(0)
        fleet.worker()
        fleet.beat()  # it re-sends every step whose lease lapsed: the adversary here
        request = {
            "companyHandle": company,
            "jobName": "Slow Upload",
            "uploadUrlsJob": {
                "urlArray": {"items": [{"sourceUrl": url, "destPath": "/in/slow.jpg"}]},
                "overwrite": False,
                "readyForPublish": False,
                "createMask": False,
                "emailSetting": "None",
            },
        }
        handle = submit(request)
        [log] = wait_for_runs(company, [handle], timeout=60)
        with get_runtime().store.read() as session:
            run = session.scalar(select(Run).where(Run.run_name == log.job_name))
            assert run is not None
            attempts = session.scalars(select(RunItem.attempts).where(RunItem.run_id == run.id))
            attempts_list = list(attempts)
            assets = session.scalars(select(Asset.name).where(Asset.company_id == run.company_id))
            names = list(assets)
    figures = Figures(f"an item of {SLOW_SECONDS:.0f} s on a {LEASE} s lease, worker alive")
    figures.accepted, figures.done = 1, int(log.state == "Done")
    figures.failed = int(log.state != "Done")
    figures.duplicated = slow_source.gets - 1
    figures.notes = {"source_requests": slow_source.gets, "item_attempts": attempts_list}
    figures.record()
    assert log.state == "Done" and log.file_success_count == 1
    assert slow_source.gets == 1 and attempts_list == [1]  # never taken over, never repeated
    assert names == ["slow.jpg"]


def test_stop_job_in_the_middle_of_an_export_stops_it_promptly_and_leaves_nothing(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    redis = RedisServer(fault_home)
    fleet_parts.append(redis)
    env = fleet_env(fault_home, redis, f"sqlite:///{fault_home / 'store.db'}")
    fleet = Fleet(env, fault_home)
    fleet_parts.append(fleet)
    with scenario(env):
        company, assets = make_company(30, size=(2400, 1800))
        fleet.worker(concurrency=1)
        fleet.beat()
        request = export_request(company, assets, "Stopped Midway")
        request["exportJob"].update(fmt="convert", is_modifier="fmt=png&wid=1600")
        handle = submit(request)
        wait_until(lambda: _processed(company) >= 3, 120, "three items done")
        stop_job(company, handle)
        asked = time.monotonic()
        [log] = wait_for_runs(company, [handle], timeout=60)
        took = time.monotonic() - asked
        storage = get_runtime().storage
        assert isinstance(storage, LocalStorage)
        exports = list((storage.root / company / "exports").glob("*"))
        staged = list((storage.root / "_staging").glob("*"))
        after = submit(export_request(company, assets[:1], "After The Stop"))
        [next_log] = wait_for_runs(company, [after], timeout=60)
    figures = Figures("stopJob in the middle of a 30-asset export", accepted=2)
    figures.done = int(next_log.state == "Done")
    figures.failed = int(log.state == "Failed")
    figures.recovery_seconds = took
    figures.notes = {"processed_before_stop": log.file_success_count, "of": 30}
    figures.record()
    assert log.state == "Stopped" and 3 <= log.file_success_count < 30
    assert exports == [] and staged == []  # no ZIP of a stopped export, no staging left
    assert next_log.state == "Done"  # the worker is fine
    assert took < 30


def _processed(company: str) -> int:
    jobs = get_active_jobs(company)
    return jobs[0].task_progress[0].num_processed if jobs else 0
