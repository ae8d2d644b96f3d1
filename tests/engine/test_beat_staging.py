"""The scheduler stages cron fires ahead of their time (issue 14): a tick writes the runs of the
fires due within ``ahead`` seconds as Staged rows, and whichever beat ticks at the fire time
sends each once; a fire whose job was paused or deleted between staging and its time is not
sent. (A beat SIGKILLed with fires staged: tests/faults/test_beats.py, whose real beats stage.)"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from jobengine import (
    delete_job,
    get_job_logs,
    get_scheduled_jobs,
    pause_job,
    resume_job,
    submit_many,
)
from jobengine.embedded import redis_client
from jobengine.engine import dispatch, scheduling
from jobengine.engine.scheduling import tick
from jobengine.kinds import kind_for
from jobengine.runtime import get_runtime
from jobengine.settings import get_settings
from jobengine.store.schema import Job, Run
from tests.support.helpers import export_request, make_company

Queue = tuple[dict[str, str], str]
YEARLY = "0 0 0 1 1 ? 2099"  # after the fire time a test sets, nothing more is due for years


def _fire_time() -> datetime:
    """A whole second a little ahead: the tests tick just before it (staging) and after it."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)


def _schedules(prefix: str, n: int, fire_at: datetime) -> tuple[str, list[str]]:
    """``n`` jobs of one company on a yearly cron, moved to fire at ``fire_at``; the company
    handle and the job handles."""
    company, assets = make_company(1)
    handles = submit_many(
        [export_request(company, assets, f"{prefix} {i}", execSchedule=YEARLY) for i in range(n)]
    )
    with get_runtime().store.write() as session:
        session.execute(
            update(Job).where(Job.name.startswith(f"{prefix} ")).values(next_fire_at=fire_at)
        )
    return company, handles


@pytest.fixture(autouse=True)
def _retire_schedules() -> Iterator[None]:
    yield
    with get_runtime().store.write() as session:
        session.execute(
            update(Job).where(Job.name.startswith("Staged ")).values(deleted_at=datetime.now(UTC))
        )


def _runs(prefix: str) -> list[tuple[str, str, str, str, datetime | None, datetime | None]]:
    """(job name, run state, fire key, run name, ETA, marked sent) of the runs of ``prefix``."""
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(Job.name, Run.state, Run.fire_key, Run.run_name, Run.eta, Run.dispatched_at)
            .join(Job, Job.id == Run.job_id)
            .where(Job.name.startswith(f"{prefix} "))
            .order_by(Job.name)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def _queued(queue: str, prefix: str) -> list[str]:
    """The run names of the start messages in ``queue`` whose job is named ``prefix...``."""
    names = []
    for message in redis_client(get_settings()).lrange(queue, 0, -1):
        kwargs = json.loads(message)["headers"]["kwargsrepr"]
        if f"'run': '{prefix}" in kwargs:
            names.append(kwargs.split("'run': '", 1)[1].split("'", 1)[0])
    return names


def test_a_fire_staged_ahead_is_sent_once_at_its_time(private_queue: Queue) -> None:
    _, queue = private_queue
    fire_at = _fire_time()
    company, _ = _schedules("Staged Once", 3, fire_at)

    report = tick(now=fire_at - timedelta(seconds=2), ahead=5)
    staged = [name for name in report.staged if name.startswith("Staged Once ")]
    stamp = fire_at.astimezone(get_settings().zone).strftime("%Y-%m-%d-%H:%M:%S")
    assert sorted(staged) == [f"Staged Once {i}_{stamp}" for i in range(3)]  # named at the fire
    assert not [name for name in report.fired if name.startswith("Staged Once ")]
    runs = _runs("Staged Once")
    assert [(state, key, eta, sent) for _, state, key, _, eta, sent in runs] == [
        ("Staged", f"cron:{fire_at.isoformat()}", fire_at, None)
    ] * 3
    assert _queued(queue, "Staged Once ") == []  # nothing is sent before its time
    assert not [log for log in get_job_logs(company) if log.job_name.startswith("Staged Once ")]

    again = tick(now=fire_at - timedelta(seconds=1), ahead=5)  # the next tick: staged already
    assert not [n for n in again.staged + again.fired if n.startswith("Staged Once ")]
    assert len(_runs("Staged Once")) == 3

    fired = tick(now=fire_at + timedelta(milliseconds=5), ahead=5)
    assert sorted(n for n in fired.fired if n.startswith("Staged Once ")) == sorted(staged)
    runs = _runs("Staged Once")
    assert [(state, eta) for _, state, _, _, eta, _ in runs] == [("Queued", None)] * 3
    assert all(sent is not None for *_, sent in runs)  # marked sent when taken
    assert sorted(_queued(queue, "Staged Once ")) == sorted(staged)
    assert [log for log in get_job_logs(company) if log.job_name.startswith("Staged Once ")]

    later = tick(now=fire_at + timedelta(seconds=1), ahead=5)
    assert not [n for n in later.fired + later.staged if n.startswith("Staged Once ")]
    assert len(_queued(queue, "Staged Once ")) == 3


