"""Real Flower (``jobengine flower``) watching a real job on the test broker, over its HTTP API.

Flower is started as a subprocess on 127.0.0.1 with basic auth, against the same broker as the
``stack`` worker (the embedded Redis under ``JOBENGINE_HOME``, or ``REDIS_URL``), and stopped by
its PID. Flower reads Celery *events* only, so the tasks it shows are those it saw since it started.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from jobengine import get_active_jobs, pause_job, resume_job, submit, submit_many
from jobengine.embedded import redis_url
from jobengine.engine import dispatch
from jobengine.settings import get_settings
from tests.support.helpers import export_request, make_company
from tests.support.procs import Service, free_port

USER, PASSWORD = "ops", "flower-test-password"
ITEMS = 40


class Flower(Service):
    """A ``jobengine flower`` process (the CLI execs Celery's flower: same PID), and its API."""

    what = "flower"

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            "-m",
            "jobengine.cli",
            "flower",
            "--port",
            str(self.port),
            "--address",
            "127.0.0.1",
            "--basic-auth",
            f"{USER}:{PASSWORD}",
        ]
        self.start(argv, Path(env["JOBENGINE_HOME"]) / f"flower-{self.port}.log", env)

    def request(
        self, path: str, auth: tuple[str, str] | None = (USER, PASSWORD)
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + path)
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def tasks(self, query: str = "") -> dict[str, dict[str, Any]]:
        status, body = self.request(f"/api/tasks{query}")
        assert status == 200, body[:500]
        data: dict[str, dict[str, Any]] = json.loads(body)
        return data

    def metrics(self) -> str:
        status, body = self.request("/metrics")
        assert status == 200, body[:500]
        return body.decode()

    def ready(self) -> bool:
        """``/healthcheck`` answers, then a worker heartbeat shows the event stream is live."""
        try:
            healthy = self.request("/healthcheck", auth=None) == (200, b"OK")
        except OSError:  # not listening yet
            return False
        online = r'flower_worker_online\{worker="[^"]+"\} 1\.0'
        return healthy and re.search(online, self.metrics()) is not None


@pytest.fixture
def flower(stack: Any) -> Iterator[Flower]:
    proc = Flower(stack.env)
    try:
        proc.wait_ready(timeout=60, interval=0.2)
        yield proc
    finally:
        proc.stop()


def _poll(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _ours(tasks: dict[str, dict[str, Any]], handle: str, company: str) -> list[dict[str, Any]]:
    """The tasks whose kwargs (Flower shows their repr) carry this job's handle and company."""
    return [
        t
        for t in tasks.values()
        if f"'job': {handle!r}" in (t.get("kwargs") or "")
        and f"'company': {company!r}" in (t.get("kwargs") or "")
    ]


def test_flower_shows_a_paused_jobs_tasks_by_name_with_handle_and_company(
    stack: Any, flower: Flower
) -> None:
    company, assets = make_company(ITEMS, pad=2_000_000)
    handle = submit(export_request(company, assets, "Flower Watch"))
    deadline = time.monotonic() + 60
    while not (active := get_active_jobs(company)) or active[0].task_progress[0].num_processed < 1:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.005)
    pause_job(company, handle)
    try:
        # Every item message (a chunk of the run's items each: dispatch.item_chunks) was sent
        # (task-sent events, with their kwargs) when the run fanned out; the worker takes each
        # one and, while the run is paused, returns "paused" at once.
        chunks = dispatch.item_chunks(list(enumerate(assets)), get_settings().item_chunk)
        items = _poll(
            lambda: (
                (found := _ours(flower.tasks("?taskname=jobengine.export.item"), handle, company))
                and len(found) >= len(chunks)
                and all(t["state"] == "SUCCESS" for t in found)
                and found
            ),
            "Flower to list the job's item tasks, all handled",
            timeout=60,
        )
        assert {t["name"] for t in items} == {"jobengine.export.item"}
        assert all("'run': 'Flower Watch_" in t["kwargs"] for t in items)
        # Halted mid-way: items were done before the pause, the chunks after it returned
        # "paused". (Which chunks ended "done" depends on the machine: one whose items are
        # slower than runner.COUNT_EVERY was counted mid-chunk, then met the pause.)
        assert "'paused'" in {t["result"] for t in items}
        [halted] = get_active_jobs(company)
        assert halted.state == "Running"
        assert 1 <= halted.task_progress[0].num_processed < ITEMS

        every = _ours(flower.tasks(), handle, company)
        names = {t["name"] for t in every}
        assert {"jobengine.export.start", "jobengine.export.item"} <= names
        assert "jobengine.export.finish" not in names  # paused: the run has not joined

        # Flower's free-text search finds a company's tasks through their kwargs.
        searched = flower.tasks(f"?taskname=jobengine.export.item&search={company}")
        assert {t["uuid"] for t in items} <= set(searched)
        assert len(_ours(searched, handle, company)) == len(searched)

        # The task-type filter really filters.
        starts = flower.tasks("?taskname=jobengine.export.start")
        assert {t["name"] for t in starts.values()} == {"jobengine.export.start"}
        assert len(_ours(starts, handle, company)) == 1

        metrics = flower.metrics()
        for name in ("jobengine.export.start", "jobengine.export.item"):
            assert re.search(
                rf'flower_events_total\{{[^}}]*task="{re.escape(name)}"[^}}]*\}} [1-9]', metrics
            ), f"no flower_events_total for {name}"

        # Basic auth guards the API: no or wrong credentials get 401.
        assert flower.request("/api/tasks", auth=None)[0] == 401
        assert flower.request("/api/tasks", auth=(USER, "wrong"))[0] == 401
        assert flower.request("/api/workers", auth=None)[0] == 401
        # Flower 2.2 serves /healthcheck and /metrics without auth: keep its port private.
        assert flower.request("/healthcheck", auth=None) == (200, b"OK")
    finally:
        resume_job(company, handle)

    log = stack.wait(company, handle, timeout=120)
    assert log.state == "Done" and log.file_success_count == ITEMS
    finishes = _poll(
        lambda: [
            t
            for t in _ours(flower.tasks("?taskname=jobengine.export.finish"), handle, company)
            if t["state"] == "SUCCESS"
        ],
        "Flower to see the finishing task succeed",
    )
    assert len(finishes) == 1
    assert flower.proc.poll() is None


