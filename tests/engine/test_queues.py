"""Queues per job kind: JOBENGINE_QUEUES routes a kind's tasks to a queue of its own, and a worker
consumes the queues it is given (by default every one)."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from jobengine import get_active_jobs, submit
from jobengine.cli.devstack import worker_command
from jobengine.engine.app import app
from jobengine.engine.celery_config import DEFAULT_QUEUE, task_routes, worker_queues
from jobengine.errors import ConfigurationError
from jobengine.settings import Settings, get_settings
from tests.support.helpers import export_request, make_company
from tests.support.stack import Worker


def _settings(queues: str) -> Settings:
    return Settings.from_env({"JOBENGINE_HOME": "/tmp/unused", "JOBENGINE_QUEUES": queues})


def test_routes_and_worker_queues_follow_the_setting() -> None:
    settings = _settings(" export = convert, rip_pdfs=convert ,optimize_images=pyramids")
    assert settings.queues == (
        ("export", "convert"), ("optimize_images", "pyramids"), ("rip_pdfs", "convert"),
    )  # fmt: skip
    assert task_routes(settings) == {
        "jobengine.export.*": {"queue": "convert"},
        "jobengine.optimize_images.*": {"queue": "pyramids"},
        "jobengine.rip_pdfs.*": {"queue": "convert"},
    }
    assert worker_queues(settings) == [DEFAULT_QUEUE, "convert", "pyramids"]
    none = _settings("")
    assert none.queues == () and task_routes(none) == {} and worker_queues(none) == [DEFAULT_QUEUE]
    argv = worker_command(2, queues=["convert"])
    assert argv[argv.index("-Q") + 1] == "convert"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("export", "not kind=queue"),
        ("export=", "not kind=queue"),
        ("=convert", "not kind=queue"),
        ("export=con vert", "not kind=queue"),
        ("export=a;b", "not kind=queue"),
        ("export=" + "q" * 65, "not kind=queue"),
        ("export=a,export=b", "two queues"),
    ],
)
def test_malformed_queue_settings_are_refused(value: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        _settings(value)


def test_a_kind_that_does_not_exist_is_refused_with_the_list() -> None:
    with pytest.raises(ConfigurationError, match=r"no job kind 'exports'.*upload_urls"):
        task_routes(_settings("exports=convert"))


def test_a_kind_on_its_own_queue_waits_for_a_worker_of_that_queue(
    private_queue: tuple[dict[str, str], str],
) -> None:
    env, queue = private_queue
    from jobengine.embedded import redis_client

    client: redis.Redis = redis_client(get_settings())
    company, assets = make_company(2)
    handle = submit(export_request(company, assets, "Routed"))
    # The start message is on the kind's queue, which the session's worker (on "jobengine" only)
    # never reads: the run stays queued.
    deadline = time.monotonic() + 10
    while client.llen(queue) < 1:
        assert time.monotonic() < deadline, "nothing was sent to the kind's queue"
        time.sleep(0.02)
    [waiting] = get_active_jobs(company, include_waiting_jobs=True)
    # a waiting job's startDate is the time it was queued (required in the real schema, issue 12)
    assert waiting.state == "WaitingCoordinator" and waiting.start_date is not None
    assert client.llen(queue) == 1
    worker = Worker(env, concurrency=1, queues=[queue])
    try:
        from jobengine.cli.devstack import wait_for_runs

        [log] = wait_for_runs(company, [handle], timeout=60)
        assert log.state == "Done" and log.file_success_count == 2
    finally:
        worker.stop()
    assert client.llen(queue) == 0
    assert "jobengine.export.item" in worker.log.read_text()  # its items ran there too


def test_a_worker_started_with_prefetch_reserves_that_many_messages_per_process(
    private_queue: tuple[dict[str, str], str],
) -> None:
    """``jobengine worker --prefetch 3``: Celery's prefetch multiplier, so a worker of one pool
    process reserves three messages (a worker of small jobs has its next one at hand); without
    it, one per process."""
    env, queue = private_queue
    for prefetch in (3, 1):
        worker = Worker(env, concurrency=1, queues=[queue], prefetch=prefetch)
        try:
            node = f"{worker.name}@{socket.gethostname()}"
            stats = app.control.inspect([node], timeout=5).stats() or {}
            assert stats[node]["prefetch_count"] == prefetch
        finally:
            worker.stop()
