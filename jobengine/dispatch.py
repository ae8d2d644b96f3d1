"""Sending task messages: the only place that talks to the broker.

Task ids are derived from the run (``<run task id>``, ``-<seq>``, ``-finish``) so that a message
sent twice (outbox relay, redelivery) is recognisably the same work in Flower, and the store's
guards make the second one a no-op. Messages carry the job handle and company in their kwargs so
that Flower shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from jobengine.errors import ServerError

__all__ = ["BrokerUnavailable", "producer", "send_finish", "send_items", "send_start"]

logger = logging.getLogger(__name__)

_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


class BrokerUnavailable(ServerError):
    """Raised when a message cannot be handed to the broker."""


@contextmanager
def producer() -> Iterator[Any]:
    """One pooled broker producer for several messages (BrokerUnavailable if none can be had)."""
    from jobengine.celery_app import app

    try:
        acquired = app.producer_or_acquire()
        handle = acquired.__enter__()
    except Exception as exc:  # kombu/redis/amqp raise many types for one condition
        raise BrokerUnavailable(f"the message broker is unavailable: {exc}") from exc
    try:
        yield handle
    finally:
        acquired.__exit__(None, None, None)


def _send(
    name: str,
    task_id: str,
    kwargs: dict[str, Any],
    eta: datetime | None = None,
    via: Any = None,
) -> None:
    from jobengine.celery_app import app

    try:
        app.send_task(
            name,
            kwargs=kwargs,
            task_id=task_id,
            eta=eta,
            retry=True,
            retry_policy=_RETRY,
            ignore_result=True,
            producer=via,
        )
    except Exception as exc:  # kombu/redis/amqp raise many types for one condition
        logger.warning("could not send %s %s: %s", name, task_id, exc)
        raise BrokerUnavailable(f"the message broker is unavailable: {exc}") from exc


def send_start(
    slug: str,
    run_id: int,
    task_id: str,
    labels: dict[str, str],
    *,
    eta: datetime | None = None,
    producer: Any = None,
) -> None:
    """Send the message that starts a run (through ``producer`` when given)."""
    _send(f"jobengine.{slug}.start", task_id, {"run_id": run_id, **labels}, eta, producer)


def send_items(
    slug: str, run_id: int, task_id: str, items: list[tuple[int, str]], labels: dict[str, str]
) -> None:
    """Send the items ``(seq, key)`` of a run as one Celery group (one producer connection).

    The group's members join in ``jobengine.<slug>.finish`` through the run's counter in the
    store, not through a chord: a redelivered member would be counted twice by a chord.
    """
    if not items:
        return
    from celery import group

    from jobengine.celery_app import app

    name = f"jobengine.{slug}.item"
    members = [
        app.signature(name, kwargs={"run_id": run_id, "seq": seq, "item": key, **labels},
                      task_id=f"{task_id}-{seq}", ignore_result=True)
        for seq, key in items
    ]  # fmt: skip
    try:
        group(members).apply_async(retry=True, retry_policy=_RETRY)
    except Exception as exc:  # kombu/redis/amqp raise many types for one condition
        logger.warning("could not send %d items of run %s: %s", len(items), run_id, exc)
        raise BrokerUnavailable(f"the message broker is unavailable: {exc}") from exc


def send_finish(slug: str, run_id: int, task_id: str, labels: dict[str, str]) -> None:
    """Send the message that joins a run's items and writes its job log."""
    _send(f"jobengine.{slug}.finish", f"{task_id}-finish", {"run_id": run_id, **labels})