def test_a_beat_that_did_not_stage_them_sends_staged_fires_and_two_beats_send_each_once(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staged rows are all there is: a beat without staging (another process, after the
    one that staged them died) sends them; two at once send each once."""
    _, queue = private_queue
    monkeypatch.setattr(scheduling, "FIRE_BATCH", 5)
    monkeypatch.setattr(scheduling, "TAKE_BATCH", 5)
    fire_at = _fire_time()
    _schedules("Staged Pair", 40, fire_at)
    report = tick(now=fire_at - timedelta(seconds=3), ahead=5)
    assert len([n for n in report.staged if n.startswith("Staged Pair ")]) == 40
    # the beats below are other processes: the starts the staging beat built died with it
    monkeypatch.setattr(scheduling, "_PREPARED", scheduling._PreparedStarts())
    errors: list[Exception] = []

    def beat() -> None:
        try:
            tick(now=fire_at + timedelta(milliseconds=5))  # ahead 0: it stages nothing itself
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    beats = [threading.Thread(target=beat) for _ in range(2)]
    for thread in beats:
        thread.start()
    for thread in beats:
        thread.join(120)
    assert not errors
    runs = _runs("Staged Pair")
    assert len(runs) == 40
    assert {state for _, state, *_ in runs} == {"Queued"}
    sent = _queued(queue, "Staged Pair ")
    assert len(sent) == len(set(sent)) == 40


def test_a_fire_paused_or_deleted_after_staging_is_not_sent(private_queue: Queue) -> None:
    """Paused (or deleted) between staging and the fire time: the staged fire is dropped, not
    sent; paused and resumed before it: it fires."""
    _, queue = private_queue
    fire_at = _fire_time()
    company, handles = _schedules("Staged Stale", 3, fire_at)
    report = tick(now=fire_at - timedelta(seconds=2), ahead=5)
    assert len([n for n in report.staged if n.startswith("Staged Stale ")]) == 3
    pause_job(company, handles[0])
    delete_job(company, handles[1])
    pause_job(company, handles[2])
    resume_job(company, handles[2])

    fired = tick(now=fire_at + timedelta(milliseconds=5), ahead=5)
    assert [n.split("_")[0] for n in fired.fired if n.startswith("Staged Stale ")] == [
        "Staged Stale 2"
    ]
    runs = _runs("Staged Stale")
    assert [(name, state) for name, state, *_ in runs] == [("Staged Stale 2", "Queued")]
    assert [n.split("_")[0] for n in _queued(queue, "Staged Stale ")] == ["Staged Stale 2"]

    resume_job(company, handles[0])  # after its time: it waits for its next fire (2099)
    later = tick(now=fire_at + timedelta(seconds=1), ahead=5)
    assert not [n for n in later.fired + later.staged if n.startswith("Staged Stale ")]
    assert len(_runs("Staged Stale")) == 1


def _event_fields(command: tuple[str, str, Any]) -> dict[str, Any]:
    """The fields of a built event (its group's publish options beside them)."""
    _, fields = command[2]
    return dict(json.loads(fields) if isinstance(fields, str) else fields)


def _comparable(command: tuple[str, str, Any]) -> tuple[str, str, dict[str, object]]:
    """A built command of a message, without what differs from one build to the next (the
    delivery tag; an event's clock and timestamp)."""
    verb, key, payload = command
    if verb == "event":
        event = _event_fields(command)
        for volatile in ("clock", "timestamp"):
            event.pop(volatile)
        return verb, key, event
    message = json.loads(payload)
    message["properties"].pop("delivery_tag")
    body = json.loads(base64.b64decode(message.pop("body")))
    if isinstance(body, dict):  # an event
        for volatile in ("clock", "timestamp"):
            body.pop(volatile)
    message["body"] = body
    return verb, key, message


def test_staged_starts_are_built_ahead_as_they_would_be_built_at_their_time(
    private_queue: Queue,
) -> None:
    _, queue = private_queue
    fire_at = _fire_time()
    _schedules("Staged Built", 2, fire_at)
    sender = dispatch._redis_sender()
    assert sender is not None
    # Celery builds the first start of a kind in a process (its template): one before, unsent
    learn = dispatch.StartMessage("export", 1, "learn", {"job": "j", "company": "c", "run": "r"})
    sender.build([dispatch._start_call(learn)])
    report = tick(now=fire_at - timedelta(seconds=2), ahead=5)
    staged = [n for n in report.staged if n.startswith("Staged Built ")]
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(Run.id, Run.task_id, Run.run_name, Job.handle, Job.kind)
            .join(Job, Job.id == Run.job_id)
            .where(Run.run_name.in_(staged))
        ).all()
    built = scheduling._PREPARED.take([row[0] for row in rows], fire_at)
    assert all(one is not None for one in built)
    for (run_id, task_id, name, job, kind), ahead in zip(rows, built, strict=True):
        assert ahead is not None
        labels = {"job": job, "company": json.loads(ahead.commands[0][2])["headers"]
                  ["kwargsrepr"].split("'company': '")[1].split("'")[0], "run": name}  # fmt: skip
        start = dispatch.StartMessage(kind_for(kind).slug, run_id, task_id, labels)
        now = sender.build([dispatch._start_call(start)])
        assert [_comparable(c) for c in ahead.commands] == [_comparable(c) for c in now]
        assert ahead.commands[0][:2] == ("lpush", queue)
        if len(ahead.commands) == 2:  # its task-sent event says it was sent at the fire time
            assert ahead.commands[1][0] == "event"
            event = _event_fields(ahead.commands[1])
            assert event["type"] == "task-sent"
            assert event["timestamp"] == fire_at.timestamp()


def _beat(env: dict[str, str], home: Path, n: int) -> subprocess.Popen[bytes]:
    """``jobengine beat``'s scheduler in a process of its own (its output in ``home``)."""
    argv = [sys.executable, "-m", "celery", "-A", "jobengine.celery_app", "beat", "-S",
            "jobengine.engine.scheduling:StoreScheduler", "--loglevel", "info",
            "--schedule", str(home / f"staging-beat{n}.db")]  # fmt: skip
    with (home / f"staging-beat{n}.log").open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def _states(prefix: str) -> list[tuple[str, str]]:
    return [(state, key) for _, state, key, *_ in _runs(prefix)]


@pytest.mark.slow
def test_fires_staged_by_a_beat_sigkilled_before_their_time_are_sent_once_by_the_next(
    private_queue: Queue,
) -> None:
    env_of_store, queue = private_queue
    fire_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=14)
    _schedules("Staged Killed", 3, fire_at)
    home = Path(get_settings().home)
    env = {**os.environ, **env_of_store, "JOBENGINE_STAGE_AHEAD": "12"}
    first = _beat(env, home, 1)
    try:
        deadline = time.monotonic() + 12
        while [s for s, _ in _states("Staged Killed")] != ["Staged"] * 3:
            assert time.monotonic() < deadline, "the first beat did not stage the fires"
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(20)
    assert datetime.now(UTC) < fire_at  # killed before their time, its lock still held
    second = _beat(env, home, 2)
    try:
        deadline = time.monotonic() + (fire_at - datetime.now(UTC)).total_seconds() + 15
        while {s for s, _ in _states("Staged Killed")} != {"Queued"}:
            assert time.monotonic() < deadline, "the next beat did not send the staged fires"
            time.sleep(0.2)
        time.sleep(2)  # a second send would come with the next ticks
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    assert _states("Staged Killed") == [("Queued", f"cron:{fire_at.isoformat()}")] * 3
    sent = _queued(queue, "Staged Killed ")
    assert len(sent) == len(set(sent)) == 3


