"""GET /metrics on a real ``jobengine serve``, and the structured logging of jobengine.logs."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest

from jobengine import delete_job, submit
from tests.support.helpers import export_request
from tests.support.stack import Stack
from tests.support.web import WebServer

# --- metrics ---------------------------------------------------------------------------------


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _value(samples: dict[str, float], name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels`` (0 when there is none)."""
    found = []
    for key, value in samples.items():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})?", key)
        assert match, key
        if match.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(value)
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def _scrape(web: WebServer) -> dict[str, float]:
    response = httpx.get(f"{web.url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


def test_metrics_count_runs_durations_triggers_and_queue(stack: Stack, web: WebServer) -> None:
    before = _scrape(web)
    company, assets = stack.company(2)
    handle = submit(export_request(company, assets, "Metered"))
    log = stack.wait(company, handle)
    assert log.state == "Done"
    scheduled = submit(export_request(company, assets, "Noon", execSchedule="0 0 12 * * ?"))

    after = _scrape(web)
    done = {"name": "jobengine_runs", "state": "Done", "kind": "exportJob"}
    assert _value(after, **done) == _value(before, **done) + 1
    # Every known state x kind is present, zeros included, so series do not come and go.
    assert 'jobengine_runs{kind="imageServingPublishJob",state="Cancelled"}' in after
    hist = {"kind": "exportJob", "state": "Done"}
    count = _value(after, "jobengine_run_duration_seconds_count", **hist)
    assert count == _value(before, "jobengine_run_duration_seconds_count", **hist) + 1
    assert _value(after, "jobengine_run_duration_seconds_bucket", le="+Inf", **hist) == count
    # this run's duration: the store's other runs (earlier tests') may have taken any time
    took = _value(after, "jobengine_run_duration_seconds_sum", **hist) - _value(
        before, "jobengine_run_duration_seconds_sum", **hist
    )
    assert 0 < took < 60
    normal = {"name": "jobengine_triggers", "state": "Normal", "kind": "exportJob"}
    assert _value(after, **normal) == _value(before, **normal) + 1
    assert _value(after, "jobengine_queue_depth", queue="jobengine") >= 0
    assert 'jobengine_queue_depth{queue="jobengine"}' in after
    for source in ("runs", "durations", "triggers", "queue"):
        assert _value(after, "jobengine_scrape_errors", source=source) == 0

    delete_job(company, scheduled)
    assert _value(_scrape(web), **normal) == _value(before, **normal)


def test_queue_depth_counts_waiting_messages_of_every_priority(stack: Stack) -> None:
    from jobengine.embedded import redis_client
    from jobengine.settings import get_settings
    from jobengine.web.metrics import queue_depth

    settings = get_settings()
    client = redis_client(settings)
    queue = "jobengine-metrics-test"
    client.delete(queue, f"{queue}\x06\x163")
    client.rpush(queue, "a", "b")
    client.rpush(f"{queue}\x06\x163", "c")
    try:
        assert queue_depth(settings, queue) == 3
    finally:
        client.delete(queue, f"{queue}\x06\x163")
    amqp = settings.with_changes(broker_url="amqp://guest@127.0.0.1//")
    assert queue_depth(amqp, queue) is None


def test_queue_depth_is_reported_for_every_queue_of_the_routes(stack: Stack) -> None:
    from prometheus_client import generate_latest

    from jobengine.embedded import redis_client
    from jobengine.settings import get_settings
    from jobengine.web.metrics import make_registry, queue_depths

    routed = "jobengine-metrics-routed"
    settings = get_settings().with_changes(queues=(("export", routed),))
    client = redis_client(settings)
    client.delete(routed)
    client.rpush(routed, "a", "b")
    try:
        assert queue_depths(settings, [routed, "jobengine-metrics-none"]) == {
            routed: 2, "jobengine-metrics-none": 0,
        }  # fmt: skip
        text = generate_latest(make_registry(settings)).decode()
    finally:
        client.delete(routed)
    assert f'jobengine_queue_depth{{queue="{routed}"}} 2.0' in text
    assert 'jobengine_queue_depth{queue="jobengine"}' in text


# --- logs ------------------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    from jobengine.logs import configure_logging

    stream = io.StringIO()
    logger = logging.getLogger(f"jobengine.test.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler(stream))
    configure_logging(json=True, logger=logger)
    yield logger, stream
    logger.handlers.clear()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_records_inside_a_job_context_carry_job_company_and_run(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    from jobengine.logs import current_context, job_context

    logger, stream = captured
    labels = {"job": "47|My Job|", "company": "47", "run": "My Job_2026", "item": "x.jpg"}
    logger.info("outside")
    with job_context(labels):
        assert current_context() == {"job": "47|My Job|", "company": "47", "run": "My Job_2026"}
        logger.warning("inside %s", "the task")
        with job_context({"job": "47|Other|", "company": "47"}):
            logger.info("nested")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    logger.info("after")
    assert current_context() == {}

    outside, inside, nested, failed, after = _lines(stream)
    assert "job" not in outside and "job" not in after
    assert inside["message"] == "inside the task" and inside["level"] == "WARNING"
    assert (inside["job"], inside["company"], inside["run"]) == ("47|My Job|", "47", "My Job_2026")
    assert inside["logger"] == logger.name and str(inside["ts"]).endswith("+00:00")
    assert nested["job"] == "47|Other|" and "run" not in nested
    assert failed["run"] == "My Job_2026" and "ValueError: boom" in str(failed["exc_info"])


def test_filter_sets_attributes_for_text_formats_and_keeps_explicit_extras() -> None:
    from jobengine.logs import JobContextFilter, configure_logging, job_context

    stream = io.StringIO()
    logger = logging.getLogger("jobengine.test.text")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(job)s %(company)s %(run)s %(message)s"))
    logger.addHandler(handler)
    try:
        configure_logging(json=False, logger=logger)
        configure_logging(json=False, logger=logger)  # idempotent: one filter
        assert sum(isinstance(f, JobContextFilter) for f in handler.filters) == 1
        logger.info("idle")
        with job_context({"job": "j", "company": "c", "run": "r"}):
            logger.info("busy")
            logger.info("mine", extra={"run": "explicit"})
    finally:
        logger.handlers.clear()
    lines = stream.getvalue().splitlines()
    assert lines == ["None None None idle", "j c r busy", "j c explicit mine"]


def test_celery_logging_signals_install_the_filter_and_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery.signals import after_setup_task_logger

    import jobengine.celery_app  # noqa: F401 - connects the signals through jobengine.logs
    from jobengine.logs import JobContextFilter, JsonFormatter, json_from_env

    assert json_from_env({"JOBENGINE_LOG_JSON": "true"}) and not json_from_env({})
    monkeypatch.setenv("JOBENGINE_LOG_JSON", "1")
    logger = logging.getLogger("jobengine.test.celery")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        after_setup_task_logger.send(
            sender=None,
            logger=logger,
            loglevel=logging.INFO,
            logfile=None,
            format="",
            colorize=False,
        )
        assert any(isinstance(f, JobContextFilter) for f in handler.filters)
        assert isinstance(handler.formatter, JsonFormatter)
    finally:
        logger.handlers.clear()


def test_celerys_own_lines_about_a_task_carry_its_job_labels() -> None:
    # Celery logs "Task ... succeeded" after our job_context has closed, while the task's
    # request is still pushed: the filter reads the labels from the message's kwargs.
    import jobengine.tasks.export  # noqa: F401  (registers jobengine.export.*)

    from jobengine.engine.app import app
    from jobengine.logs import JobContextFilter

    task = app.tasks["jobengine.export.start"]
    record = logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1, "done", (), None)
    from celery._state import _task_stack  # what Celery's tracer pushes around a task

    _task_stack.push(task)
    task.push_request(id="t-1", kwargs={"run_id": 1, "job": "47|J|", "company": "47"})
    try:
        assert JobContextFilter().filter(record)
    finally:
        task.pop_request()
        _task_stack.pop()
    assert (record.job, record.company, record.run) == ("47|J|", "47", None)
    outside = logging.LogRecord("celery", logging.INFO, __file__, 1, "idle", (), None)
    JobContextFilter().filter(outside)
    assert outside.job is None
