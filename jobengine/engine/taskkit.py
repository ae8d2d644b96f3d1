"""The Celery side of a job kind: three thin tasks around ``jobengine.engine.runner``.

``define_tasks(app, "export")`` (``kind_tasks("jobengine.tasks.export")`` in ``tasks/export.py``)
registers ``jobengine.export.start``, ``jobengine.export.item`` and ``jobengine.export.finish``.
Each task calls one runner function; the runner's store guards make every redelivery harmless. Item
tasks report progress in the store (for getActiveJobs, in the transaction that counts the item) and
as a ``task-progress`` event for Flower, about every twentieth of a run (``PROGRESS_EVENTS``) and at
its last item: an event is a broker round trip, and one per item cost a fan-out more than the
store's work of its item. No ``PROGRESS`` result is stored: the tasks ignore their results, so it
outlived the task as its last state, and every reader of progress reads the store.

An outage of the job store never drops a message. The step waits in its process, with backoff
(0.25 s doubling to 2 s), and runs again from the top until the store answers (the claims are
re-entrant for their holder), so work resumes within about two seconds of the store's return.
Until then the message stays unacknowledged and the worker takes no other message in that
process (every step needs the store). Past half the task time limit the task hands its message
back to the broker with a countdown (``retry``) instead, before the hard limit could kill it
(up to ``max_retries`` times: about ten hours of outage with the default limits; after that the
scheduler's stall sweep sends the step again).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from celery import Celery, Task

from jobengine.engine import runner
from jobengine.engine.app import app as default_app
from jobengine.errors import Unavailable
from jobengine.kinds import kind_by_slug
from jobengine.logs import job_context

__all__ = ["define_tasks", "kind_tasks", "outage_patience", "worker_id"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
FIRST_WAIT, LONGEST_WAIT = 0.25, 2.0  # seconds between tries while the store is down

# default_retry_delay: a task whose worker died is re-sent after 2 s (Celery's default is 180 s);
# the item's lease in the store decides when the re-sent task may take the work over.
_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "ignore_result": True,
    "max_retries": 20,
    "default_retry_delay": 2,
}


def worker_id(task: Task) -> str:
    """Who holds a claim: host, process and delivery."""
    return f"{task.request.hostname}:{os.getpid()}:{task.request.id}"


def outage_patience(task: Task) -> float:
    """How long a step waits in its process for the store (half its hard time limit)."""
    limit = task.time_limit or task.app.conf.task_time_limit or 3600
    return float(limit) / 2


def through_outages(task: Task, step: Callable[[], _T]) -> _T:
    """``step()``, run again from the top while the store is unavailable (see the module doc)."""
    deadline = time.monotonic() + outage_patience(task)
    wait, waited = FIRST_WAIT, 0.0
    while True:
        try:
            result = step()
        except Unavailable as exc:
            if time.monotonic() + wait > deadline:  # hand the message back, before the limit
                raise task.retry(exc=exc, countdown=LONGEST_WAIT) from exc
            if not waited:
                logger.warning("%s: %s; waiting for it", task.name, exc.reason)
            time.sleep(wait)
            waited += wait
            wait = min(wait * 2, LONGEST_WAIT)
            continue
        if waited:
            logger.warning("%s: the job store answers again after %.1f s", task.name, waited)
        return result


PROGRESS_EVENTS = 20  # task-progress events a run sends at most (and one at its last item)


def _reports(step: runner.ItemStep) -> bool:
    """Whether this item's count is one a ``task-progress`` event is sent for."""
    every = max(1, step.total // PROGRESS_EVENTS)
    return step.finished >= step.total or step.finished % every == 0


def _report(task: Task, step: runner.ItemStep, labels: dict[str, Any]) -> None:
    """Progress for Flower; best effort (the store has the truth)."""
    if not _reports(step):
        return
    try:
        _send_progress(task, step, labels)
    except Exception as exc:  # the broker or backend is down: the item is done all the same
        logger.info("%s: progress not reported: %s", task.name, exc)


def _send_progress(task: Task, step: runner.ItemStep, labels: dict[str, Any]) -> None:
    meta = {
        "job": labels.get("job"),
        "company": labels.get("company"),
        "progress": step.progress,
        "done": step.finished,
        "total": step.total,
    }
    task.send_event("task-progress", **meta)


def _items(task: Task, run_id: int, seqs: list[int], labels: dict[str, Any]) -> str:
    """Do the items ``seqs`` of a run: one item (:func:`runner.run_item`), or a chunk of a
    fan-out (:func:`runner.run_chunk`: in order, each behind its own run-once guard, and
    ``paused`` when the run was paused: the items left are pending, resumeJob sends them).

    Items another delivery holds (``busy``) are left for later: the task is retried with just
    those once the earliest of their leases lapses (taken over then if their worker died). A
    chunk still going after a quarter of the hard time limit hands the items it has not begun
    back the same way, at once, so that a long chunk is never killed by the limit."""
    worker = worker_id(task)
    left: tuple[int, ...] = ()
    if len(seqs) == 1:
        step = through_outages(task, lambda: runner.run_item(run_id, seqs[0], worker))
        busy = [(seqs[0], step.retry_at)] if step.status == "busy" and step.retry_at else []
        if step.status in ("done", "cancelled"):
            _report(task, step, labels)
        status = step.status
    else:
        until = time.monotonic() + outage_patience(task) / 2
        chunk = through_outages(
            task,
            lambda: runner.run_chunk(
                run_id, seqs, worker, on_item=lambda s: _report(task, s, labels), until=until
            ),
        )
        busy, status, left = list(chunk.busy), chunk.status, chunk.left
    if left:
        raise task.retry(kwargs=_chunk_kwargs(task, [s for s, _ in busy] + list(left)), countdown=0)
    if busy:
        # Another delivery holds them; if its worker died, take over when the lease lapses.
        wait = (min(at for _, at in busy) - datetime.now(UTC)).total_seconds()
        held = [s for s, _ in busy]
        raise task.retry(kwargs=_chunk_kwargs(task, held), countdown=max(1.0, wait + 0.5))
    return status


def _chunk_kwargs(task: Task, seqs: list[int]) -> dict[str, Any]:
    """The task's arguments for a message of just the items ``seqs`` (of its chunk)."""
    kwargs = {k: v for k, v in (task.request.kwargs or {}).items() if k != "seqs"}
    if kwargs.get("seq") != seqs[0]:
        kwargs.pop("item", None)  # the first item's asset handle: not known for another
    kwargs["seq"] = seqs[0]
    if len(seqs) > 1:
        kwargs["seqs"] = seqs
    return kwargs


def define_tasks(app: Celery, slug: str) -> tuple[Task, Task, Task]:
    """Register and return the start, item and finish tasks of one job kind."""

    @app.task(name=f"jobengine.{slug}.start", **_OPTIONS)  # type: ignore[untyped-decorator]
    def start(self: Task, run_id: int, **labels: Any) -> str:
        with job_context(labels):
            # a run that ended here has had its hooks run (e-mail, callback: jobengine.engine.hooks)
            return through_outages(self, lambda: runner.start(run_id, worker_id(self)))

    @app.task(name=f"jobengine.{slug}.item", **_OPTIONS)  # type: ignore[untyped-decorator]
    def item(
        self: Task, run_id: int, seq: int, seqs: list[int] | None = None, **labels: Any
    ) -> str:
        with job_context(labels):
            return _items(self, run_id, list(seqs) if seqs else [seq], labels)

    @app.task(name=f"jobengine.{slug}.finish", **_OPTIONS)  # type: ignore[untyped-decorator]
    def finish(self: Task, run_id: int, **labels: Any) -> str:
        with job_context(labels):
            # the run's hooks run too, also on a duplicate (jobengine.engine.hooks)
            return through_outages(self, lambda: runner.finish(run_id, worker_id(self)))

    return start, item, finish


def kind_tasks(module: str, app: Celery = default_app) -> tuple[Task, Task, Task]:
    """The tasks of the kind a ``tasks/<slug>.py`` module is named after (its ``__name__``);
    a module named after no kind of ``jobengine.kinds.KINDS`` is a KeyError at import."""
    slug = module.rpartition(".")[2]
    kind_by_slug(slug)  # the kinds table knows it
    return define_tasks(app, slug)
