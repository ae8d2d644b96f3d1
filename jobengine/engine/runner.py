"""The life of a run: start (plan and fan out), one item at a time, finish (join and log).

Tasks call these three functions and nothing else. Each step passes a run-once guard in the
store first, so a redelivered, duplicated or re-sent message does nothing twice; every step is
safe to run again after a worker dies in the middle of it.

* A step that works keeps its lease alive (:class:`~jobengine.engine.heartbeat.Heartbeat`): a live
  worker is never doubled, a dead one is taken over one lease after its last beat.
* An outage of the store (:class:`~jobengine.errors.Unavailable`) is never an outcome: it
  leaves the step, which the task runs again from the top once the store answers (the claims
  are re-entrant for their holder). Nothing is recorded as failed because the store was down.
* Finishing is idempotent. The kind writes its output (atomically), then the end of the run is
  committed by a compare-and-set on its state, and only then are the staged inputs removed
  (:meth:`~jobengine.kinds.base.JobKindHandler.cleanup`). A finish killed before its commit is
  re-sent and writes the same output again from the same inputs; one killed after it finds the
  run ended and only cleans up.
* A message that cannot be sent after a commit (the broker is down) is not an error of the
  step: the scheduler sends it once the broker is back (see :mod:`jobengine.engine.scheduling`).
* What follows the end of a run (the follow-on job, the e-mail, the completion callback) is
  the hooks' (:mod:`jobengine.engine.hooks`): run here, in order, each isolated from the others.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from jobengine.engine import dispatch, hooks
from jobengine.engine.heartbeat import Heartbeat
from jobengine.errors import RunStopped, Unavailable, log_reason
from jobengine.i18n import LogMessage, progress_message
from jobengine.kinds import JobKindHandler, kind_for
from jobengine.kinds.base import AssetRef, ItemOutcome, LogRow, PlannedItem, RunContext
from jobengine.model.logtypes import JobLogType
from jobengine.runtime import Runtime, get_runtime
from jobengine.settings import Settings
from jobengine.store.db import commit_without_flush
from jobengine.store.hot import pipelined
from jobengine.store.runs import (
    Counted,
    Counts,
    ItemClaim,
    LogEntry,
    add_items,
    cancel_held_item,
    cancel_item,
    claim_finish,
    claim_inline_finish,
    claim_item,
    claim_items,
    claim_loaded_items,
    claim_loaded_start,
    complete_item,
    count_finished,
    end_item,
    end_items,
    end_one_shot,
    end_run,
    extend_held_leases,
    extend_item_lease,
    extend_run_lease,
    finish_reads,
    get_run,
    load_run,
    lock_job_of_run,
    log_end,
    mark_finish_sent,
    release_items,
    run_flags,
    run_items,
    write_log,
    write_logs,
    write_record,
)
from jobengine.store.schema import Company, Job, Run, RunItem
from jobengine.store.states import FINAL_RUNS, ItemState, RunState

__all__ = ["ChunkStep", "ItemStep", "finish", "labels", "run_chunk", "run_item", "start"]

logger = logging.getLogger(__name__)


def labels(run: Run, job: Job, company: Company) -> dict[str, str]:
    """What each task message carries for people reading Flower."""
    return {"job": job.handle, "company": company.handle, "run": run.run_name}


@dataclass(frozen=True)
class _Loaded:
    run: Run
    job: Job
    company: Company
    kind: JobKindHandler[Any]
    ctx: RunContext[Any]


# The jobs of the runs this process loaded last (a job's kind and request never change once
# submitted): the hooks after a run's end skip what its job never asks for without a read.
_JOBS: dict[int, hooks.EndedJob] = {}
_JOBS_KEPT = 64


def _ended(run_id: int) -> hooks.EndedJob | None:
    return _JOBS.pop(run_id, None)


def _load(
    runtime: Runtime, session: Session, run_id: int, *, lock_job: bool = False
) -> _Loaded | None:
    return _loaded(runtime, run_id, load_run(session, run_id, lock_job=lock_job))


def _loaded(runtime: Runtime, run_id: int, row: tuple[Run, Job, Company] | None) -> _Loaded | None:
    """A run read with its job and company (one query, no ORM loading), and its kind."""
    if row is None:
        return None
    run, job, company = row
    if len(_JOBS) >= _JOBS_KEPT:  # the item tasks of large runs: forget them all, no order
        _JOBS.clear()  # to keep (and safe with threads); a hook without its job reads it
    _JOBS[run_id] = hooks.EndedJob(job.kind, job.payload)
    kind = kind_for(job.kind)
    ids, names = (run.id, job.id, company.id), (company.handle, run.run_name)
    ctx = kind.context(runtime, ids, names, job.payload)
    return _Loaded(run, job, company, kind, ctx)


_ENDED_HERE = ("done", "stopped", "failed")


def start(run_id: int, worker: str) -> str:
    """Claim a queued run, plan its items and send them (or, for a small run, do them and its
    finish here); returns what happened: ``done``, ``stopped`` or ``failed`` when the run
    ended in this task (then the hooks' ``after_end`` ran too)."""
    result = _start(run_id, worker)
    if result in _ENDED_HERE:  # ended here (or before any item ran)
        hooks.after_end(run_id, job=_ended(run_id))
    return result


def _start(run_id: int, worker: str) -> str:
    runtime = get_runtime()
    lease = runtime.settings.lease_seconds
    claimed = _claim_start(runtime, run_id, worker)
    if isinstance(claimed, str):
        return claimed
    loaded, existing = claimed
    try:
        with Heartbeat(runtime, lambda: extend_run_lease(run_id, worker, lease), lease):
            items = _plan(runtime, loaded, existing)
    except Unavailable:
        raise  # not the job's fault: the task tries again once the store answers
    except Exception as exc:
        logger.exception("planning run %s failed", run_id)
        _fail(runtime, run_id, "the job could not start: {error}", error=exc)
        return "failed"
    if len(items) <= runtime.settings.inline_items:
        return _run_inline(runtime, loaded, worker, items)
    return _fan_out(runtime, loaded, worker, items)


def _fan_out(runtime: Runtime, loaded: _Loaded, worker: str, items: Sequence[RunItem]) -> str:
    """Send the pending items as messages of their own; the last one sends the finish."""
    run_id = loaded.run.id
    tags = labels(loaded.run, loaded.job, loaded.company)
    pending = [(i.seq, i.key) for i in items if i.state == ItemState.PENDING]
    try:
        dispatch.send_items(loaded.kind.slug, run_id, loaded.run.task_id, pending, tags)
    except dispatch.BrokerUnavailable:
        _release_start(runtime, run_id, worker)
        return "broker down"
    with runtime.store.write() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.planned, run.lease_until = True, None
        session.flush()
        all_done = mark_finish_sent(session, run_id)
    if all_done:
        _send_finish(loaded)
    return "started"


def _run_inline(runtime: Runtime, loaded: _Loaded, worker: str, items: Sequence[RunItem]) -> str:
    """Do a small run's items and its finish right here, in its start task: one message for the
    whole job instead of one per step, the same guards. The start's lease is kept alive while
    it works, so a worker killed here has its start sent again (which takes the items that are
    left); the run is marked planned, with its finish claimed, only once every item is done
    (in the transaction that counts the last one)."""
    run_id, lease = loaded.run.id, runtime.settings.lease_seconds
    claimed = False
    reads: tuple[bool, list[dict[str, Any]]] | None = None
    if len(items) == 1 and _held(items[0], worker):  # one item, claimed when planned
        with Heartbeat(runtime, lambda: extend_run_lease(run_id, worker, lease), lease):
            return _one_shot(runtime, loaded, items[0], worker)
    with Heartbeat(runtime, lambda: extend_run_lease(run_id, worker, lease), lease):
        for n, item in enumerate(items):
            last = n == len(items) - 1
            if _held(item, worker):  # claimed when planned
                step = _work_item(
                    runtime,
                    loaded,
                    (item.seq, item.key),
                    worker,
                    send_finish=False,
                    finish_here=last,
                )
            else:
                step = run_item(run_id, item.seq, worker, send_finish=False, finish_here=last)
            if step.status in ("paused", "busy"):  # the rest goes on as a fanned-out run would
                return _fan_out(runtime, loaded, worker, items[n:])
            claimed, reads = step.finish_claimed, step.finish_reads
    if not claimed:  # no item counted last here (stopped, or done by another delivery)
        with runtime.store.write() as session:
            lock_job_of_run(session, run_id)
            claimed = claim_inline_finish(session, run_id, worker, lease)
            reads = finish_reads(session, run_id) if claimed else None
    if not claimed or reads is None:
        return "started"  # another delivery finishes it
    return _finish_claimed(runtime, loaded, worker, reads)


def _held(item: RunItem, worker: str) -> bool:
    """Whether ``worker`` claimed the item (when it planned the run, to do it inline)."""
    return item.state == ItemState.RUNNING and item.claimed_by == worker


def _one_shot(runtime: Runtime, loaded: _Loaded, item: RunItem, worker: str) -> str:
    """A run of one item ``worker`` claimed when it planned it: the item, the output, then one
    transaction that counts the item, claims the finish and ends the run (instead of one for
    the item and one for the end). The usual way instead (the item counted, then the finish)
    when the item was stopped or failed, the run was stopped meanwhile, or the output failed.

    Run once as before: killed before that commit, nothing of the item or the end is recorded,
    and the re-sent start (its lease lapsed) takes the item over and writes the same output
    again (an atomic replacement of the run's own ZIP); the end is a compare-and-set."""
    run_id, lease = loaded.run.id, runtime.settings.lease_seconds
    seq, key = item.seq, item.key
    with Heartbeat(runtime, lambda: extend_item_lease(run_id, seq, worker, lease), lease):
        outcome = _process(loaded, key, finish_follows=True)
    item_rows = tuple(loaded.ctx.take_log_rows())  # the item's, written before its outcome's
    done = _Done(worker, outcome, send_finish=False, finish_here=True, rows=item_rows)
    usual = outcome is None or outcome.status == "error"
    if not usual:
        usual = loaded.ctx.stop_requested()  # asked for while the item worked
    if not usual and outcome is not None:
        loaded.ctx.known_done_items([dict(outcome.result)])
        try:
            output = hooks.before_end(loaded.ctx, loaded.kind.finish(loaded.ctx, False))
        except Unavailable:
            raise  # the task starts again once the store answers: the item is still ours
        except Exception:  # counted first, then the usual finish fails the run with the error
            logger.warning("run %s: its output failed; finishing the usual way", run_id)
            loaded.ctx.take_log_rows()
        else:
            return _end_one_shot(runtime, loaded, (seq, key), done, output)
    step = _complete(runtime, loaded, (seq, key), done)
    if not step.finish_claimed or step.finish_reads is None:
        return "started"
    return _finish_claimed(runtime, loaded, worker, step.finish_reads)


def _end_one_shot(
    runtime: Runtime, loaded: _Loaded, item: tuple[int, str], done: _Done, output: dict[str, Any]
) -> str:
    """The one transaction of a one-shot run after its output: count the item, then claim the
    finish and end the run in one compare-and-set (sent together, with the transaction's BEGIN:
    :meth:`~jobengine.store.db.Store.write_pipelined`), then its trigger and its rows (sent
    together)."""
    seq, worker = item[0], done.worker
    outcome = done.outcome
    assert outcome is not None
    counts, final = _tally(outcome)
    rows = [row.entry() for row in done.rows]  # the item's, then its outcome's
    rows.append(LogRow(outcome.log_type, outcome.message_id, outcome.asset, outcome.args).entry())
    finish_rows = [row.entry() for row in loaded.ctx.take_log_rows()]
    try:
        with runtime.store.write_pipelined() as session:  # its BEGIN goes with the first batch
            end = end_one_shot(session, loaded.run, seq, worker, final=final, counts=counts,
                               result=outcome.result, output=output)  # fmt: skip
            if not end.counted:  # our lease lapsed and another worker took the item over
                raise _RolledBack("duplicate")  # with what was sent with the item's move
            if end.ended is None:  # the start was taken over: its new holder finishes the run
                write_logs(session, loaded.run, rows)
                return "started"
            summary = _summary(loaded, RunState.DONE, end.ended)
            log_end(session, loaded.run, [*rows, *finish_rows, summary])
    except _RolledBack as undone:
        return undone.result
    _cleanup(loaded)
    return "done"


def _claim_start(
    runtime: Runtime, run_id: int, worker: str
) -> tuple[_Loaded, Sequence[RunItem]] | str:
    """Claim the start; the run and the items an earlier start planned, or what happened.

    Its transaction's first statements are the run's read and its claim, sent together with
    its BEGIN (:meth:`~jobengine.store.db.Store.write_pipelined`); a start that must not go on
    rolls them back (:class:`_RolledBack`)."""
    lease = runtime.settings.lease_seconds
    try:
        with runtime.store.write_pipelined() as session:  # its BEGIN goes with the first batch
            # the run read (its job's row locked first, as everywhere) and claimed together
            row, claimed = claim_loaded_start(session, run_id, worker, lease)
            loaded = _loaded(runtime, run_id, row)
            if loaded is None:
                return "duplicate"
            if loaded.run.paused and loaded.run.state == RunState.QUEUED:
                raise _RolledBack("paused")  # resumeJob sends it again
            if not claimed:
                return "duplicate"
            first = loaded.run.state == RunState.QUEUED  # not a start taken over or back
            job = loaded.job
            if loaded.run.stop_requested and not loaded.run.planned:
                write_log(session, loaded.run, "FileCancel", "job stopped before it started")
                end_run(session, loaded.run, RunState.STOPPED)
                return "stopped"
            if job.exec_schedule is None and job.trigger_state == "Normal":
                job.trigger_state, job.next_fire_at = "Complete", None
            session.flush()  # the ORM's change first: what follows is sent together
            existing = _begin_and_plan(runtime, session, loaded, worker, first)
    except _RolledBack as undone:
        return undone.result
    return loaded, existing


def _begin_and_plan(
    runtime: Runtime, session: Session, loaded: _Loaded, worker: str, first: bool
) -> Sequence[RunItem]:
    """The writes of a claimed start (its begin rows; its items, when its kind plans from the
    request alone) and the reads of the items it does right away; the items recorded."""
    run, kind = loaded.run, loaded.kind
    # A first start finds no items (they are recorded only once a start is claimed).
    existing: Sequence[RunItem] = [] if first else run_items(session, run.id)
    planned = kind.plan(loaded.ctx) if not existing and kind.plans_from_request else None
    inline = planned is not None and len(planned) <= runtime.settings.inline_items
    keep_assets = None
    with pipelined(session.connection()):  # on PostgreSQL one round trip for all of them
        if inline:  # its items end in a durable commit before anything rests on the claim
            commit_without_flush(session.connection())
        if first:
            write_log(session, run, kind.begin_log, "job {job} started", job=loaded.job.name)
            _write_job_records(session, run, loaded.job)
        if planned is not None:  # no I/O: planned right here
            holder = worker if inline else None
            existing = _record_items(session, loaded, planned, holder, runtime.settings)
            if inline and kind.items_are_assets:  # read now, not in a transaction each
                keep_assets = loaded.ctx.read_assets(session, [p.key for p in planned])
    if keep_assets is not None:
        keep_assets()  # their rows came back with the block's closing round trip
    return existing


class _RolledBack(Exception):
    """A step found, after statements sent together had run, that it must not go on: its
    transaction is rolled back, and the step returns ``result``."""

    def __init__(self, result: str) -> None:
        super().__init__(result)
        self.result = result


def _write_job_records(session: Session, run: Run, job: Job) -> None:
    """The job metadata rows IPS writes after the begin row: the name as submitted, and the
    submitting application when it is known (SOAP authHeader appName / appVersion)."""
    write_record(session, run, JobLogType.ORIGINAL_JOB_NAME, job.name)
    if job.client:
        write_record(session, run, JobLogType.JOB_CLIENT, job.client)


def _record_items(
    session: Session,
    loaded: _Loaded,
    planned: Sequence[PlannedItem],
    holder: str | None,
    settings: Settings,
) -> list[RunItem]:
    """Add a run's planned items (claimed already by ``holder``, who does them inline) and the
    log rows their planning asked for."""
    _write_rows(session, loaded)
    keys = [p.key for p in planned]
    return add_items(
        session,
        loaded.run.id,
        keys,
        holder=holder,
        lease=settings.lease_seconds,
        message=progress_message(0, len(keys)),
    )


def _write_rows(session: Session, loaded: _Loaded) -> None:
    """Write the log rows the kind asked for in the step ending in ``session``'s transaction."""
    for row in loaded.ctx.take_log_rows():
        row.write(session, loaded.run)  # its id and company: read when the step began


def _release_start(runtime: Runtime, run_id: int, worker: str) -> None:
    """Give up a planned start whose items could not be sent: its lease lapses now, and the
    scheduler sends the start again (which re-sends the same items) once the broker is back."""
    logger.warning("run %s: its items could not be sent; the scheduler will start it again", run_id)
    with runtime.store.write() as session:
        session.execute(extend_run_lease(run_id, worker, 0))  # lapsed as of now


def _plan(runtime: Runtime, loaded: _Loaded, existing: Sequence[RunItem]) -> list[RunItem]:
    if existing:  # an earlier start died after planning: reuse its items, never re-plan
        return list(existing)
    planned = loaded.kind.plan(loaded.ctx)
    with runtime.store.write() as session:
        return _record_items(session, loaded, planned, None, runtime.settings)


@dataclass(frozen=True)
class ItemStep:
    """What an item task did: its outcome, or why it did nothing, or when to try again."""

    status: Literal["done", "duplicate", "cancelled", "busy", "paused"]
    retry_at: datetime | None = None
    progress: int = 0
    finished: int = 0
    total: int = 0
    finish_claimed: bool = False  # the run's finish is this worker's now (an inline run)
    # read with that claim: whether the run was stopped, and its done items' results
    finish_reads: tuple[bool, list[dict[str, Any]]] | None = None


@dataclass(frozen=True)
class _Done:
    """An item's outcome, for the transaction that counts it (and what else that does)."""

    worker: str
    outcome: ItemOutcome | None  # None: the run was stopped while the item worked
    send_finish: bool = True  # send the finish if this was the last item
    finish_here: bool = False  # else claim it here, for the worker doing the run inline
    rows: tuple[LogRow, ...] = ()  # log rows the item asked for, taken from its context


def run_item(
    run_id: int, seq: int, worker: str, *, send_finish: bool = True, finish_here: bool = False
) -> ItemStep:
    """Do item ``seq`` of a run once; counts it and sends the finish after the last item
    (unless ``send_finish`` is false: a run done inline finishes in its start task, and with
    ``finish_here`` the last item's transaction claims that finish too)."""
    runtime = get_runtime()
    with runtime.store.write() as session:
        loaded = _load(runtime, session, run_id)
        if loaded is None:
            return ItemStep("duplicate")
        if loaded.run.stop_requested:
            lock_job_of_run(session, run_id)  # before the run's rows: see _complete
            cancelled = _cancel(session, loaded, [seq])
            step, send = cancelled[0] if cancelled else (ItemStep("duplicate"), False)
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
        if send and send_finish:
            _send_finish(loaded)
        return step
    return _work_item(
        runtime, loaded, (seq, key), worker, send_finish=send_finish, finish_here=finish_here
    )


def _work_item(
    runtime: Runtime,
    loaded: _Loaded,
    item: tuple[int, str],
    worker: str,
    *,
    send_finish: bool,
    finish_here: bool,
) -> ItemStep:
    """Do an item ``worker`` has claimed, keeping its lease alive, and count it."""
    (seq, key), run_id, lease = item, loaded.run.id, runtime.settings.lease_seconds
    with Heartbeat(runtime, lambda: extend_item_lease(run_id, seq, worker, lease), lease):
        outcome = _process(loaded, key)
    done = _Done(worker, outcome, send_finish, finish_here)
    return _complete(runtime, loaded, (seq, key), done)


def _process(loaded: _Loaded, key: str, *, finish_follows: bool = False) -> ItemOutcome | None:
    """What doing the item came to; None when the run was stopped while it worked."""
    try:
        return loaded.kind.process(loaded.ctx, PlannedItem(key=key, finish_follows=finish_follows))
    except Unavailable:
        raise  # an outage is no outcome of the file: the task does the item again later
    except RunStopped:
        logger.info("item %s of run %s ended early: the run was stopped", key, loaded.run.id)
        return None
    except Exception as exc:  # one bad file fails its own item, never the job or the worker
        logger.exception("item %s of run %s failed", key, loaded.run.id)
        error = log_reason(exc)  # the details are in the worker log, not the job log
        return ItemOutcome(
            "error",
            "FatalError",
            "cannot process {item}: {error}",
            AssetRef(handle=key),
            args={"item": key, "error": error},
        )


def _tally(outcome: ItemOutcome | None) -> tuple[Counts, ItemState]:
    """What an outcome adds to the run's counters, and the item's final state (None: stopped
    while it worked, cancelled as a pending item would be: nothing counted)."""
    if outcome is None:
        return Counts(), ItemState.CANCELLED
    counts = Counts(
        success=int(outcome.status == "success"),
        error=int(outcome.status == "error"),
        warning=int(outcome.status == "warning"),
        size=outcome.size,
        duplicate=int(outcome.tally == "duplicate"),
        update=int(outcome.tally == "update"),
    )
    return counts, ItemState.FAILED if outcome.status == "error" else ItemState.DONE


def _complete(runtime: Runtime, loaded: _Loaded, item: tuple[int, str], done: _Done) -> ItemStep:
    with runtime.store.write() as session:
        # The job row first, as everywhere: updating the run row twice in one transaction makes
        # PostgreSQL re-check the run's foreign key to its job (FOR KEY SHARE), which would wait
        # on a control operation holding the job while it waits on this run: a deadlock.
        lock_job_of_run(session, loaded.run.id)
        step, send, _ = _count_done(session, loaded, item, done)
    if send:
        _send_finish(loaded)
    return step


def _count_done(
    session: Session, loaded: _Loaded, item: tuple[int, str], done: _Done
) -> tuple[ItemStep, bool, Counted | None]:
    """Count a worked item in ``session``'s transaction (its job row locked first): its final
    state, the run's counters, its log rows, and, for the last item, the finish's claim or
    its sending; the item's step, whether the caller sends the finish after the commit, and
    the run's counts and flags as counting it found them (None: not ours to count)."""
    seq, key = item
    outcome, worker = done.outcome, done.worker
    counts, final = _tally(outcome)
    result_data = outcome.result if outcome is not None else None
    result = complete_item(
        session, loaded.run.id, seq, worker, final=final, counts=counts, result=result_data
    )
    if result is None:  # our lease lapsed and another worker took the item over
        loaded.ctx.take_log_rows()  # its work is the new holder's, rows included
        return ItemStep("duplicate"), False, None
    for row in done.rows:
        row.write(session, loaded.run)
    _write_rows(session, loaded)
    _log_outcome(session, loaded, key, outcome)
    last = result.finished >= result.total
    lease = loaded.ctx.runtime.settings.lease_seconds
    inline = done.finish_here and last
    claimed = inline and claim_inline_finish(session, loaded.run.id, worker, lease)
    reads = finish_reads(session, loaded.run.id) if claimed else None
    send = done.send_finish and last and mark_finish_sent(session, loaded.run.id)
    finished, total = result.finished, result.total
    progress = finished * 100 // max(total, 1)
    status: Literal["done", "cancelled"] = "cancelled" if outcome is None else "done"
    step = ItemStep(
        status, None, progress, finished, total, finish_claimed=claimed, finish_reads=reads
    )
    return step, send, result


@dataclass(frozen=True)
class ChunkStep:
    """What a task doing a chunk of a run's items did: the last item's status, the items
    another delivery holds (with when their leases lapse), and the items not begun because
    the chunk ran out of time."""

    status: Literal["done", "duplicate", "cancelled", "paused"]
    busy: tuple[tuple[int, datetime], ...] = ()
    left: tuple[int, ...] = ()


# A chunk counts the items it has done at its end, and meanwhile once this many seconds have
# passed since its last count (long items: progress shows, and a worker killed mid-chunk
# leaves little work to do again).
COUNT_EVERY = 0.25


def run_chunk(
    run_id: int,
    seqs: Sequence[int],
    worker: str,
    *,
    on_item: Callable[[ItemStep], None],
    until: float = math.inf,
) -> ChunkStep:
    """Do the items ``seqs`` of a fanned-out run, in order, each once (a chunk of its items
    sent as one message); ``on_item`` is told each item's step after the commit counting it.

    The same guards as :func:`run_item`, in two write transactions for a chunk of small items
    instead of one an item: the first loads the run and claims every item of the chunk it
    can (each under its own claim and lease, as :func:`run_item` claims one), the second
    counts the items done, with their log rows (and, after the run's last item, marks the
    finish sent). Items that take longer are counted every :data:`COUNT_EVERY` seconds too.
    One heartbeat keeps the leases of every item the chunk holds, begun or not.

    Before each item but the first, the run's stop and pause flags are read (one statement,
    no write transaction; a count reads them too): stopped, the items not begun are
    cancelled; paused, they are given back, pending again (resumeJob sends them); past
    ``until`` (monotonic) they are given back and returned (``left``) for a message of
    their own. Each of these is decided in the transaction that counts the items done, which
    reads the flags again under the job's lock. Items another delivery holds are skipped and
    returned (``busy``).

    Killed or interrupted before an item is counted, the item is done again once its claim
    lapses (the scheduler sends the items of lapsed claims again), as an item killed before
    its own commit: so are a killed chunk's items, begun or not. None is counted or logged
    twice: counting an item is a compare-and-set on the claim of the worker that did it."""
    runtime = get_runtime()
    lease = runtime.settings.lease_seconds
    try:  # the run read and the items claimed together, with the BEGIN
        with runtime.store.write_pipelined() as session:
            row, held, others = claim_loaded_items(session, run_id, seqs, worker, lease)
            loaded = _loaded(runtime, run_id, row)
            if loaded is None:
                return ChunkStep("duplicate")
            if loaded.run.stop_requested or loaded.run.paused:
                raise _RolledBack("halted")  # its claims undone: the way below decides
            claimed = _Claimed(held=tuple(held), busy=_busy(others))
    except _RolledBack:
        with runtime.store.write() as session:
            loaded = _load(runtime, session, run_id)
            if loaded is None:
                return ChunkStep("duplicate")
            claimed = _claim_chunk(session, loaded, seqs, worker, lease)
    chunk = _Chunk(loaded, worker, on_item)
    chunk.told(claimed.cancelled)
    if claimed.paused:
        return ChunkStep("paused")
    busy = list(claimed.busy)
    if claimed.held:
        with Heartbeat(runtime, lambda: extend_held_leases(run_id, worker, lease), lease) as beat:
            chunk.work(list(claimed.held), beat, until, busy)
    return ChunkStep(chunk.status, tuple(busy), chunk.left)


@dataclass(frozen=True)
class _Claimed:
    """What the transaction beginning a chunk did: the items it claimed (``(seq, key)``, in
    order), those another delivery holds (until when), or, the run being stopped, the steps
    of the items it cancelled (and whether the caller sends the finish), or that the run is
    paused."""

    held: tuple[tuple[int, str], ...] = ()
    busy: tuple[tuple[int, datetime], ...] = ()
    cancelled: tuple[tuple[ItemStep, bool], ...] = ()
    paused: bool = False


def _claim_chunk(
    session: Session, loaded: _Loaded, seqs: Sequence[int], worker: str, lease: float
) -> _Claimed:
    """Claim a chunk's items in the transaction that loaded its run, as :func:`run_item`
    claims one: cancel them if the run was stopped, none if it is paused. (A chunk's first try,
    :func:`claim_loaded_items`, claims them with the run's read; this is the way when that
    found the run stopped or paused.)"""
    run = loaded.run
    if run.stop_requested:
        lock_job_of_run(session, run.id)  # before the run's rows: see _complete
        return _Claimed(cancelled=tuple(_cancel(session, loaded, seqs)))
    if run.paused:
        return _Claimed(paused=True)
    held, others = claim_items(session, run.id, seqs, worker, lease)
    if held:  # counting them is a durable commit before anything rests on these claims
        commit_without_flush(session.connection())
    return _Claimed(held=tuple(held), busy=_busy(others))


def _busy(others: Sequence[ItemClaim]) -> tuple[tuple[int, datetime], ...]:
    """The items another delivery holds, and until when, of those not claimed."""
    return tuple(
        (claim.item.seq, claim.busy_until)
        for claim in others
        if claim.status == "busy" and claim.item is not None and claim.busy_until is not None
    )


class _Chunk:
    """A chunk's claimed items at work: those done and not counted yet, and what the counts
    found (the last status, the run's flags, the items given back for lack of time)."""

    def __init__(self, loaded: _Loaded, worker: str, on_item: Callable[[ItemStep], None]) -> None:
        self.loaded, self.worker, self.on_item = loaded, worker, on_item
        self.done: list[tuple[tuple[int, str], _Done]] = []
        self.status: Literal["done", "duplicate", "cancelled", "paused"] = "duplicate"
        self.left: tuple[int, ...] = ()
        # the run's stop and pause flags as a count just found them; None: read them
        self.flags: tuple[bool, bool] | None = None
        self.counted_at = time.monotonic()
        self.reclaimed_at = -math.inf

    def told(self, steps: Sequence[tuple[ItemStep, bool]]) -> None:
        """After a commit that counted items: the finish sent if it falls to us, and each
        step told (the last one's status is the chunk's)."""
        status = _counted(self.loaded, steps, self.on_item)
        if status is not None:
            self.status = status

    def work(
        self,
        held: list[tuple[int, str]],
        beat: Heartbeat,
        until: float,
        busy: list[tuple[int, datetime]],
    ) -> None:
        """Do the ``held`` items in order, counting them as :func:`run_chunk` says; items
        found taken over by another delivery go to ``busy``."""
        lease = self.loaded.ctx.runtime.settings.lease_seconds
        begun = 0
        while held:
            if begun:  # the first item's flags were read with its claim
                late = time.monotonic() > until
                if (late or self._halted()) and self._commit(held, late=late):
                    return
                if time.monotonic() - max(beat.renewed, self.reclaimed_at) > lease / 2:
                    held = self._reclaim(held, busy)  # its heartbeats failed a while
                    continue
            seq, key = held.pop(0)
            outcome = _process(self.loaded, key)
            rows = tuple(self.loaded.ctx.take_log_rows())  # the item's, before its outcome's
            self.done.append(((seq, key), _Done(self.worker, outcome, rows=rows)))
            begun += 1
            if held and time.monotonic() - self.counted_at >= COUNT_EVERY:
                self._commit([], late=False)
        self._commit([], late=False)

    def _halted(self) -> bool:
        """Whether the run was stopped or paused (as the last count found, else as read now)."""
        flags, self.flags = self.flags, None
        if flags is None:
            with self.loaded.ctx.runtime.store.read_now() as conn:
                flags = run_flags(conn, self.loaded.run.id)
        return flags is None or any(flags)

    def _reclaim(
        self, held: list[tuple[int, str]], busy: list[tuple[int, datetime]]
    ) -> list[tuple[int, str]]:
        """Claim the items not begun again (their heartbeats failed long enough for their
        leases to be near their end): those another delivery took over meanwhile are its."""
        runtime, run_id = self.loaded.ctx.runtime, self.loaded.run.id
        seqs = [seq for seq, _ in held]
        with runtime.store.write() as session:
            ours, others = claim_items(
                session, run_id, seqs, self.worker, runtime.settings.lease_seconds
            )
        self.reclaimed_at = time.monotonic()
        busy += _busy(others)
        return ours

    def _commit(self, held: list[tuple[int, str]], *, late: bool) -> bool:
        """One write transaction: count the items done, and with items not begun (``held``)
        given, cancel them if the run was stopped, or give them back if it is paused or the
        chunk ``late``; whether it did the one or the other (the chunk ends)."""
        done, self.done = self.done, []
        try:
            return self._count(done, held, late=late, together=True)
        except _NotAllOurs:  # rolled back: an item was taken over; each one by itself now
            return self._count(done, held, late=late, together=False)

    def _count(
        self,
        done: list[tuple[tuple[int, str], _Done]],
        held: list[tuple[int, str]],
        *,
        late: bool,
        together: bool,
    ) -> bool:
        """:meth:`_commit`'s transaction, the items done ended in one statement
        (``together``: _NotAllOurs, rolling it back, if one of them is no longer ours) or
        one statement each."""
        loaded, worker = self.loaded, self.worker
        run_id = loaded.run.id
        with loaded.ctx.runtime.store.write() as session:
            lock_job_of_run(session, run_id)  # before the run's rows: see _complete
            flags = run_flags(session.connection(), run_id) if held else None
            stop, paused = flags or (False, False)
            ended = bool(held) and (flags is None or stop or paused or late)
            tally = _Tally()
            if together:
                tally.end_all(session, loaded, done)
            else:
                for (seq, key), item in done:
                    tally.end(session, loaded, (seq, key), item)
            if ended and stop:
                for seq, key in held:
                    tally.cancel(session, loaded, (seq, key), worker)
            elif ended:
                release_items(session, run_id, [seq for seq, _ in held], worker)
            steps, counted = tally.count(session, loaded)
        self.counted_at = time.monotonic()
        self.flags = (counted.stop_requested, counted.paused) if counted else flags
        self.told(steps)
        if ended and not stop:
            if paused:
                self.status = "paused"
            elif late:
                self.left = tuple(seq for seq, _ in held)
        return ended


class _NotAllOurs(Exception):
    """Items a chunk did were not all its own to end any more (one was taken over)."""


class _Tally:
    """The items one transaction counts: their counters, statuses and log rows, in order."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.statuses: list[Literal["done", "cancelled"]] = []
        self.rows: list[LogEntry] = []

    def end_all(
        self, session: Session, loaded: _Loaded, done: list[tuple[tuple[int, str], _Done]]
    ) -> None:
        """Items done, their final states in one statement (on PostgreSQL one round trip);
        :class:`_NotAllOurs` when one of them was not ours any more."""
        ends = []
        for (seq, key), item in done:
            counts, final = _tally(item.outcome)
            result = item.outcome.result if item.outcome is not None else None
            ends.append((seq, final, result))
            self.counts += counts
            self.statuses.append("cancelled" if item.outcome is None else "done")
            self.rows += [row.entry() for row in item.rows]
            self.rows.append(_outcome_entry(key, item.outcome))
        if ends and not end_items(session, loaded.run.id, done[0][1].worker, ends):
            raise _NotAllOurs

    def end(self, session: Session, loaded: _Loaded, item: tuple[int, str], done: _Done) -> None:
        """An item done: its final state, if its claim is still ours (else another worker
        took it over, and counts it)."""
        (seq, key), outcome = item, done.outcome
        counts, final = _tally(outcome)
        result = outcome.result if outcome is not None else None
        if not end_item(session, loaded.run.id, seq, done.worker, final=final, result=result):
            return
        self.counts += counts
        self.statuses.append("cancelled" if outcome is None else "done")
        self.rows += [row.entry() for row in done.rows]
        self.rows.append(_outcome_entry(key, outcome))

    def cancel(self, session: Session, loaded: _Loaded, item: tuple[int, str], worker: str) -> None:
        """An item ``worker`` holds and has not begun, of a run that was stopped."""
        seq, key = item
        if cancel_held_item(session, loaded.run.id, seq, worker):
            self.statuses.append("cancelled")
            self.rows.append(_cancelled_entry(key))

    def count(
        self, session: Session, loaded: _Loaded
    ) -> tuple[list[tuple[ItemStep, bool]], Counted | None]:
        """Count the items in the run, write their rows, and mark the finish sent after the
        run's last item: each item's step (as if counted one by one; the last one's says
        whether the caller sends the finish), and the run's counts after them."""
        n = len(self.statuses)
        if not n:
            return [], None
        run_id = loaded.run.id
        counted = count_finished(session, run_id, self.counts, n)
        write_logs(session, loaded.run, self.rows)
        send = counted.finished >= counted.total and mark_finish_sent(session, run_id)
        total, steps = counted.total, []
        for k, status in enumerate(self.statuses, start=counted.finished - n + 1):
            step = ItemStep(status, None, k * 100 // max(total, 1), k, total)
            steps.append((step, send and k == counted.finished))
        return steps, counted


def _counted(
    loaded: _Loaded,
    counted: Sequence[tuple[ItemStep, bool]],
    on_item: Callable[[ItemStep], None],
) -> Literal["done", "cancelled"] | None:
    """After the commit that counted items: their finish sent if it falls to us, each told to
    ``on_item``; the last one's status (None when none was counted)."""
    status: Literal["done", "cancelled"] | None = None
    for step, send in counted:
        if send:
            _send_finish(loaded)
        if step.status in ("done", "cancelled"):
            status = "done" if step.status == "done" else "cancelled"
            on_item(step)
    return status


def _cancelled_entry(key: str) -> LogEntry:
    """The job log row of an item the stop ended (before it began, or while it worked)."""
    return LogEntry("FileCancel", "{item} cancelled: job stopped", {"item": key})


def _outcome_entry(key: str, outcome: ItemOutcome | None) -> LogEntry:
    """The item's job log row: its outcome, or that the stop ended it while it worked."""
    if outcome is None:
        return _cancelled_entry(key)
    return LogRow(outcome.log_type, outcome.message_id, outcome.asset, outcome.args).entry()


def _log_outcome(session: Session, loaded: _Loaded, key: str, outcome: ItemOutcome | None) -> None:
    """The item's job log row: its outcome, or that the stop ended it while it worked."""
    write_logs(session, loaded.run, [_outcome_entry(key, outcome)])


def _cancel(session: Session, loaded: _Loaded, seqs: Sequence[int]) -> list[tuple[ItemStep, bool]]:
    """Cancel the items ``seqs`` of a stopped run that nobody is doing (pending, or held under
    a claim that lapsed), count them and log each: their steps, the last one's saying whether
    the caller sends the finish (none when no item was cancelled)."""
    tally = _Tally()
    for seq in seqs:
        key = cancel_item(session, loaded.run.id, seq)
        if key is not None:
            tally.statuses.append("cancelled")
            tally.rows.append(_cancelled_entry(key))
    return tally.count(session, loaded)[0]


def _send_finish(loaded: _Loaded) -> None:
    """Send the finishing step (its sending is recorded already: ``finish_sent_at``)."""
    tags = labels(loaded.run, loaded.job, loaded.company)
    try:
        dispatch.send_finish(loaded.kind.slug, loaded.run.id, loaded.run.task_id, tags)
    except dispatch.BrokerUnavailable:  # the scheduler re-sends a finish sent long ago
        logger.warning("run %s: the finish could not be sent; the scheduler will", loaded.run.id)


def finish(run_id: int, worker: str) -> str:
    """Join a run whose items are all finished: write its output and final job log, once;
    then the hooks' ``after_end``, also on a duplicate: a redelivered finish sends what a
    worker that died after the end missed (each hook sends at most once)."""
    result = _finish(run_id, worker)
    hooks.after_end(run_id, job=_ended(run_id))
    return result


def _finish(run_id: int, worker: str) -> str:
    runtime = get_runtime()
    lease = runtime.settings.lease_seconds
    with runtime.store.write() as session:
        loaded = _load(runtime, session, run_id)
        if loaded is None:
            return "duplicate"
        claimed = claim_finish(session, run_id, worker, lease)
        ended = loaded.run.state in FINAL_RUNS
        reads = finish_reads(session, run_id) if claimed else None
    if not claimed or reads is None:
        if ended:  # a finish killed after its commit: what it left staged goes now
            _cleanup(loaded)
        return "duplicate"
    return _finish_claimed(runtime, loaded, worker, reads)


def _finish_claimed(
    runtime: Runtime, loaded: _Loaded, worker: str, reads: tuple[bool, list[dict[str, Any]]]
) -> str:
    """The finish of a run whose finish ``worker`` has claimed: output, end, clean-up.
    ``reads`` is what the claiming transaction read: the stop flag and the done items."""
    run_id, lease = loaded.run.id, runtime.settings.lease_seconds
    stopped, done = reads
    loaded.ctx.known_done_items(done)
    try:
        with Heartbeat(runtime, lambda: extend_run_lease(run_id, worker, lease), lease):
            finished = loaded.kind.finish(loaded.ctx, stopped)
            output = hooks.before_end(loaded.ctx, finished)  # the follow-on job
    except Unavailable:
        raise  # the task finishes again once the store answers; the inputs are still staged
    except Exception as exc:
        logger.exception("finishing run %s failed", run_id)
        ended = _fail(runtime, run_id, "the job could not finish: {error}", error=exc)
        if ended:
            _cleanup(loaded)
        return "failed" if ended else "duplicate"
    state = RunState.STOPPED if stopped else RunState.DONE
    with runtime.store.write() as session:
        lock_job_of_run(session, run_id)
        if not _end(session, loaded, state, output, loaded.ctx.take_log_rows()):
            return "duplicate"  # another finish (a re-sent one) committed the end first
    _cleanup(loaded)
    return state.lower()


def _end(
    session: Session,
    loaded: _Loaded,
    state: RunState,
    output: dict[str, Any],
    rows: Sequence[LogRow],
) -> bool:
    """End the run (compare-and-set) with its output, the rows its finish asked for and its
    summary row; False, writing nothing, if another finish ended it first."""
    run = get_run(session, loaded.run.id)
    assert run is not None
    if not end_run(session, run, state, output=output):
        return False
    for row in rows:
        row.write(session, run)
    counts = (run.success_count, run.error_count, run.warning_count, run.total_items)
    write_logs(session, run, [_summary(loaded, state, counts)])
    return True


def _summary(loaded: _Loaded, state: RunState, counts: tuple[int, int, int, int]) -> LogEntry:
    """The run's last log row: how its files went."""
    summary: LogMessage = (
        "job stopped: {success} succeeded, {errors} failed, {warnings} warnings of {total} file(s)"
        if state == RunState.STOPPED
        else "job done: {success} succeeded, {errors} failed, "
        "{warnings} warnings of {total} file(s)"
    )
    success, errors, warnings, total = counts
    args = {"success": success, "errors": errors, "warnings": warnings, "total": total}
    return LogEntry(loaded.kind.end_log, summary, args)


def _cleanup(loaded: _Loaded) -> None:
    """Remove what the run staged (after its end is committed; the janitor sweeps leftovers)."""
    try:
        loaded.kind.cleanup(loaded.ctx)
    except Exception:
        logger.warning("run %s: could not remove its staged files", loaded.run.id, exc_info=True)


def _describe(error: Exception) -> str:
    """An error as a job log shows it: a fault's reason, else the cause in words, never a
    storage key, path or exception class (the worker log has those)."""
    return log_reason(error)


def _fail(runtime: Runtime, run_id: int, message_id: LogMessage, error: Exception) -> bool:
    """End an active run as Failed, with the error in its log; False if it had ended already."""
    with runtime.store.write() as session:
        lock_job_of_run(session, run_id)
        run = session.get(Run, run_id)
        if run is None or not end_run(session, run, RunState.FAILED, fatal=True):
            return False
        write_log(session, run, "FatalError", message_id, error=_describe(error))
    return True
