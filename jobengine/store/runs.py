"""Atomic state changes of runs and items: the run-once guards.

Each function is one conditional UPDATE (or a short transaction of them). Whoever's UPDATE
changes the row owns the step; a redelivered or duplicated message finds the row already moved
and does nothing. Claims carry a lease so that the work of a killed worker is taken over once the
lease lapses; a live worker extends its lease while it works (:func:`extend_item_lease`,
:func:`extend_run_lease`, called by :mod:`jobengine.engine.heartbeat`), so a long step is never
taken over. A claim is re-entrant for its holder: a step that met an outage of the store starts
again from the top and takes its own claim back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    CursorResult,
    String,
    and_,
    bindparam,
    case,
    cast,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from jobengine.i18n import LogMessage, english, message_args
from jobengine.store.schema import Job, LogDetail, Run, RunItem, utcnow
from jobengine.store.states import (
    ACTIVE_RUNS,
    STARTED_RUNS,
    ItemState,
    RunState,
    TriggerState,
)

__all__ = [
    "ItemClaim",
    "claim_finish",
    "claim_inline_finish",
    "claim_item",
    "claim_start",
    "complete_item",
    "end_run",
    "extend_item_lease",
    "extend_run_lease",
    "lock_job",
    "lock_job_of_run",
    "write_log",
    "write_record",
]


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def lock_job(session: Session, job: Job) -> None:
    """Lock a job's row (PostgreSQL) before touching its runs, and read it afresh: the control
    operations take the locks in the same order as the workers (job, then runs)."""
    session.execute(select(Job.id).where(Job.id == job.id).with_for_update())
    session.refresh(job)


def _serialized(session: Session) -> bool:
    """SQLite: every write transaction holds the one write lock from its BEGIN IMMEDIATE, so
    there are no row locks to order (and FOR UPDATE means nothing there)."""
    bind = session.get_bind()
    return bind.dialect.name == "sqlite"


def lock_job_of_run(session: Session, run_id: int) -> None:
    """Lock the run's job row first (PostgreSQL), so that every transaction touching a job and
    its runs takes the locks in the same order: job, then runs. No deadlocks."""
    if _serialized(session):
        return
    session.execute(
        select(Job.id)
        .join(Run, Run.job_id == Job.id)
        .where(Run.id == run_id)
        .with_for_update(of=Job)
    )


def claim_start(session: Session, run_id: int, worker: str, lease: float) -> bool:
    """Queued -> Running for ``worker`` (or take over a start whose lease lapsed, or take back
    ``worker``'s own)."""
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            or_(
                Run.state == RunState.QUEUED,
                and_(
                    Run.state.in_(STARTED_RUNS),
                    Run.planned.is_(False),
                    or_(
                        Run.lease_until.is_(None),
                        Run.lease_until < now,
                        Run.claimed_by == worker,
                    ),
                ),
            ),
        )
        .values(
            state=case((Run.state == RunState.QUEUED, RunState.RUNNING), else_=Run.state),
            claimed_by=worker,
            lease_until=now + timedelta(seconds=lease),
            started_at=now,
            last_progress_update=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


@dataclass(frozen=True)
class ItemClaim:
    """The answer to an item claim: owned, already finished, or busy elsewhere until a time."""

    status: Literal["owned", "finished", "busy", "missing"]
    item: RunItem | None = None
    busy_until: datetime | None = None


# The item steps' statements, built once: building them per call (SQLAlchemy's operator
# overloading, coercions, the cache key) cost more than running them, and on SQLite it ran while
# the step held the store's one write lock, which a second worker child then waited for.
_CLAIM_ITEM = (
    update(RunItem)
    .where(
        RunItem.run_id == bindparam("b_run"),
        RunItem.seq == bindparam("b_seq"),
        or_(
            RunItem.state == ItemState.PENDING,
            and_(
                RunItem.state == ItemState.RUNNING,
                or_(
                    RunItem.lease_until < bindparam("b_now"), RunItem.claimed_by == bindparam("b_w")
                ),
            ),
        ),
    )
    .values(
        state=ItemState.RUNNING,
        claimed_by=bindparam("b_w"),
        lease_until=bindparam("b_until"),
        attempts=RunItem.attempts + 1,
    )
    .execution_options(synchronize_session=False)
)
_ITEM = select(RunItem).where(
    RunItem.run_id == bindparam("b_run"), RunItem.seq == bindparam("b_seq")
)


def claim_item(session: Session, run_id: int, seq: int, worker: str, lease: float) -> ItemClaim:
    """pending -> running for ``worker``; a lapsed lease of a dead worker is taken over, and
    ``worker``'s own claim taken back (after an outage interrupted its step)."""
    now = utcnow()
    key = {"b_run": run_id, "b_seq": seq}
    until = now + timedelta(seconds=lease)
    result = session.execute(_CLAIM_ITEM, {**key, "b_now": now, "b_w": worker, "b_until": until})
    item = session.scalar(_ITEM, key)
    if item is None:
        return ItemClaim("missing")
    if _rowcount(result) == 1:
        return ItemClaim("owned", item)
    if item.state == ItemState.RUNNING:
        return ItemClaim("busy", item, item.lease_until)
    return ItemClaim("finished", item)


def cancel_item(session: Session, run_id: int, seq: int) -> bool:
    """pending -> cancelled (a stopped run's item that never started)."""
    result = session.execute(
        update(RunItem)
        .where(RunItem.run_id == run_id, RunItem.seq == seq, RunItem.state == ItemState.PENDING)
        .values(state=ItemState.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


@dataclass(frozen=True)
class Counts:
    """Counter increments for one finished item."""

    success: int = 0
    error: int = 0
    warning: int = 0
    size: int = 0
    duplicate: int = 0  # JobLog fileDuplicateCount
    update: int = 0  # JobLog fileUpdateCount


def _complete_item(owned: bool) -> Any:
    """Item ``b_seq`` of run ``b_run`` to state ``b_final`` with ``b_result``: from pending (no
    worker), or from running under worker ``b_w``'s claim."""
    claimed = (
        and_(RunItem.state == ItemState.RUNNING, RunItem.claimed_by == bindparam("b_w"))
        if owned
        else RunItem.state == ItemState.PENDING
    )
    return (
        update(RunItem)
        .where(RunItem.run_id == bindparam("b_run"), RunItem.seq == bindparam("b_seq"), claimed)
        .values(state=bindparam("b_final"), result=bindparam("b_result"), lease_until=None)
        .execution_options(synchronize_session=False)
    )


_COMPLETE_ITEM = {owned: _complete_item(owned) for owned in (False, True)}


def complete_item(
    session: Session,
    run_id: int,
    seq: int,
    worker: str | None,
    *,
    final: ItemState,
    counts: Counts,
    result: dict[str, Any] | None = None,
) -> tuple[int, int] | None:
    """Move a claimed item to its final state and count it; None if it was not ours to finish.

    Returns ``(finished_items, total_items)`` after counting, so the caller that finishes the
    last item sends the finishing task.
    """
    params = {"b_run": run_id, "b_seq": seq, "b_final": str(final), "b_result": result or {}}
    if worker is not None:
        params["b_w"] = worker
    moved = session.execute(_COMPLETE_ITEM[worker is not None], params)
    if _rowcount(moved) != 1:
        return None
    return count_finished(session, run_id, counts)


_COUNT_FINISHED = (
    update(Run)
    .where(Run.id == bindparam("b_run"))
    .values(
        finished_items=Run.finished_items + 1,
        success_count=Run.success_count + bindparam("b_success"),
        error_count=Run.error_count + bindparam("b_error"),
        warning_count=Run.warning_count + bindparam("b_warning"),
        duplicate_count=Run.duplicate_count + bindparam("b_duplicate"),
        update_count=Run.update_count + bindparam("b_update"),
        total_size=Run.total_size + bindparam("b_size"),
        progress=((Run.finished_items + 1) * 100) / Run.total_items,
        # i18n.PROGRESS_MESSAGE in English (queries render it in the reader's locale)
        progress_message=cast(Run.finished_items + 1, String)
        + " of "
        + cast(Run.total_items, String)
        + " file(s) processed",
        last_progress_update=bindparam("b_now"),
    )
    .execution_options(synchronize_session=False)
)
_FINISHED = select(Run.finished_items, Run.total_items).where(Run.id == bindparam("b_run"))


def count_finished(session: Session, run_id: int, counts: Counts) -> tuple[int, int]:
    """Add one finished item and its counters to the run; returns (finished, total)."""
    session.execute(
        _COUNT_FINISHED,
        {
            "b_run": run_id,
            "b_success": counts.success,
            "b_error": counts.error,
            "b_warning": counts.warning,
            "b_duplicate": counts.duplicate,
            "b_update": counts.update,
            "b_size": counts.size,
            "b_now": utcnow(),
        },
    )
    row = session.execute(_FINISHED, {"b_run": run_id}).one()
    return int(row[0]), int(row[1])


def mark_finish_sent(session: Session, run_id: int) -> bool:
    """Record that the finishing task is being sent; True only for the one caller that should."""
    result = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.planned.is_(True),
            Run.finished_items >= Run.total_items,
            Run.finish_sent_at.is_(None),
        )
        .values(finish_sent_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def claim_inline_finish(session: Session, run_id: int, worker: str, lease: float) -> bool:
    """A run whose items one worker did in its start task (its start claim is ``worker``'s):
    mark it planned, its finish sent and claimed by ``worker``, in one conditional UPDATE;
    False if items are left or the start is no longer ``worker``'s."""
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.state.in_(STARTED_RUNS),
            Run.planned.is_(False),
            Run.claimed_by == worker,
            Run.finished_items >= Run.total_items,
            Run.finish_sent_at.is_(None),
        )
        .values(
            planned=True,
            finish_sent_at=now,
            claimed_by=worker,
            lease_until=now + timedelta(seconds=lease),
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def claim_finish(session: Session, run_id: int, worker: str, lease: float) -> bool:
    """Take the finishing step of a run whose items are all finished (once; or take back
    ``worker``'s own claim)."""
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.state.in_(STARTED_RUNS),
            Run.planned.is_(True),
            Run.finished_items >= Run.total_items,
            or_(Run.lease_until.is_(None), Run.lease_until < now, Run.claimed_by == worker),
        )
        .values(claimed_by=worker, lease_until=now + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def end_run(
    session: Session,
    run: Run,
    state: RunState,
    *,
    fatal: bool = False,
    output: dict[str, Any] | None = None,
) -> bool:
    """Give an active run its final state, once: a compare-and-set on its state, so that two
    finishing steps (a re-sent one, one whose lease was taken over) never both end it, and a
    failure never overwrites an end already committed. False when the run had ended already.
    A one-shot job's trigger completes with its run. ``run`` is updated in memory too."""
    now = utcnow()
    values: dict[str, Any] = {
        "state": state,
        "ended_at": now,
        "lease_until": None,
        "last_progress_update": now,
    }
    if fatal:
        values["fatal_error"] = True
    if state == RunState.DONE:
        values["progress"] = 100
    if output is not None:
        values["output"] = output
    moved = session.execute(
        update(Run)
        .where(Run.id == run.id, Run.state.in_(ACTIVE_RUNS))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(moved) != 1:
        return False
    for name, value in values.items():  # what the row holds now, without reading it again
        set_committed_value(run, name, value)
    session.execute(
        update(Job)
        .where(
            Job.id == run.job_id,
            Job.exec_schedule.is_(None),
            Job.trigger_state.not_in((TriggerState.PAUSED, TriggerState.COMPLETE)),
        )
        .values(trigger_state=TriggerState.COMPLETE, next_fire_at=None)
        .execution_options(synchronize_session="evaluate")
    )
    return True


def extend_item_lease(run_id: int, seq: int, worker: str, lease: float) -> Any:
    """The statement that extends ``worker``'s claim of an item (nothing if it lost it)."""
    return (
        update(RunItem)
        .where(
            RunItem.run_id == run_id,
            RunItem.seq == seq,
            RunItem.state == ItemState.RUNNING,
            RunItem.claimed_by == worker,
        )
        .values(lease_until=utcnow() + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    )


def extend_run_lease(run_id: int, worker: str, lease: float) -> Any:
    """The statement that extends ``worker``'s claim of a run's start or finish."""
    return (
        update(Run)
        .where(Run.id == run_id, Run.state.in_(ACTIVE_RUNS), Run.claimed_by == worker)
        .values(lease_until=utcnow() + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    )


# Log rows go in as they are written, one INSERT each, not through the unit of work at commit
# (one ORM object flush cost more than the item's other statements, inside the write lock).
_INSERT_LOG = insert(LogDetail)


def write_record(session: Session, run: Run, log_type: str, value: str) -> None:
    """Add one job metadata row to a run (``OriginalJobName``, ``JobClient``...): its
    logMessage is ``value`` itself, data that is never translated."""
    session.execute(
        _INSERT_LOG,
        {
            "run_id": run.id,
            "company_id": run.company_id,
            "log_type": log_type,
            "message": value[:4000],
        },
    )


def write_log(
    session: Session,
    run: Run,
    log_type: str,
    message_id: LogMessage,
    *,
    asset_name: str | None = None,
    asset_type: str | None = None,
    asset_handle: str | None = None,
    **args: object,
) -> None:
    """Add one JobLogDetail row to a run: ``message_id`` with its ``args`` (stringified), and
    the English text they make, e.g. ``write_log(s, run, "ReturnSuccess", "published {path}",
    path=p)``. Arguments (names, paths, exception texts) are never translated."""
    values = message_args(args)
    session.execute(
        _INSERT_LOG,
        {
            "run_id": run.id,
            "company_id": run.company_id,
            "log_type": log_type,
            "message": english(message_id, values)[:4000],
            "message_id": message_id,
            "message_args": values,
            "asset_name": asset_name,
            "asset_type": asset_type,
            "asset_handle": asset_handle,
        },
    )
