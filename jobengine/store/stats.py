"""Counts over the job store for the metrics: runs by state, recent run durations, triggers.

Each function reads in the caller's session and returns plain values keyed by the labels the
metrics carry, so :mod:`jobengine.web.metrics` never writes a query of its own.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from jobengine.store.schema import Job, Run

__all__ = ["recent_run_durations", "run_counts", "trigger_counts"]


def run_counts(session: Session) -> dict[tuple[str, str], int]:
    """How many runs there are of each (run state, job kind)."""
    query = select(Run.state, Job.kind, func.count()).join(Job, Job.id == Run.job_id)
    rows = session.execute(query.group_by(Run.state, Job.kind)).all()
    return {(state, kind): int(n) for state, kind, n in rows}


def recent_run_durations(session: Session, since: datetime) -> dict[tuple[str, str], list[float]]:
    """``ended_at - started_at`` in seconds of the runs that ended at or after ``since``, by
    (job kind, run state)."""
    query = (
        select(Job.kind, Run.state, Run.started_at, Run.ended_at)
        .join(Job, Job.id == Run.job_id)
        .where(Run.ended_at >= since, Run.started_at.is_not(None))
    )
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for kind, state, started, ended in session.execute(query):
        if started is None or ended is None:
            continue
        durations[(kind, state)].append(max(0.0, (ended - started).total_seconds()))
    return durations


def trigger_counts(session: Session) -> dict[tuple[str, str], int]:
    """How many live timed jobs (execTime or execSchedule) there are of each (trigger state,
    job kind)."""
    scheduled = and_(
        Job.deleted_at.is_(None), or_(Job.exec_schedule.is_not(None), Job.exec_time.is_not(None))
    )
    query = select(Job.trigger_state, Job.kind, func.count()).where(scheduled)
    rows = session.execute(query.group_by(Job.trigger_state, Job.kind)).all()
    return {(state, kind): int(n) for state, kind, n in rows}
