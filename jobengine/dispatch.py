"""Sending task messages: the only place that talks to the broker.

Task ids are derived from the run (``<run task id>``, ``-<seq>``, ``-finish``) so that a message
sent twice (outbox relay, redelivery) is recognisably the same work in Flower, and the store's
guards make the second one a no-op. Messages carry the job handle and company in their kwargs so
that Flower shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobengine.errors import ServerError
from jobengine.redis_send import RedisSender, TaskCall, Unsupported

__all__ = [
    "BrokerUnavailable",
    "StartMessage",
    "producer",
    "reset_sender",
    "send_finish",
    "send_items",
    "send_start",
    "send_starts",
]

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
    *,
    retry: bool = True,
) -> None:
    from jobengine.celery_app import app

    try:
        app.send_task(
            name,
            kwargs=kwargs,
            task_id=task_id,
            eta=eta,
            retry=retry,
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


@dataclass(frozen=True, slots=True)
class StartMessage:
    """The message that starts a run of job kind ``slug``."""

    slug: str
    run_id: int
    task_id: str
    labels: dict[str, str]
    eta: datetime | None = None


def send_starts(messages: Sequence[StartMessage]) -> None:
    """Send start messages, with their ``task-sent`` events, in one broker round trip.

    On plain Redis, :class:`~jobengine.redis_send.RedisSender` pipelines every task message and
    its event (the one Flower shows) into a single round trip, instead of two per message plus
    a new client. Elsewhere (RabbitMQ), and if that fails, the messages go one by one through
    Celery with the retry policy (a message that did reach the broker the first time is then
    sent twice, and the run-once guard makes the copy a no-op). BrokerUnavailable when the
    broker cannot take them.
    """
    if not messages:
        return
    calls = [
        TaskCall(f"jobengine.{m.slug}.start", m.task_id, {"run_id": m.run_id, **m.labels}, m.eta)
        for m in messages
    ]
    sender = _redis_sender()
    if sender is not None:
        try:
            sender.send(calls)
            return
        except Unsupported:
            pass
        except Exception as exc:  # the client's own errors: try again the slow, retrying way
            logger.info("pipelined publish failed (%s); sending one by one with retries", exc)
    with producer() as via:
        for call in calls:
            _send(call.name, call.task_id, call.kwargs, call.eta, via)


_SENDER: list[RedisSender | None] = []


def _redis_sender() -> RedisSender | None:
    """The process's pipelined Redis sender, or None when the broker is not plain Redis."""
    if not _SENDER:
        from jobengine.celery_app import app

        _SENDER.append(RedisSender(app) if RedisSender.supports(app) else None)
    return _SENDER[0]


def reset_sender() -> None:
    """Forget the pipelined sender (after the broker configuration changed)."""
    if _SENDER and _SENDER[0] is not None:
        _SENDER[0].reset()
    _SENDER.clear()


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
