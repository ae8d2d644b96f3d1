"""execTime (ETA and held), execSchedule through the scheduler, and the control operations."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from jobengine import (
    delete_job,
    errors,
    execute_job,
    get_active_jobs,
    get_job_logs,
    get_scheduled_jobs,
    pause_job,
    resume_job,
    stop_job,
    submit,
)
from jobengine.engine.scheduling import tick
from jobengine.runtime import get_runtime
from jobengine.store.schema import Company, Job, Run
from tests.support.helpers import export_request


def _iso(dt: datetime) -> str:
    return dt.isoformat()


def _runs(company: str, name: str) -> list[Run]:
    with get_runtime().store.read() as session:
        return list(
            session.scalars(
                select(Run)
                .join(Job, Job.id == Run.job_id)
                .join(Company, Company.id == Job.company_id)
                .where(Job.name == name, Run.run_name.like(f"{name}_%"), Company.handle == company)
                .where(Job.company_id == Run.company_id)
                .order_by(Run.id)
            )
        )


def _wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except IndexError:  # the run does not exist yet
            pass
        time.sleep(0.005)
    raise AssertionError("condition not reached")


def _run_count(name: str) -> int:
    with get_runtime().store.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Run)
                .join(Job, Job.id == Run.job_id)
                .where(Job.name == name)
            )
            or 0
        )


def test_exec_time_near_is_sent_with_an_eta_and_starts_on_time(stack) -> None:
    company, assets = stack.company(1)
    at = datetime.now(UTC) + timedelta(seconds=2)
    handle = submit(export_request(company, assets, "Soon", execTime=_iso(at)))
    runs = _runs(company, "Soon")
    assert len(runs) == 1 and runs[0].eta == at.replace(microsecond=at.microsecond)
    assert [j.job_handle for j in get_scheduled_jobs(company)] == [handle]
    log = stack.wait(company, handle)
    assert log.start_date is not None and log.start_date >= at - timedelta(milliseconds=5)
    assert get_scheduled_jobs(company) == []


def test_exec_time_far_is_held_in_the_store_until_inside_the_horizon(stack) -> None:
    company, assets = stack.company(1)
    at = datetime.now(UTC) + timedelta(seconds=8)  # the test horizon is 5 s
    handle = submit(export_request(company, assets, "Later", execTime=_iso(at)))
    assert _runs(company, "Later") == []
    tick()
    assert _runs(company, "Later") == []  # still outside the horizon
    while datetime.now(UTC) < at - timedelta(seconds=4):
        time.sleep(0.2)
    tick()
    runs = _runs(company, "Later")
    assert len(runs) == 1 and runs[0].eta is not None
    tick()
    assert len(_runs(company, "Later")) == 1  # a second tick sends nothing again
    log = stack.wait(company, handle)
    assert log.state == "Done" and log.start_date >= at - timedelta(milliseconds=5)


def test_naive_exec_time_and_bad_cron_are_refused(stack) -> None:
    company, assets = stack.company(1)
    with pytest.raises(errors.InvalidParameter):
        submit(export_request(company, assets, execTime="2030-01-01T00:00:00"))
    with pytest.raises(errors.InvalidParameter) as caught:
        submit(export_request(company, assets, execSchedule="0 0 12 * * *"))
    assert caught.value.code == 30001
    assert "day-of-week" in caught.value.reason.lower()


def _tick_just_after_next_fire(company: str) -> None:
    """Wait for the schedule's next fire time, then tick as beat would just after it (so that
    exactly that one fire time is due: every fire time due in a tick fires)."""
    due = get_scheduled_jobs(company)[0].next_fire_time
    assert due is not None
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.05)
    tick(now=due + timedelta(seconds=0.05))


def test_schedule_fires_pauses_resumes_executes_and_deletes(stack) -> None:
    company, assets = stack.company(1)
    handle = submit(export_request(company, assets, "Every Second", execSchedule="* * * * * ?"))
    [scheduled] = get_scheduled_jobs(company)
    assert scheduled.trigger_state == "Normal" and scheduled.exec_schedule == "* * * * * ?"
    assert scheduled.next_fire_time is not None and scheduled.time_zone == "UTC"
    _tick_just_after_next_fire(company)
    assert _run_count("Every Second") == 1
    paused_at = datetime.now(UTC)
    pause_job(company, handle)
    assert get_scheduled_jobs(company)[0].trigger_state == "Paused"
    time.sleep(2.2)
    tick()
    assert _run_count("Every Second") == 1  # paused: no fire
    resumed_at = datetime.now(UTC)
    resume_job(company, handle)
    assert get_scheduled_jobs(company)[0].next_fire_time > resumed_at  # no catch-up
    _tick_just_after_next_fire(company)
    assert _run_count("Every Second") == 2
    fired = [
        datetime.fromisoformat(r.fire_key.split(":", 1)[1]) for r in _runs(company, "Every Second")
    ]
    assert not [t for t in fired if paused_at < t < resumed_at]  # nothing fired for the pause
    before = get_scheduled_jobs(company)[0].next_fire_time
    execute_job(company, handle)
    assert _run_count("Every Second") == 3
    assert get_scheduled_jobs(company)[0].next_fire_time == before
    delete_job(company, handle)
    assert get_scheduled_jobs(company) == []
    time.sleep(1.1)
    tick()
    assert _run_count("Every Second") == 3
    with pytest.raises(errors.InvalidParameter):
        pause_job(company, handle)


def test_a_beat_that_was_down_fires_a_missed_schedule_once(stack) -> None:
    company, assets = stack.company(1)
    submit(export_request(company, assets, "Missed", execSchedule="* * * * * ?"))
    with get_runtime().store.write() as session:
        session.execute(
            update(Job)
            .where(Job.name == "Missed", Job.exec_schedule.is_not(None))
            .values(next_fire_at=datetime.now(UTC) - timedelta(minutes=10))
        )
    report = tick()
    assert len([n for n in report.fired if n.startswith("Missed_")]) == 1
    assert _run_count("Missed") == 1
    [job] = [j for j in get_scheduled_jobs(company) if j.original_name == "Missed"]
    assert job.next_fire_time is not None and job.next_fire_time > datetime.now(UTC) - timedelta(
        seconds=1
    )


def test_stop_before_start_and_between_items(stack) -> None:
    company, assets = stack.company(1)
    at = datetime.now(UTC) + timedelta(seconds=2)
    early = submit(export_request(company, assets, "Stop Early", execTime=_iso(at)))
    stop_job(company, early)
    log = stack.wait(company, early)
    assert log.state == "Stopped" and "zip" not in log.output

    company, assets = stack.company(200)
    handle = submit(export_request(company, assets, "Stop Mid"))
    _wait_until(lambda: 0 < _runs(company, "Stop Mid")[0].finished_items < 150)
    pause_job(company, handle)  # items halt between items until resumed
    [active] = get_active_jobs(company, include_waiting_jobs=True)
    assert active.state in ("WaitingCoordinator", "Running")
    stop_job(company, handle)
    assert get_active_jobs(company, include_waiting_jobs=True)[0].state == "Stopping"
    resume_job(company, handle)
    log = stack.wait(company, handle)
    assert log.state == "Stopped"
    assert "zip" not in log.output  # nothing half-written
    assert any(d.log_type == "FileCancel" for d in log.details)
    storage = get_runtime().storage
    assert not list(storage.path(company).glob("exports/*"))


def test_stop_of_a_finished_job_is_a_clear_fault(stack) -> None:
    company, assets = stack.company(1)
    handle = submit(export_request(company, assets, "Done Already"))
    stack.wait(company, handle)
    with pytest.raises(errors.InvalidParameter, match="not running"):
        stop_job(company, handle)
    with pytest.raises(errors.InvalidParameter, match="unknown jobHandle"):
        stop_job(company, f"{company}|No Such Job|")
    with pytest.raises(errors.IllegalCompany):
        stop_job(company, "otherco|Done Already|")


def test_get_job_logs_filters_and_sorts(stack) -> None:
    company, assets = stack.company(2)
    a = submit(export_request(company, assets[:1], "Alpha"))
    b = submit(export_request(company, assets, "Beta"))
    stack.wait(company, a)
    stack.wait(company, b)
    by_success = get_job_logs(company, sort_by="FileSuccessCount", sort_direction="Descending")
    assert [log.original_job_name for log in by_success] == ["Beta", "Alpha"]
    assert len(get_job_logs(company, num_rows=1)) == 1
    assert get_job_logs(company, user_handle="nobody@example.com") == []
    future = datetime.now(UTC) + timedelta(days=1)
    assert get_job_logs(company, start_date=future) == []
    with pytest.raises(errors.InvalidParameter):
        get_job_logs(company, sort_by="Bogus")
    with pytest.raises(errors.InvalidParameter):
        get_job_logs(company, start_date=datetime(2030, 1, 1))
