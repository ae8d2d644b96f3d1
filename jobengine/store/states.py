"""The states of runs, items and triggers, and the groups of them the code asks about.

Each state is a :class:`~enum.StrEnum` whose value is the exact string the store holds (and the
wire shows): a member *is* that string (``RunState.DONE == "Done"``, same hash), so the columns
stay plain ``String``, rows read back compare equal to members, and no migration is needed.

:class:`TriggerState` is IPS's own vocabulary (ScheduledJob/triggerState), defined once in the
model layer below the store and used here as it is.

The groups are tuples, not sets: they are compiled into SQL (``IN (...)``), and a fixed order
keeps the statement text, and so the dialect's statement cache, the same in every process.
"""

from __future__ import annotations

from enum import StrEnum

from jobengine.model.constants import TriggerState

__all__ = [
    "ACTIVE_RUNS",
    "ENDED_RUNS",
    "FINAL_ITEMS",
    "FINAL_RUNS",
    "FIRING_TRIGGERS",
    "LIVE_TRIGGERS",
    "STARTED_RUNS",
    "ItemState",
    "RunState",
    "TriggerState",
]


class RunState(StrEnum):
    """A run's (job log's) state: Queued -> Running (-> Stopping) -> Done | Stopped | Failed,
    or Cancelled when its job was deleted before it started.

    Staged: a cron fire the scheduler wrote ahead of its time (its ETA), to be sent then
    (:mod:`jobengine.engine.scheduling`); not a job log yet, no query shows it. At its time it
    becomes Queued, or its row is deleted when its job was paused or deleted meanwhile."""

    STAGED = "Staged"
    QUEUED = "Queued"
    RUNNING = "Running"
    STOPPING = "Stopping"
    DONE = "Done"
    FAILED = "Failed"
    STOPPED = "Stopped"
    CANCELLED = "Cancelled"


class ItemState(StrEnum):
    """A run item's (one file's) state: pending -> running -> done | failed | cancelled."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Runs not ended yet: waiting for a worker or in its hands (they hold their job's name).
ACTIVE_RUNS: tuple[RunState, ...] = (RunState.QUEUED, RunState.RUNNING, RunState.STOPPING)
# Runs a worker has started and not ended (getActiveJobs without waiting jobs).
STARTED_RUNS: tuple[RunState, ...] = (RunState.RUNNING, RunState.STOPPING)
# Every end a run can reach; a run in one of these never changes state again.
FINAL_RUNS: tuple[RunState, ...] = (
    RunState.DONE,
    RunState.FAILED,
    RunState.STOPPED,
    RunState.CANCELLED,
)
# The ends of runs that ran (not Cancelled before starting): the ones a notice is sent about.
ENDED_RUNS: tuple[RunState, ...] = (RunState.DONE, RunState.STOPPED, RunState.FAILED)
# Items processed, one way or another (getActiveJobs' numProcessed).
FINAL_ITEMS: tuple[ItemState, ...] = (ItemState.DONE, ItemState.FAILED, ItemState.CANCELLED)
# Triggers under which a fire staged ahead runs at its time (Complete: the staged fire was the
# schedule's last); a Paused or deleted job's staged fire is dropped (jobengine.store.staging).
FIRING_TRIGGERS: tuple[TriggerState, ...] = (TriggerState.NORMAL, TriggerState.COMPLETE)
# Triggers that may still fire (getScheduledJobs shows them; a job holding one keeps its name).
LIVE_TRIGGERS: tuple[TriggerState, ...] = (
    TriggerState.NORMAL,
    TriggerState.PAUSED,
    TriggerState.BLOCKED,
)
