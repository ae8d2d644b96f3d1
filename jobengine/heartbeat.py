"""Lease heartbeats: a live step keeps its claim, so another worker never does it a second time.

A claim (an item's, or a run's start or finish) carries a lease of ``JOBENGINE_LEASE_SECONDS``.
The scheduler re-sends the step of a lease that lapsed, for the claim of a worker that died. A
step that works longer than the lease must therefore say it is alive: :class:`Heartbeat` extends
the lease from a thread of the task's process every quarter lease while the step runs, so four
beats in a row must fail before a live step can be taken over, and a dead worker's claim still
lapses one lease after its last beat.

A beat that fails (the store is down or busy) is logged and the next one tries again; a beat
that finds the claim gone (taken over after an outage) stops beating. The step itself goes on:
its completion is refused by the store's guard and counted by the new holder only.
"""

from __future__ import annotations

import logging
import threading
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
    that it carries the time of that beat), e.g. :func:`jobengine.store.runs.extend_item_lease`.
    """

    def __init__(self, runtime: Runtime, statement: Callable[[], Any], lease: float) -> None:
        self._runtime, self._statement = runtime, statement
        self.interval = max(0.05, lease / 4)
        self.beats = 0  # leases extended (for tests and logs)
        self.lost = False  # the claim was found taken over
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobengine heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 35)  # a beat waits at most SQLite's busy time

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self._runtime.store.write() as session:
                    result = session.execute(self._statement())
                    assert isinstance(result, CursorResult)
                    extended = int(result.rowcount) == 1
            except Exception as exc:  # the store is down or busy: the next beat tries again
                logger.warning("lease heartbeat failed: %s", exc)
                continue
            if not extended:
                self.lost = True
                logger.warning("lease heartbeat: the claim was taken over; this step's result "
                               "will not be counted")  # fmt: skip
                return
            self.beats += 1
