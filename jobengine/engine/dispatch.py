"""Sending task messages: the only place that talks to the broker.

Task ids are derived from the run (``<run task id>``, ``-<seq>``, ``-finish``) so that a message
sent twice (outbox relay, redelivery) is recognisably the same work in Flower, and the store's
guards make the second one a no-op. Messages carry the job handle and company in their kwargs so
that Flower shows them.

Once the broker refuses a message, this process sends nothing for ``JOBENGINE_OUTBOX_GRACE``
seconds (:func:`broker_known_down`): submits record their runs in the outbox at once instead of
each waiting on a connect timeout, and the scheduler's relay sends them when the broker is back.

:func:`queue_depths` tells how many messages wait in each queue (the scheduler uses it to tell a
run waiting behind a backlog from one whose message was lost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

from jobengine.engine.redis_send import Command, RedisSender, TaskCall, Unsupported
from jobengine.errors import ServerError
from jobengine.settings import Settings, get_settings

__all__ = [
    "BrokerUnavailable",
    "PreparedStart",
    "StartMessage",
    "broker_known_down",
    "item_chunks",
    "item_kwargs",
    "prepare_starts",
    "producer",
    "queue_depths",
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


class _Breaker:
    """Remembers, per process, that the broker refused a message, for a short while."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._reason = ""

    def check(self) -> None:
        """BrokerUnavailable, without trying, while the broker is known to be down (a refusal
        is forgotten when the broker configuration changes)."""
        _follow_configuration()
        if time.monotonic() < self._until:
            raise BrokerUnavailable(f"the message broker is unavailable: {self._reason}")

    def down(self, error: Exception) -> None:
        with self._lock:
            self._until = time.monotonic() + get_settings().outbox_grace
            self._reason = str(error) or type(error).__name__

    def up(self) -> None:
        self._until = 0.0

    def is_down(self) -> bool:
        return time.monotonic() < self._until


_BREAKER = _Breaker()


def broker_known_down() -> bool:
    """Whether this process saw the broker refuse a message in the last outbox grace period."""
    return _BREAKER.is_down()


@contextmanager
def producer() -> Iterator[Any]:
    """One pooled broker producer for several messages (BrokerUnavailable if none can be had)."""
    from jobengine.engine.app import app

    _BREAKER.check()
    try:
        acquired = app.producer_or_acquire()
        handle = acquired.__enter__()
    except Exception as exc:  # kombu/redis/amqp raise many types for one condition
        _BREAKER.down(exc)
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
    from jobengine.engine.app import app

    _BREAKER.check()
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
        _BREAKER.down(exc)
        raise BrokerUnavailable(f"the message broker is unavailable: {exc}") from exc
    _BREAKER.up()


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


class StartMessage(NamedTuple):
    """The message that starts a run of job kind ``slug`` (a named tuple, as ``TaskCall``)."""

    slug: str
    run_id: int
    task_id: str
    labels: dict[str, str]
    eta: datetime | None = None


class PreparedStart(NamedTuple):
    """A start message (and its event) built ahead, as the Redis commands that send it."""

    generation: int  # the app configuration it was built for (engine.app.generation())
    commands: tuple[Command, ...]


def prepare_starts(
    messages: Sequence[StartMessage], sent_at: Sequence[datetime]
) -> list[PreparedStart] | None:
    """Build start messages now to send each at its ``sent_at`` (:func:`send_starts` with
    ``prepared``): the scheduler builds the starts of the fires it stages while it waits for
    their time. Their ``task-sent`` events carry ``sent_at`` as their timestamp (but for the
    first message of a kind in a process, which Celery builds). None when they cannot be built
    ahead (the broker is not plain Redis, or the message needs kombu's path)."""
    from jobengine.engine import app as celery_app

    sender = _redis_sender()
    if sender is None:
        return None
    generation = celery_app.generation()
    try:
        return [
            PreparedStart(generation, tuple(sender.build([_start_call(m, at.timestamp())])))
            for m, at in zip(messages, sent_at, strict=True)
        ]
    except Unsupported:
        return None


def _start_call(m: StartMessage, sent_at: float | None = None) -> TaskCall:
    return TaskCall(
        f"jobengine.{m.slug}.start", m.task_id, {"run_id": m.run_id, **m.labels}, m.eta, sent_at
    )


