"""The control operations: stopJob, pauseJob, resumeJob, deleteJob, executeJob.

All of them are durable flags and trigger states in the store, never only a Celery revoke, so
they hold across worker restarts: every task reads them before it does anything.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from jobengine.assets.catalog import company_row
from jobengine.cron import parse as parse_cron
from jobengine.engine import dispatch
from jobengine.engine.runner import labels
from jobengine.engine.submission import send_run
from jobengine.errors import InvalidParameter, caller_faults
from jobengine.handles import run_handle
from jobengine.kinds import kind_for
from jobengine.runtime import Runtime, get_runtime
from jobengine.store.jobs import create_run, find_job, find_runs
from jobengine.store.reads import pending_items
from jobengine.store.runs import lock_job, write_log
from jobengine.store.schema import Company, Job, Run, utcnow
from jobengine.store.states import ACTIVE_RUNS, LIVE_TRIGGERS, RunState, TriggerState
from jobengine.store.users import CompanyRef

__all__ = ["delete_job", "execute_job", "pause_job", "resume_job", "stop_job"]

_Resend = list[tuple[str, Run, dict[str, str], list[tuple[int, str]]]]


def _target(
    session: Session, company_handle: str | CompanyRef, job_handle: str
) -> tuple[Job, list[Run], Company]:
    company = company_row(session, company_handle)
    job, run = find_job(session, company, job_handle)
    lock_job(session, job)
    if run is not None:
        session.refresh(run)  # read before the lock
    runs = [run] if run is not None else find_runs(session, job, ACTIVE_RUNS)
    return job, [r for r in runs if r.state in ACTIVE_RUNS], company


def _scheduled(job: Job) -> bool:
    return (
        job.deleted_at is None
        and job.trigger_state in LIVE_TRIGGERS
        and (job.exec_schedule is not None or job.next_fire_at is not None)
    )


@caller_faults
def stop_job(company_handle: str | CompanyRef, job_handle: str) -> None:
    """Stop a job in progress: it shows Stopping, then halts between items."""
    with get_runtime().store.write() as session:
        _, runs, _ = _target(session, company_handle, job_handle)
        if not runs:
            raise InvalidParameter(f"job {job_handle!r} is not running", field="jobHandle")
        for run in runs:
            if not run.stop_requested:
                run.stop_requested, run.state = True, RunState.STOPPING
                run.last_progress_update = utcnow()
                write_log(session, run, "FileCancel", "stop requested")


@caller_faults
def pause_job(company_handle: str | CompanyRef, job_handle: str) -> None:
    """Pause a job: its trigger stops firing, and running runs halt between items."""
    with get_runtime().store.write() as session:
        job, runs, _ = _target(session, company_handle, job_handle)
        if not runs and not _scheduled(job):
            raise InvalidParameter(
                f"job {job_handle!r} is neither scheduled nor running", field="jobHandle"
            )
        if _scheduled(job):
            job.trigger_state = TriggerState.PAUSED
        for run in runs:
            run.paused = True


@caller_faults
def resume_job(company_handle: str | CompanyRef, job_handle: str) -> None:
    """Resume a paused job; a schedule waits for its next fire time after now (no catch-up)."""
    runtime = get_runtime()
    resend: _Resend = []
    with runtime.store.write() as session:
        job, runs, company = _target(session, company_handle, job_handle)
        paused_runs = [r for r in runs if r.paused]
        if job.trigger_state != TriggerState.PAUSED and not paused_runs:
            raise InvalidParameter(f"job {job_handle!r} is not paused", field="jobHandle")
        if job.trigger_state == TriggerState.PAUSED:
            job.trigger_state = TriggerState.NORMAL
            if job.exec_schedule:
                job.next_fire_at = parse_cron(job.exec_schedule).next_after(
                    utcnow(), runtime.settings.zone
                )
        for run in paused_runs:
            run.paused = False
            items = pending_items(session, run.id)
            resend.append((job.kind, run, labels(run, job, company), items))
    _resend(runtime, resend)


def _resend(runtime: Runtime, resend: _Resend) -> None:
    for element, run, tags, pending in resend:
        slug = kind_for(element).slug
        if run.state == RunState.QUEUED:  # paused before it started: its start returned unheard
            send_run(runtime, element, run, tags)
        if pending:  # items that saw the pause (possibly while the start was still sending)
            dispatch.send_items(slug, run.id, run.task_id, pending, tags)


@caller_faults
def delete_job(company_handle: str | CompanyRef, job_handle: str) -> None:
    """Delete a scheduled, queued or current job; a current run is stopped between items."""
    with get_runtime().store.write() as session:
        job, runs, _ = _target(session, company_handle, job_handle)
        if job.deleted_at is not None:
            raise InvalidParameter(f"job {job_handle!r} is already deleted", field="jobHandle")
        job.deleted_at, job.trigger_state = utcnow(), TriggerState.NONE
        job.next_fire_at, job.live_key = None, None
        for run in runs:
            if run.state == RunState.QUEUED and not run.planned:
                run.state, run.ended_at = RunState.CANCELLED, utcnow()
                write_log(session, run, "FileCancel", "job deleted before it started")
            elif not run.stop_requested:
                run.stop_requested, run.state = True, RunState.STOPPING
                write_log(session, run, "FileCancel", "job deleted: stopping")


@caller_faults
def execute_job(company_handle: str | CompanyRef, job_handle: str) -> str:
    """Run a scheduled job now, without changing its schedule; returns the new run's handle."""
    runtime = get_runtime()
    with runtime.store.write() as session:
        company = company_row(session, company_handle)
        job, _ = find_job(session, company, job_handle)
        lock_job(session, job)
        if not _scheduled(job):
            raise InvalidParameter(f"job {job_handle!r} is not a scheduled job", field="jobHandle")
        if job.exec_schedule is None:  # a one-shot runs once: now instead of later
            queued = find_runs(session, job, (RunState.QUEUED,))
            if queued:
                early = queued[0]
                tags, name = labels(early, job, company), early.run_name
                slug = kind_for(job.kind).slug
                dispatch.send_start(slug, early.id, early.task_id, tags)
                return run_handle(company.handle, name)
            job.fired_through = job.next_fire_at
        local_now = utcnow().astimezone(runtime.settings.zone)
        run = create_run(session, job, f"manual:{uuid.uuid4().hex}", local_now=local_now)
        assert run is not None
        tags = labels(run, job, company)
        element = job.kind
        name = run.run_name
    send_run(runtime, element, run, tags)
    return run_handle(company.handle, name)