BATCH = 30


def test_flower_sees_every_task_sent_event_of_a_submit_many_batch(
    stack: Any, flower: Flower
) -> None:
    """submit_many() publishes its batch's ``task-sent`` events as one list (``task.multi``, as
    Celery's dispatcher groups events): Flower records each job's start as sent (its ``sent``
    time comes from that event alone; the worker's events set the others)."""
    company, assets = make_company(1)
    request = export_request(company, assets, "Flower Batch")
    handles = submit_many([{**request, "jobName": f"Flower Batch {i}"} for i in range(BATCH)])

    def sent_starts() -> list[dict[str, Any]]:
        tasks = flower.tasks("?taskname=jobengine.export.start")
        found = [t for handle in handles for t in _ours(tasks, handle, company)]
        return found if len(found) == BATCH and all(t.get("sent") for t in found) else []

    starts = _poll(sent_starts, "Flower to see every start of the batch sent", timeout=60)
    assert {t["name"] for t in starts} == {"jobengine.export.start"}
    assert len({t["uuid"] for t in starts}) == BATCH
    for handle in handles:
        assert stack.wait(company, handle, timeout=120).state == "Done"


def test_the_worker_publishes_its_task_events_in_batches_and_flower_sees_each(
    stack: Any, flower: Flower
) -> None:
    """A worker's task events (received, started, succeeded) go out grouped (``task.multi``),
    not one ``PUBLISH`` each: the events of a batch of small jobs come in far fewer messages
    than there are events, and Flower still has every start task received, started and
    succeeded, with the job's labels."""
    client = redis.Redis.from_url(redis_url(get_settings()))
    pubsub = client.pubsub()
    pubsub.psubscribe("*celeryev*")
    while pubsub.get_message(timeout=0.2) is not None:  # the subscribe confirmation
        pass
    company, assets = make_company(1)
    request = export_request(company, assets, "Flower Events")
    handles = submit_many([{**request, "jobName": f"Flower Events {i}"} for i in range(BATCH)])
    for handle in handles:
        assert stack.wait(company, handle, timeout=120).state == "Done"

    def succeeded() -> list[dict[str, Any]]:
        tasks = flower.tasks("?taskname=jobengine.export.start")
        found = [t for handle in handles for t in _ours(tasks, handle, company)]
        done = [t for t in found if t.get("state") == "SUCCESS"]
        return done if len(done) == BATCH else []

    starts = _poll(succeeded, "Flower to see every start succeed", timeout=60)
    for task in starts:
        assert task["received"] and task["started"] and task["succeeded"], task
    ours = {t["uuid"] for t in starts}
    messages, events = 0, set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(events) < 3 * BATCH:
        message = pubsub.get_message(timeout=0.5)
        if message is None or message["type"] != "pmessage":
            continue
        body = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
        batch = [e for e in (body if isinstance(body, list) else [body]) if e.get("uuid") in ours]
        kinds = {(e["uuid"], e["type"]) for e in batch}
        kinds &= {(u, t) for u in ours for t in ("task-received", "task-started", "task-succeeded")}
        messages += bool(kinds)
        events |= kinds
    pubsub.close()
    client.close()
    assert len(events) == 3 * BATCH  # each start's three worker events, each seen once at least
    assert messages <= len(events) // 3, (messages, len(events))