def send_starts(
    messages: Sequence[StartMessage], prepared: Sequence[PreparedStart | None] | None = None
) -> None:
    """Send start messages, with their ``task-sent`` events, in one broker round trip.

    ``prepared``: the same messages built ahead (:func:`prepare_starts`), in order; sent as they
    are when each was and the app's configuration has not changed since, else built now.

    On plain Redis, :class:`~jobengine.engine.redis_send.RedisSender` pipelines every task message
    and its event (the one Flower shows) into a single round trip, instead of two per message plus
    a new client. Elsewhere (RabbitMQ), and if that fails, the messages go one by one through
    Celery with the retry policy (a message that did reach the broker the first time is then
    sent twice, and the run-once guard makes the copy a no-op). BrokerUnavailable when the
    broker cannot take them.
    """
    if not messages:
        return
    _BREAKER.check()
    if prepared is not None and _send_prepared(prepared, len(messages)):
        return
    calls = [_start_call(m) for m in messages]
    if _send_pipelined(calls):
        return
    with producer() as via:
        for call in calls:
            _send(call.name, call.task_id, call.kwargs, call.eta, via)


def _send_pipelined(calls: list[TaskCall], batch: int | None = None) -> bool:
    """Send ``calls`` through the process's pipelined Redis sender, ``batch`` a round trip (all
    in one by default); False when there is none, it does not cover them or its client failed:
    the caller then sends them the slow, retrying way (a copy of a message already sent is a
    no-op for the run-once guards)."""
    sender = _redis_sender()
    if sender is None:
        return False
    step = batch or len(calls)
    try:
        for start in range(0, len(calls), step):
            sender.send(calls[start : start + step])
    except Unsupported:
        return False
    except Exception as exc:  # the client's own errors
        logger.info("pipelined publish failed (%s); sending the slow, retrying way", exc)
        return False
    _BREAKER.up()
    return True


def _send_prepared(prepared: Sequence[PreparedStart | None], count: int) -> bool:
    """Send messages built ahead in one round trip; False when they are not all there or not
    for this configuration (the caller builds them now), or the client failed (the caller
    sends them the slow way: a copy of a message already sent is a no-op)."""
    from jobengine.engine import app as celery_app

    sender = _redis_sender()
    generation = celery_app.generation()
    if sender is None or len(prepared) != count:
        return False
    commands: list[Command] = []
    for one in prepared:
        if one is None or one.generation != generation:
            return False
        commands.extend(one.commands)
    try:
        sender.execute(commands)
    except Exception as exc:  # the client's own errors
        logger.info("pipelined publish failed (%s); sending the slow, retrying way", exc)
        return False
    _BREAKER.up()
    return True


_SENDER: list[RedisSender | None] = []
_GENERATION = [-1]  # the app configuration (engine.app.generation()) the state above is for


def _follow_configuration() -> None:
    """Forget the pipelined sender and any refusal once the app was configured again."""
    from jobengine.engine import app as celery_app  # not at import: Celery loads on first send

    if _GENERATION[0] != celery_app.generation():
        reset_sender()
        _GENERATION[0] = celery_app.generation()


def _redis_sender() -> RedisSender | None:
    """The process's pipelined Redis sender, or None when the broker is not plain Redis."""
    _follow_configuration()
    if not _SENDER:
        from jobengine.engine.app import app

        _SENDER.append(RedisSender(app) if RedisSender.supports(app) else None)
    return _SENDER[0]


def reset_sender() -> None:
    """Forget the pipelined sender and any refusal (after the broker configuration changed)."""
    if _SENDER and _SENDER[0] is not None:
        _SENDER[0].reset()
    _SENDER.clear()
    _BREAKER.up()


# Messages per pipelined round trip: a run of 10,000 items is not one 10 MB pipeline.
ITEM_BATCH = 200
# A run's items go in chunks small enough to make at least this many messages (when it has
# that many items): enough for the children of a fleet to share them, each a few items long.
ITEM_SPREAD = 32


