"""Cron fires written ahead of their time (runs in state ``Staged``).

The scheduler acquires ahead, as Quartz's scheduler thread acquires the triggers due within its
next wait and fires them at their time: a tick writes the runs of the fires due within
``JOBENGINE_STAGE_AHEAD`` seconds as ``Staged`` rows whose ETA is the fire time (their job's next
fire time moves on in the same transaction, as for a fire, and ``(job, fire key)`` stays unique),
and the tick at the fire time only takes them (:func:`take_due`) and sends their starts. The
costly part of a fire (reading the due jobs, their cron, the multi-row insert of runs and the
move of the triggers) is then done before the fire time; at it, one statement a batch (on SQLite
one read and one update).

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

from jobengine.store.hot import HotStatement, planned_in
from jobengine.store.schema import COMPANIES, JOBS, RUNS, UTCDateTime
from jobengine.store.states import FIRING_TRIGGERS, RunState

__all__ = ["StagedFire", "take_due"]


_STAGED = RUNS.c.state == RunState.STAGED
_DUE_NOW = _STAGED, RUNS.c.eta <= bindparam("now", type_=UTCDateTime())
# What a start message of a staged fire needs, and whether its job still fires.
_FIRE_COLUMNS = (
    RUNS.c.id,
    RUNS.c.task_id,
    RUNS.c.run_name,
    JOBS.c.kind,
    JOBS.c.handle,
    COMPANIES.c.handle,
    JOBS.c.trigger_state,
    JOBS.c.deleted_at,
)
_TAKEN = {  # a staged fire taken: queued and marked sent at the fire time
    "state": RunState.QUEUED,
    "eta": None,  # a cron run starts when its start message comes, as one fired at once
    "dispatched_at": bindparam("now", type_=UTCDateTime()),
    "created_at": bindparam("now", type_=UTCDateTime()),  # the run exists from its fire on
}


@functools.lru_cache(maxsize=4)
def _due(limit: int) -> Any:
    """SQLite: the next ``limit`` staged fires due, with their job and company (the write
    transaction is exclusive: no row locks). The fires are picked from the runs alone, then
    joined."""
    picked = (
        select(RUNS.c.id).where(*_DUE_NOW).order_by(RUNS.c.eta, RUNS.c.id).limit(limit)
    ).scalar_subquery()
    return (
        select(*_FIRE_COLUMNS)
        .join(JOBS, JOBS.c.id == RUNS.c.job_id)
        .join(COMPANIES, COMPANIES.c.id == RUNS.c.company_id)
        .where(RUNS.c.id.in_(picked), _STAGED)
        .order_by(RUNS.c.eta, RUNS.c.id)
    )


_TAKE = update(RUNS).where(RUNS.c.id.in_(bindparam("ids", expanding=True)), _STAGED).values(_TAKEN)


@functools.lru_cache(maxsize=4)
def _take_returning(limit: int) -> HotStatement:
    """PostgreSQL: one statement picks the next ``limit`` staged fires due (``FOR UPDATE SKIP
    LOCKED``: a second beat skips the rows this one holds), takes them (Staged -> Queued, marked
    sent, under a compare-and-set on the state) and returns what their start messages need.

    Planned for each call, never a prepared statement: psycopg prepares a statement run five
    times on a connection, and PostgreSQL then may keep a generic plan. The SELECT and the
    UPDATE of its ids (500 bound values) that this replaces went so once a pooled connection
    had run them often enough (in bench/beat.py, from the 17th batch of the first round and
    the first of every later one): the UPDATE's generic plan read every 'Staged' entry of
    ix_runs_state (the table never analyzed: it expected three) and tested each row against
    the 500 parameters, an array built anew for each row, 54 ms for the first batch of
    10,000 staged fires where the planned one took 8.
    """
    picked = (
        select(RUNS.c.id, RUNS.c.eta)
        .where(*_DUE_NOW)
        .order_by(RUNS.c.eta, RUNS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .subquery("picked")
    )
    return HotStatement(
        update(RUNS)
        .where(
            RUNS.c.id == picked.c.id,
            _STAGED,
            JOBS.c.id == RUNS.c.job_id,
            COMPANIES.c.id == RUNS.c.company_id,
        )
        .values(_TAKEN)
        .returning(*_FIRE_COLUMNS, picked.c.eta),
        planned_each_time=True,
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
    taken_by_update = conn.dialect.name == "postgresql"
    if taken_by_update:
        # taken all at once; the few of a job paused or deleted since go again in this
        # transaction, so that no one ever sees them queued
        rows: list[Any] = sorted(
            _take_returning(limit).all(conn, {"now": now}), key=lambda row: (row[8], row[0])
        )
    else:
        rows = list(conn.execute(_due(limit), {"now": now}))
    taken = [
        StagedFire(int(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5]))
        for row in rows
        if row[6] in FIRING_TRIGGERS and row[7] is None
    ]
    dropped = [int(row[0]) for row in rows if row[6] not in FIRING_TRIGGERS or row[7] is not None]
    if taken and not taken_by_update:
        conn.execute(_TAKE, {"ids": [fire.run_id for fire in taken], "now": now})
    if dropped:  # rows this transaction holds (locked, or SQLite's write lock)
        conn.execute(delete(RUNS).where(planned_in(RUNS.c.id, dropped)))
    return taken, len(rows)
