"""A worker's task events, batched (jobengine.engine.consumer): none is lost when it stops.

The worker here waits 30 s before it publishes what it buffered (``JOBENGINE_EVENT_BATCH_SECONDS``),
so a job's events are still in its buffer when the worker is told to stop: the stop sends them.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import redis

from jobengine import submit
from jobengine.embedded import redis_url
from jobengine.settings import get_settings
from tests.support.helpers import export_request, make_company
from tests.support.stack import Worker, apply_env

WORKER_EVENTS = ("task-received", "task-started", "task-succeeded")


def _events(pubsub: Any, timeout: float) -> list[dict[str, Any]]:
    """Every event published on the events exchange within ``timeout`` seconds."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message is None or message["type"] != "pmessage":
            continue
        body = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
        found.extend(body if isinstance(body, list) else [body])
    return found


def _of(worker: Worker, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task events ``worker`` sent (the suite's other workers publish on the same Redis:
    one may finish a task of another test meanwhile)."""
    mine = f"{worker.name}@"
    return [
        e
        for e in events
        if e.get("type") in WORKER_EVENTS and e.get("hostname", "").startswith(mine)
    ]


def test_a_stopping_worker_sends_the_task_events_it_still_holds(
    private_queue: tuple[dict[str, str], str],
) -> None:
    env, queue = private_queue
    client = redis.Redis.from_url(redis_url(get_settings()))
    pubsub = client.pubsub()
    pubsub.psubscribe("*celeryev*")
    worker_env = {**env, "JOBENGINE_EVENT_BATCH_SECONDS": "30"}
    worker = Worker(worker_env, concurrency=1, queues=[queue])
    apply_env(env)
    try:
        company, assets = make_company(1)
        handle = submit(export_request(company, assets, "Held Events"))
        from jobengine.cli.devstack import wait_for_runs

        [log] = wait_for_runs(company, [handle], timeout=60)
        assert log.state == "Done"
        held = _of(worker, _events(pubsub, 1.0))
        assert held == []  # all three wait in the worker's buffer (the 30 s are not over)
    finally:
        worker.stop()
    sent = _of(worker, _events(pubsub, 3.0))
    pubsub.close()
    client.close()
    [task_id] = {e["uuid"] for e in sent}
    assert sorted(e["type"] for e in sent) == sorted(WORKER_EVENTS), sent
    assert "jobengine.export.start" in {e.get("name") for e in sent}
    assert task_id