def item_chunks(items: Sequence[tuple[int, str]], most: int) -> list[list[tuple[int, str]]]:
    """``items`` cut into the chunks their messages carry: at most ``most`` items each, fewer
    while that leaves under :data:`ITEM_SPREAD` messages, in order."""
    size = max(1, min(most, -(-len(items) // ITEM_SPREAD)))
    return [list(items[n : n + size]) for n in range(0, len(items), size)]


def item_kwargs(
    run_id: int, chunk: Sequence[tuple[int, str]], labels: dict[str, str]
) -> dict[str, Any]:
    """The arguments of the message of a chunk of items: its first ``seq`` and ``item`` (the
    asset handle, for Flower), and with more than one item, every ``seq`` in ``seqs``."""
    seq, key = chunk[0]
    if len(chunk) == 1:
        return {"run_id": run_id, "seq": seq, "item": key, **labels}
    return {"run_id": run_id, "seq": seq, "item": key, "seqs": [s for s, _ in chunk], **labels}


def send_items(
    slug: str,
    run_id: int,
    task_id: str,
    items: list[tuple[int, str]],
    labels: dict[str, str],
    *,
    chunk: int | None = None,
) -> None:
    """Send the items ``(seq, key)`` of a run, ``chunk`` items a message at most (default
    ``JOBENGINE_ITEM_CHUNK``; see :func:`item_chunks`).

    A chunk's message is ``jobengine.<slug>.item`` with the ``seqs`` it carries (a chunk of one
    is a message as it always was), task id ``<run task id>-<first seq>``; the task does them
    in order, each behind its own run-once guard, so that a worker child works through a
    chunk without waiting, item after item, for the worker's main process to fetch, hand over,
    acknowledge and report a message of its own (with one child per core that wait was about
    half of a small item's time).

    On plain Redis they go as :func:`send_starts` sends start messages: pipelined, with their
    ``task-sent`` events, :data:`ITEM_BATCH` messages a round trip, so that the first items
    reach a second worker child at once. Elsewhere, and if that fails, as one Celery group with
    the retry policy (messages already sent are then sent again; the items' run-once guards
    make the copies no-ops). The items join in ``jobengine.<slug>.finish`` through the run's
    counter in the store, not through a chord: a redelivered member would be counted twice by
    a chord.
    """
    if not items:
        return
    name = f"jobengine.{slug}.item"
    _BREAKER.check()
    chunks = item_chunks(items, chunk or get_settings().item_chunk)
    calls = [
        TaskCall(name, f"{task_id}-{part[0][0]}", item_kwargs(run_id, part, labels))
        for part in chunks
    ]
    if _send_pipelined(calls, ITEM_BATCH):
        return
    _send_group(name, run_id, task_id, chunks, labels)


def _send_group(
    name: str,
    run_id: int,
    task_id: str,
    chunks: list[list[tuple[int, str]]],
    labels: dict[str, str],
) -> None:
    """The chunks of items as one Celery group (one producer connection), retrying."""
    from celery import group

    from jobengine.engine.app import app

    members = [
        app.signature(name, kwargs=item_kwargs(run_id, part, labels),
                      task_id=f"{task_id}-{part[0][0]}", ignore_result=True)
        for part in chunks
    ]  # fmt: skip
    try:
        group(members).apply_async(retry=True, retry_policy=_RETRY)
    except Exception as exc:  # kombu/redis/amqp raise many types for one condition
        count = sum(len(part) for part in chunks)
        logger.warning("could not send %d items of run %s: %s", count, run_id, exc)
        _BREAKER.down(exc)
        raise BrokerUnavailable(f"the message broker is unavailable: {exc}") from exc
    _BREAKER.up()


def send_finish(slug: str, run_id: int, task_id: str, labels: dict[str, str]) -> None:
    """Send the message that joins a run's items and writes its job log."""
    _send(f"jobengine.{slug}.finish", f"{task_id}-finish", {"run_id": run_id, **labels})


# kombu's Redis transport keeps priority messages in sibling lists: "<queue>\x06\x16<priority>".
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def queue_depths(settings: Settings, queues: Sequence[str]) -> dict[str, int] | None:
    """Messages waiting in each of ``queues`` (all priority lists), in one round trip; None when
    the broker is not Redis or does not answer within two seconds."""
    import redis

    from jobengine.embedded import redis_url

    url = settings.broker_url
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        return None  # AMQP and other brokers: ask the broker's own tooling
    client = redis.Redis.from_url(
        url or redis_url(settings), socket_timeout=2, socket_connect_timeout=2
    )
    lists = [q for q in queues for _ in range(1 + len(_PRIORITY_STEPS))]
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for key in (queue, *(f"{queue}{_PRIORITY_SEP}{p}" for p in _PRIORITY_STEPS)):
                pipe.llen(key)
        depths = dict.fromkeys(queues, 0)
        for queue, n in zip(lists, pipe.execute(), strict=True):
            depths[queue] += int(n)
        return depths
    finally:
        client.close()
