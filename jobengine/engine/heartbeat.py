"""Lease heartbeats: a live step keeps its claim, so another worker never does it a second time.

A claim (an item's, or a run's start or finish) carries a lease of ``JOBENGINE_LEASE_SECONDS``.
The scheduler re-sends the step of a lease that lapsed, for the claim of a worker that died. A
step that works longer than the lease must therefore say it is alive: while a :class:`Heartbeat`
block runs, its lease is extended every quarter lease, so four beats in a row must fail before a
live step can be taken over, and a dead worker's claim still lapses one lease after its last
beat.

One thread per process beats for every block in progress (started on first use, again in a
forked child): entering and leaving a block costs a dictionary update, not a thread, so the
steps of small jobs, which end long before their first beat, pay nothing for it. The thread is
woken only for a block due before the time it sleeps until: a block entered after another is
due after it, and waking the thread for every step cost a thread switch each.

A beat that fails (the store is down or busy) is logged and the next one tries again; a beat
that finds the claim gone (taken over after an outage) stops beating. The step itself goes on:
its completion is refused by the store's guard and counted by the new holder only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy import CursorResult

from jobengine.runtime import Runtime

__all__ = ["Heartbeat"]

logger = logging.getLogger(__name__)


class Heartbeat:
    """``with Heartbeat(runtime, statement, lease):`` extends a lease while the block runs.

    ``statement`` builds the conditional UPDATE that extends the claim (anew on every beat, so
    that it carries the time of that beat), e.g. :func:`jobengine.store.runs.extend_item_lease`,
    or the claims of several items (:func:`jobengine.store.runs.extend_held_leases`: a beat
    counts as extended while it extends any). ``renewed`` is when the lease was last known
    to be extended (the block's start, then each beat that extended it; monotonic seconds).
    """

    def __init__(self, runtime: Runtime, statement: Callable[[], Any], lease: float) -> None:
        self._runtime, self._statement = runtime, statement
        self.interval = max(0.05, lease / 4)
        self.beats = 0  # leases extended (for tests and logs)
        self.lost = False  # the claim was found taken over
        self.active = False
        self.due = 0.0
        self.renewed = 0.0

    def __enter__(self) -> Heartbeat:
        self.renewed = time.monotonic()
        self.active, self.due = True, self.renewed + self.interval
        _KEEPER.add(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.active = False
        _KEEPER.remove(self)

    def beat(self) -> None:
        """Extend the lease once (the keeper's thread calls it when due)."""
        try:
            began = time.monotonic()
            with self._runtime.store.write() as session:
                result = session.execute(self._statement())
                assert isinstance(result, CursorResult)
                extended = int(result.rowcount) >= 1
        except Exception as exc:  # the store is down or busy: the next beat tries again
            logger.warning("lease heartbeat failed: %s", exc)
            return
        if not extended and self.active:
            self.lost = True
            logger.warning("lease heartbeat: the claim was taken over; this step's result "
                           "will not be counted")  # fmt: skip
            _KEEPER.remove(self)
        elif extended:
            self.beats += 1
            self.renewed = began


class _Keeper:
    """The process's one heartbeat thread and the blocks it beats for."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._blocks: dict[int, Heartbeat] = {}
        self._pid = 0
        self._wakes_at = float("-inf")  # when the waiting thread wakes; -inf: it is not waiting

    def add(self, block: Heartbeat) -> None:
        with self._cond:
            if self._pid != os.getpid():  # first use here, or a forked child: a thread of ours
                self._pid = os.getpid()
                self._blocks.clear()
                self._wakes_at = float("-inf")  # the new thread looks at the blocks first
                threading.Thread(target=self._run, name="jobengine heartbeat", daemon=True).start()
            self._blocks[id(block)] = block
            if block.due < self._wakes_at:  # else the thread sees it when it wakes, in time
                self._cond.notify()

    def remove(self, block: Heartbeat) -> None:
        with self._cond:
            self._blocks.pop(id(block), None)

    def _due(self) -> list[Heartbeat]:
        """Wait until a block is due (or one comes); those due, their next time set."""
        with self._cond:
            while True:
                now = time.monotonic()
                due = [b for b in self._blocks.values() if b.due <= now]
                if due:
                    for block in due:
                        block.due = now + block.interval
                    return due
                nearest = min((b.due for b in self._blocks.values()), default=now + 60.0)
                self._wakes_at = nearest
                self._cond.wait(timeout=max(0.01, nearest - now))
                self._wakes_at = float("-inf")

    def _run(self) -> None:
        pid = os.getpid()
        while self._pid == pid:
            for block in self._due():
                if block.active:
                    block.beat()


_KEEPER = _Keeper()
