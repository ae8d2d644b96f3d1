"""Task messages onto kombu's Redis queues in one pipelined round trip.

Celery's ``send_task`` with ``task_send_sent_event`` costs two broker round trips per message
(the task, then the ``task-sent`` event that Flower shows), and kombu makes a new Redis client
for each. On the submit hot path that is most of the time a producer waits.

:class:`RedisSender` keeps all of Celery's message building: it calls ``app.send_task`` with a
stand-in producer that records the two ``publish()`` calls Celery makes (the task message, then
the event, which Celery's event dispatcher documents as the only producer method it uses). It
then writes exactly what kombu's Redis transport would write, built with kombu's own serializer
and channel helpers (``prepare_message``, ``encode_body``), through one non-transactional
pipeline on a client kept for the life of the process: ``LPUSH`` to the queue, ``PUBLISH`` to
the event topic. ``tests/engine/test_hot_path.py`` compares both envelopes with kombu's, field by
field, so a kombu change that alters the wire format fails there.

What it does not cover falls back to the normal path (:class:`Unsupported`): brokers other than
plain Redis, a global key prefix, priorities, compression, exchanges other than the default
(direct, by queue name) and the event exchange.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kombu.entity import maybe_delivery_mode
from kombu.serialization import dumps
from kombu.utils.json import dumps as json_dumps

__all__ = ["RedisSender", "TaskCall", "Unsupported"]


class Unsupported(Exception):
    """This message needs kombu's own publish path."""


@dataclass(frozen=True, slots=True)
class TaskCall:
    """One ``send_task``: a task name, its id, its keyword arguments and an optional ETA."""

    name: str
    task_id: str
    kwargs: dict[str, Any]
    eta: datetime | None = None


@dataclass
class _Recorder:
    """Stands in for kombu's Producer inside Celery's send path: records each publish."""

    connection: Any
    published: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)

    def publish(self, body: Any, **kwargs: Any) -> None:
        self.published.append((body, kwargs))


class RedisSender:
    """Sends Celery task calls (and their sent events) in one Redis round trip per batch."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._pid = 0
        self._conn: Any = None
        self._channel: Any = None
        self._client: Any = None

    @staticmethod
    def supports(app: Any) -> bool:
        """Whether the app's broker is plain Redis (no sentinel, no global key prefix)."""
        url = str(app.conf.broker_url or "")
        options = app.conf.broker_transport_options or {}
        scheme = url.split("://", 1)[0]
        return scheme in ("redis", "rediss", "redis+socket") and not options.get("global_keyprefix")

    def _channel_and_client(self) -> tuple[Any, Any]:
        pid = os.getpid()
        if self._pid != pid or self._client is None:  # new process (fork) or after an error
            with self._lock:
                if self._pid != pid or self._client is None:
                    conn = self._app.connection_for_write()
                    channel = conn.default_channel
                    self._conn, self._channel = conn, channel
                    self._client = channel.client  # kombu's client on its pool (formats prefix)
                    self._pid = pid
        return self._channel, self._client

    def reset(self) -> None:
        """Forget the connection (after an error); the next send makes a new one."""
        with self._lock:
            conn, self._conn, self._channel, self._client = self._conn, None, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                conn.release()

    def send(self, calls: Sequence[TaskCall]) -> None:
        """Send the calls in one pipeline. Unsupported: nothing was sent, use kombu's path."""
        channel, client = self._channel_and_client()
        commands: list[tuple[str, str, str]] = []
        for call in calls:
            recorder = _Recorder(self._conn)
            self._app.send_task(
                call.name,
                kwargs=call.kwargs,
                task_id=call.task_id,
                eta=call.eta,
                retry=False,
                ignore_result=True,
                producer=recorder,
            )
            commands.extend(self._command(channel, body, kw) for body, kw in recorder.published)
        pipe = client.pipeline(transaction=False)
        for verb, key, payload in commands:
            if verb == "lpush":
                pipe.lpush(key, payload)
            else:
                pipe.publish(key, payload)
        try:
            pipe.execute()
        except Exception:
            self.reset()
            raise

    def _command(self, channel: Any, body: Any, kw: dict[str, Any]) -> tuple[str, str, str]:
        """The Redis command kombu's Producer.publish and Redis channel would issue."""
        kw = dict(kw)
        exchange = kw.pop("exchange", "") or ""
        exchange = getattr(exchange, "name", exchange)
        routing_key = kw.pop("routing_key", None) or ""
        priority = kw.pop("priority", 0) or 0
        if priority or kw.pop("compression", None) or kw.get("content_type"):
            raise Unsupported("priority, compression or a preset content type")
        serializer = kw.pop("serializer", None) or self._app.conf.task_serializer
        headers = kw.pop("headers", None) or {}
        delivery_mode = maybe_delivery_mode(kw.pop("delivery_mode", None))  # type: ignore[no-untyped-call]
        expiration = kw.pop("expiration", None)
        for ignored in (
            "retry", "retry_policy", "declare", "timeout", "confirm_timeout", "mandatory",
            "immediate", "content_encoding",
        ):  # fmt: skip
            kw.pop(ignored, None)
        properties: dict[str, Any] = dict(kw)
        properties["delivery_mode"] = delivery_mode
        if expiration is not None:
            properties["expiration"] = str(int(expiration * 1000))
        content_type, content_encoding, data = dumps(body, serializer=serializer)  # type: ignore[no-untyped-call]
        message = channel.prepare_message(
            data, priority, content_type, content_encoding, headers, properties
        )
        message["body"], body_encoding = channel.encode_body(message["body"], channel.body_encoding)
        message["properties"].update(body_encoding=body_encoding, delivery_tag=str(uuid.uuid4()))
        message["properties"]["delivery_info"].update(exchange=exchange, routing_key=routing_key)
        payload = _json(message)
        if exchange == "":
            return "lpush", routing_key, payload  # the default exchange: straight to the queue
        if exchange == self._app.conf.event_exchange:
            return "publish", _topic(channel, exchange, routing_key), payload
        raise Unsupported(f"exchange {exchange!r}")


def _topic(channel: Any, exchange: str, routing_key: str) -> str:
    """kombu's Redis fanout topic (``/{db}.celeryev/task.sent`` with the default options)."""
    prefix = str(channel.keyprefix_fanout)
    if routing_key and channel.fanout_patterns:
        return f"{prefix}{exchange}/{routing_key}"
    return f"{prefix}{exchange}"


def _json(message: dict[str, Any]) -> str:
    return str(json_dumps(message))  # type: ignore[no-untyped-call]  # as kombu's transport does
