"""Cron fires written ahead of their time (runs in state ``Staged``).

The scheduler acquires ahead, as Quartz's scheduler thread acquires the triggers due within its
next wait and fires them at their time: a tick writes the runs of the fires due within
``JOBENGINE_STAGE_AHEAD`` seconds as ``Staged`` rows whose ETA is the fire time (their job's next
fire time moves on in the same transaction, as for a fire, and ``(job, fire key)`` stays unique),
and the tick at the fire time only takes them (:func:`take_due`) and sends their starts. The
costly part of a fire (reading the due jobs, their cron, the multi-row insert of runs and the
move of the triggers) is then done before the fire time; at it, one read and one update a batch.

A staged row is durable: if the beat that wrote it dies, whichever beat leads at the fire time
takes it. Taking is a compare-and-set on its state (Staged -> Queued, marked sent), under the
row lock (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite's write transaction is exclusive), so
it is sent once; if its send is lost, the scheduler re-sends the queued run as it does any run
that waits on nothing. A fire whose job was paused or deleted between staging and its time is
not run: its row is deleted (it was never a run that anyone saw).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from jobengine.store.schema import COMPANIES, JOBS, RUNS, UTCDateTime
from jobengine.store.states import FIRING_TRIGGERS, RunState

__all__ = ["StagedFire", "take_due"]


_DUE_NOW = RUNS.c.state == RunState.STAGED, RUNS.c.eta <= bindparam("now", type_=UTCDateTime())


@functools.lru_cache(maxsize=4)
def _due(limit: int) -> Any:
    """The next ``limit`` staged fires due, with their job and company. The fires are picked from
    the runs alone, then joined: joining every staged row before the sort and limit (10,000 on
    one cron) cost PostgreSQL 60 ms a batch."""
    picked = (
        select(RUNS.c.id).where(*_DUE_NOW).order_by(RUNS.c.eta, RUNS.c.id).limit(limit)
    ).scalar_subquery()
    return (
        select(
            RUNS.c.id,
            RUNS.c.task_id,
            RUNS.c.run_name,
            JOBS.c.kind,
            JOBS.c.handle,
            COMPANIES.c.handle,
            JOBS.c.trigger_state,
            JOBS.c.deleted_at,
        )
        .join(JOBS, JOBS.c.id == RUNS.c.job_id)
        .join(COMPANIES, COMPANIES.c.id == RUNS.c.company_id)
        .where(RUNS.c.id.in_(picked), RUNS.c.state == RunState.STAGED)
        .order_by(RUNS.c.eta, RUNS.c.id)
        .with_for_update(of=RUNS, skip_locked=True)
    )


_TAKE = (
    update(RUNS)
    .where(RUNS.c.id.in_(bindparam("ids", expanding=True)), RUNS.c.state == RunState.STAGED)
    .values(
        state=RunState.QUEUED,
        eta=None,  # a cron run starts when its start message comes, as one fired at once
        dispatched_at=bindparam("now", type_=UTCDateTime()),
        created_at=bindparam("now", type_=UTCDateTime()),  # the run exists from its fire on
    )
)
_DROP = delete(RUNS).where(
    RUNS.c.id.in_(bindparam("ids", expanding=True)), RUNS.c.state == RunState.STAGED
)


@dataclass(frozen=True, slots=True)
class StagedFire:
    """A staged run taken at its fire time: what its start message needs."""

    run_id: int
    task_id: str
    run_name: str
    kind: str
    job_handle: str
    company_handle: str


def take_due(conn: Connection, now: datetime, limit: int) -> tuple[list[StagedFire], int]:
    """Take up to ``limit`` staged fires due by ``now``, oldest first: those whose job may still
    fire become Queued runs, marked sent at ``now`` (the caller sends them after its commit);
    the others are deleted. Returns the runs taken and how many rows were looked at (``limit``:
    more may be due)."""
    rows: list[Any] = list(conn.execute(_due(limit), {"now": now}))
    taken = [
        StagedFire(int(run_id), str(task), str(name), str(kind), str(job), str(company))
        for run_id, task, name, kind, job, company, trigger, deleted in rows
        if trigger in FIRING_TRIGGERS and deleted is None
    ]
    dropped = [int(row[0]) for row in rows if row[6] not in FIRING_TRIGGERS or row[7] is not None]
    if taken:
        conn.execute(_TAKE, {"ids": [fire.run_id for fire in taken], "now": now})
    if dropped:
        conn.execute(_DROP, {"ids": dropped})
    return taken, len(rows)
