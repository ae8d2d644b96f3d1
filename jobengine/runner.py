"""The life of a run: start (plan and fan out), one item at a time, finish (join and log).

Tasks call these three functions and nothing else. Each step passes a run-once guard in the
store first, so a redelivered, duplicated or re-sent message does nothing twice; every step is
safe to run again after a worker dies in the middle of it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobengine import dispatch
from jobengine.i18n import LogMessage, progress_message
from jobengine.kinds import JobKindHandler, kind_for
from jobengine.kinds.base import AssetRef, ItemOutcome, PlannedItem, RunContext
from jobengine.runtime import Runtime, get_runtime
from jobengine.store.runs import (
    Counts,
    ItemFinal,
    cancel_item,
    claim_finish,
    claim_item,
    claim_start,
    complete_item,
    count_finished,
    end_run,
    lock_job_of_run,
    mark_finish_sent,
    write_log,
)
from jobengine.store.schema import Company, Job, Run, RunItem

__all__ = ["ItemStep", "finish", "labels", "run_item", "start"]

logger = logging.getLogger(__name__)


def labels(run: Run, job: Job, company: Company) -> dict[str, str]:
    """What each task message carries for people reading Flower."""
    return {"job": job.handle, "company": company.handle, "run": run.run_name}


@dataclass(frozen=True)
class _Loaded:
    run: Run
    job: Job
    company: Company
    kind: JobKindHandler
    ctx: RunContext


def _load(runtime: Runtime, session: Session, run_id: int) -> _Loaded | None:
    run = session.get(Run, run_id)
    if run is None:
        return None
    job = session.get(Job, run.job_id)
    company = session.get(Company, run.company_id)
    assert job is not None and company is not None
    kind = kind_for(job.kind)
    ctx = RunContext(runtime, run.id, job.id, company.id, company.handle, run.run_name, job.payload)
    return _Loaded(run, job, company, kind, ctx)


def start(run_id: int, worker: str) -> str:
    """Claim a queued run, plan its items and send them; returns what happened."""
    runtime = get_runtime()
    lease = runtime.settings.lease_seconds
    with runtime.store.write() as session:
        lock_job_of_run(session, run_id)
        loaded = _load(runtime, session, run_id)
        if loaded is None:
            return "duplicate"
        if loaded.run.paused and loaded.run.state == "Queued":
            return "paused"  # resumeJob sends it again
        if not claim_start(session, run_id, worker, lease):
            return "duplicate"
        job = loaded.job
        if loaded.run.stop_requested and not loaded.run.planned:
            write_log(session, loaded.run, "FileCancel", "job stopped before it started")
            end_run(session, loaded.run, "Stopped")
            return "stopped"
        if job.exec_schedule is None and job.trigger_state == "Normal":
            job.trigger_state, job.next_fire_at = "Complete", None
        existing = session.scalars(select(RunItem).where(RunItem.run_id == run_id)).all()
        if not existing:
            write_log(session, loaded.run, loaded.kind.begin_log, "job {job} started", job=job.name)
    try:
        items = _plan(runtime, loaded, existing)
    except Exception as exc:
        logger.exception("planning run %s failed", run_id)
        _fail(runtime, run_id, "the job could not start: {error}", error=exc)
        return "failed"
    tags = labels(loaded.run, loaded.job, loaded.company)
    pending = [(i.seq, i.key) for i in items if i.state == "pending"]
    dispatch.send_items(loaded.kind.slug, run_id, loaded.run.task_id, pending, tags)
    with runtime.store.write() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.planned, run.lease_until = True, None
        session.flush()
        all_done = mark_finish_sent(session, run_id)
    if all_done:
        dispatch.send_finish(loaded.kind.slug, run_id, loaded.run.task_id, tags)
    return "started"


def _plan(runtime: Runtime, loaded: _Loaded, existing: Sequence[RunItem]) -> list[RunItem]:
    if existing:  # an earlier start died after planning: reuse its items, never re-plan
        return list(existing)
    with runtime.store.read() as session:
        planned = loaded.kind.plan(loaded.ctx, session)
    with runtime.store.write() as session:
        rows = [RunItem(run_id=loaded.run.id, seq=n, key=p.key) for n, p in enumerate(planned)]
        session.add_all(rows)
        run = session.get(Run, loaded.run.id)
        assert run is not None
        run.total_items = len(rows)
        run.progress_message = progress_message(0, len(rows))
    return rows


@dataclass(frozen=True)
class ItemStep:
    """What an item task did: its outcome, or why it did nothing, or when to try again."""

    status: Literal["done", "duplicate", "cancelled", "busy", "paused"]
    retry_at: datetime | None = None
    progress: int = 0
    finished: int = 0
    total: int = 0


def run_item(run_id: int, seq: int, worker: str) -> ItemStep:
    """Do item ``seq`` of a run once; counts it and sends the finish after the last item."""
    runtime = get_runtime()
    with runtime.store.write() as session:
        loaded = _load(runtime, session, run_id)
        if loaded is None:
            return ItemStep("duplicate")
        if loaded.run.stop_requested:
            lock_job_of_run(session, run_id)  # before the run's rows: see _complete
            step, send = _cancel(session, loaded, seq)
        elif loaded.run.paused:
            return ItemStep("paused")
        else:
            claim = claim_item(session, run_id, seq, worker, runtime.settings.lease_seconds)
            if claim.status == "busy":
                return ItemStep("busy", retry_at=claim.busy_until)
            if claim.status != "owned" or claim.item is None:
                return ItemStep("duplicate")
            key = claim.item.key
            step = None
    if step is not None:
        if send:
            _send_finish(loaded)
        return step
    outcome = _process(loaded, key)
    return _complete(runtime, loaded, seq, worker, outcome)


def _process(loaded: _Loaded, key: str) -> ItemOutcome:
    try:
        return loaded.kind.process(loaded.ctx, PlannedItem(key=key))
    except Exception as exc:  # one bad file fails its own item, never the job or the worker
        logger.exception("item %s of run %s failed", key, loaded.run.id)
        error = f"{type(exc).__name__}: {exc}"
        return ItemOutcome(
            "error",
            "FatalError",
            "cannot process {item}: {error}",
            AssetRef(handle=key),
            args={"item": key, "error": error},
        )


def _complete(
    runtime: Runtime, loaded: _Loaded, seq: int, worker: str, outcome: ItemOutcome
) -> ItemStep:
    counts = Counts(
        success=int(outcome.status == "success"),
        error=int(outcome.status == "error"),
        warning=int(outcome.status == "warning"),
        size=outcome.size,
        duplicate=int(outcome.tally == "duplicate"),
        update=int(outcome.tally == "update"),
    )
    final: ItemFinal = "failed" if outcome.status == "error" else "done"
    with runtime.store.write() as session:
        # The job row first, as everywhere: updating the run row twice in one transaction makes
        # PostgreSQL re-check the run's foreign key to its job (FOR KEY SHARE), which would wait
        # on a control operation holding the job while it waits on this run: a deadlock.
        lock_job_of_run(session, loaded.run.id)
        result = complete_item(
            session, loaded.run.id, seq, worker, final=final, counts=counts, result=outcome.result
        )
        if result is None:  # our lease lapsed and another worker took the item over
            return ItemStep("duplicate")
        run = session.get(Run, loaded.run.id)
        assert run is not None
        write_log(
            session,
            run,
            outcome.log_type,
            outcome.message_id,
            asset_name=outcome.asset.name,
            asset_type=outcome.asset.type,
            asset_handle=outcome.asset.handle,
            **outcome.args,
        )
        send = mark_finish_sent(session, run.id)
    if send:
        _send_finish(loaded)
    finished, total = result
    return ItemStep(
        "done", progress=finished * 100 // max(total, 1), finished=finished, total=total
    )


def _cancel(session: Session, loaded: _Loaded, seq: int) -> tuple[ItemStep, bool]:
    if not cancel_item(session, loaded.run.id, seq):
        return ItemStep("duplicate"), False
    result = count_finished(session, loaded.run.id, Counts())
    run = session.get(Run, loaded.run.id)
    assert run is not None
    item = session.scalar(select(RunItem).where(RunItem.run_id == run.id, RunItem.seq == seq))
    key = item.key if item else seq
    write_log(session, run, "FileCancel", "{item} cancelled: job stopped", item=key)
    step = ItemStep("cancelled", finished=result[0], total=result[1])
    return step, mark_finish_sent(session, run.id)


def _send_finish(loaded: _Loaded) -> None:
    tags = labels(loaded.run, loaded.job, loaded.company)
    dispatch.send_finish(loaded.kind.slug, loaded.run.id, loaded.run.task_id, tags)


def finish(run_id: int, worker: str) -> str:
    """Join a run whose items are all finished: write its output and final job log, once."""
    runtime = get_runtime()
    with runtime.store.write() as session:
        loaded = _load(runtime, session, run_id)
        if loaded is None or not claim_finish(
            session, run_id, worker, runtime.settings.lease_seconds
        ):
            return "duplicate"
        stopped = loaded.run.stop_requested
    try:
        with runtime.store.read() as session:
            output = loaded.kind.finish(loaded.ctx, session, stopped)
    except Exception as exc:
        logger.exception("finishing run %s failed", run_id)
        _fail(runtime, run_id, "the job could not finish: {error}", error=exc)
        return "failed"
    with runtime.store.write() as session:
        lock_job_of_run(session, run_id)
        run = session.get(Run, run_id)
        assert run is not None
        run.output = output
        state = "Stopped" if stopped else "Done"
        summary: LogMessage = (
            "job stopped: {success} succeeded, {errors} failed, "
            "{warnings} warnings of {total} file(s)"
            if stopped
            else "job done: {success} succeeded, {errors} failed, "
            "{warnings} warnings of {total} file(s)"
        )
        write_log(
            session,
            run,
            loaded.kind.end_log,
            summary,
            success=run.success_count,
            errors=run.error_count,
            warnings=run.warning_count,
            total=run.total_items,
        )
        end_run(session, run, state)
    return state.lower()


def _fail(runtime: Runtime, run_id: int, message_id: LogMessage, error: Exception) -> None:
    with runtime.store.write() as session:
        lock_job_of_run(session, run_id)
        run = session.get(Run, run_id)
        if run is None:
            return
        write_log(session, run, "FatalError", message_id, error=error)
        end_run(session, run, "Failed", fatal=True)
