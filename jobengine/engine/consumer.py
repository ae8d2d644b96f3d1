"""The worker's consumer: Celery's own, with its task events published in batches.

A worker sends three events for each task it runs (``task-received``, ``task-started`` and
``task-succeeded``, or ``task-failed``), which is how Flower follows them. Celery's consumer
buffers them already but flushes the buffer on the event loop's next turn, and since a small
job's three events fall on different turns, that was one ``PUBLISH`` round trip per event,
from the one process that also fetches, hands out and acknowledges every message: about a
fifth of that process's busy time on a run of one-asset jobs, time during which the pool's
children waited for their next task.

Here the first event buffered sets a timer (``JOBENGINE_EVENT_BATCH_SECONDS``, 0.05 s; 0 is
Celery's own way), and everything
buffered until it fires goes out as one ``task.multi`` message (Celery's grouped-event format,
which Flower and ``celery events`` read like single events; a full buffer, 24 events, goes at
once as before). Flower sees a task's events that much later, and no fewer of them. What is
still buffered when the consumer shuts down is sent before its event connection is closed.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from jobengine.settings import get_settings

__all__ = ["Consumer"]

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer (``worker_consumer``) with task events flushed on a timer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events_due = False  # a flush is on the timer
        self._event_batch = get_settings().event_batch

    def on_send_event_buffered(self) -> None:
        if self.hub is None:  # no event loop: the dispatcher does not buffer at all
            return
        if not self._event_batch:
            super().on_send_event_buffered()
        elif not self._events_due:
            self._events_due = True
            self.hub.call_later(self._event_batch, self._flush_batched_events)

    def _flush_batched_events(self) -> None:
        self._events_due = False
        self._flush_events()

    def shutdown(self) -> None:
        self._flush_now()
        super().shutdown()

    def _flush_now(self) -> None:
        """Send what is buffered, before the consumer's event connection goes."""
        self._events_due = False
        try:
            self._flush_events()
        except Exception:  # the broker is gone: the events are lost, the tasks are not
            logger.warning("could not send the last task events", exc_info=True)