def test_get_scheduled_jobs_shows_a_staged_fire_as_the_next_until_it_fires(
    private_queue: Queue,
) -> None:
    """Staging moves a job's next fire time on (to the one after, or its trigger to Complete
    after the schedule's last fire) before the staged fire has run: until it does,
    getScheduledJobs still shows that fire next, with the trigger Normal."""
    fire_at = _fire_time()
    company, [yearly, last] = _schedules("Staged Shown", 2, fire_at)
    with get_runtime().store.write() as session:  # no fire after fire_at: its last one
        session.execute(
            update(Job).where(Job.handle == last).values(exec_schedule="0 0 0 1 1 ? 2026")
        )
    zone = get_settings().zone

    def shown() -> dict[str, tuple[datetime | None, str]]:
        jobs = [j for j in get_scheduled_jobs(company) if j.name.startswith("Staged Shown ")]
        return {j.job_handle: (j.next_fire_time, j.trigger_state) for j in jobs}

    assert shown() == {yearly: (fire_at, "Normal"), last: (fire_at, "Normal")}
    tick(now=fire_at - timedelta(seconds=2), ahead=5)
    triggers = select(Job.handle, Job.trigger_state).where(Job.handle.in_([yearly, last]))
    with get_runtime().store.read() as session:
        moved = {handle: state for handle, state in session.execute(triggers)}
    assert moved == {yearly: "Normal", last: "Complete"}  # staged: the triggers moved on
    assert shown() == {yearly: (fire_at, "Normal"), last: (fire_at, "Normal")}
    for at, _ in shown().values():  # in the server's zone, as the job's own next fire time
        assert at is not None and at.utcoffset() == fire_at.astimezone(zone).utcoffset()

    tick(now=fire_at + timedelta(milliseconds=5), ahead=5)  # fired
    after = shown()
    assert last not in after  # its schedule is over
    [(next_fire, state)] = after.values()
    assert state == "Normal" and next_fire is not None and next_fire.year == 2099
