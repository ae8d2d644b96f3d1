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

**Message templates.** Building a message in ``send_task`` (routing, headers, the ``saferepr``
of the arguments, the event) costs about half a millisecond, the same for every start of a kind.
So the first call of each kind (task name, with or without an ETA) goes through ``send_task`` as
above, and what Celery built is kept as a :class:`_Template`; the next calls of that kind copy it
and set only what differs from call to call, as ``send_task`` and Celery's event dispatcher would
have: the task id (``id``, ``root_id``, ``correlation_id``, the event's ``uuid`` and ``root_id``),
the keyword arguments and their ``kwargsrepr`` (Celery's own ``saferepr``), the ETA, the
per-thread ``reply_to``, and the event's ``clock`` (the app's clock, forwarded), ``utcoffset`` and
``timestamp``. Learning checks that Celery's message is what the template assumes (ids where
expected, no parent, no expiry, no per-call time); a kind that does not pass is always built by
Celery. Templates are not used (Celery builds every message) inside a worker task (``send_task``
would set parent ids and the parent's trail), while anything listens to the publish signals, for
a router that may look at the arguments (a function rather than a mapping), or for task protocol
1. ``tests/engine/test_hot_path.py`` compares templated messages with Celery's for the same calls.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import signals
from celery.app.routes import MapRoute
from celery.utils.saferepr import saferepr
from celery.utils.time import utcoffset
from kombu.entity import maybe_delivery_mode
from kombu.serialization import dumps
from kombu.utils.json import dumps as json_dumps

__all__ = ["Command", "RedisSender", "TaskCall", "Unsupported", "kwargs_repr"]


class Unsupported(Exception):
    """This message needs kombu's own publish path."""


@dataclass(frozen=True, slots=True)
class TaskCall:
    """One ``send_task``: a task name, its id, its keyword arguments and an optional ETA."""

    name: str
    task_id: str
    kwargs: dict[str, Any]
    eta: datetime | None = None
    sent_at: float | None = None  # built ahead: when it is to be sent (its event's timestamp)


@dataclass
class _Recorder:
    """Stands in for kombu's Producer inside Celery's send path: records each publish."""

    connection: Any
    published: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)

    def publish(self, body: Any, **kwargs: Any) -> None:
        self.published.append((body, kwargs))


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "\\'") + "'"


def kwargs_repr(kwargs: dict[str, Any], maxlen: int | None, maxlevels: int) -> str:
    """Celery's ``saferepr(kwargs, maxlen, maxlevels=maxlevels)``, quickly for the flat case.

    For a dict of ``str`` keys and ``str`` or ``int`` values whose representation is shorter than
    ``maxlen``, Celery's streaming repr writes ``{'key': 'value', 'n': 1}``: strings in single
    quotes with only ``'`` escaped (not Python's ``repr``), numbers by ``str``, nothing truncated.
    Anything else goes to Celery's own function.
    """
    if maxlevels < 0 or not all(
        type(k) is str and type(v) in (str, int) for k, v in kwargs.items()
    ):
        return str(saferepr(kwargs, maxlen, maxlevels=maxlevels))
    text = (
        "{"
        + ", ".join(
            f"{_quoted(k)}: {_quoted(v) if type(v) is str else v}" for k, v in kwargs.items()
        )
        + "}"
    )
    if maxlen is not None and len(text) >= maxlen:  # Celery cuts it short: let it
        return str(saferepr(kwargs, maxlen, maxlevels=maxlevels))
    return text


_Publish = tuple[Any, dict[str, Any]]  # what Celery hands Producer.publish: body, keywords
Command = tuple[str, str, str]  # a Redis command kombu would issue: verb, key, payload


@dataclass(frozen=True, slots=True)
class _Template:
    """One kind's message (and ``task-sent`` event) as Celery built it for a first call."""

    task_body: tuple[Any, ...]
    task_kw: dict[str, Any]
    event_body: dict[str, Any] | None
    event_kw: dict[str, Any] | None
    kwargsrepr_maxsize: int
    repr_maxlevels: int

    @classmethod
    def learn(cls, app: Any, call: TaskCall, published: list[_Publish]) -> _Template | None:
        """The template of ``call``'s kind from what Celery published for it, or None when the
        message is not what a template can reproduce (Celery builds that kind every time)."""
        if len(published) not in (1, 2):
            return None
        (body, kw), event = published[0], published[1] if len(published) == 2 else None
        maxsize, maxlevels = app.amqp.kwargsrepr_maxsize, app.conf.task_repr_maxlevels
        eta = call.eta.isoformat() if call.eta else None
        headers = kw.get("headers") or {}
        expected = {
            "id": call.task_id,
            "root_id": call.task_id,
            "parent_id": None,
            "eta": eta,
            "expires": None,
            "argsrepr": saferepr((), app.amqp.argsrepr_maxsize, maxlevels=maxlevels),
            "kwargsrepr": saferepr(call.kwargs, maxsize, maxlevels=maxlevels),
        }
        if (
            not isinstance(body, tuple)
            or len(body) != 3
            or body[0] != ()
            or body[1] != call.kwargs
            or any(headers.get(k, ...) != v for k, v in expected.items())
            or kw.get("correlation_id") != call.task_id
            or "reply_to" not in kw
            or "expiration" in kw
        ):
            return None
        if event is not None:
            fields = event[0]
            expected_event = {
                "uuid": call.task_id,
                "root_id": call.task_id,
                "parent_id": None,
                "args": expected["argsrepr"],
                "kwargs": expected["kwargsrepr"],
                "eta": eta,
                "expires": None,
                "type": "task-sent",
            }
            if not isinstance(fields, dict) or any(
                fields.get(k, ...) != v for k, v in expected_event.items()
            ):
                return None
            if not {"clock", "utcoffset", "timestamp"} <= fields.keys():
                return None
        return cls(
            body,
            kw,
            event[0] if event else None,
            event[1] if event else None,
            maxsize,
            maxlevels,
        )

    def fill(self, app: Any, call: TaskCall, reply_to: str, offset: float) -> list[_Publish]:
        """What Celery would publish for ``call``: the template with this call's values."""
        task_id = call.task_id
        eta = call.eta.isoformat() if call.eta else None
        kwargsrepr = kwargs_repr(call.kwargs, self.kwargsrepr_maxsize, self.repr_maxlevels)
        headers = dict(self.task_kw["headers"])
        headers.update(id=task_id, root_id=task_id, eta=eta, kwargsrepr=kwargsrepr)
        kw = dict(self.task_kw)
        kw.update(headers=headers, correlation_id=task_id, reply_to=reply_to)
        out: list[_Publish] = [((self.task_body[0], call.kwargs, self.task_body[2]), kw)]
        if self.event_body is not None and self.event_kw is not None:
            event = dict(self.event_body)
            event.update(
                clock=app.clock.forward(),
                utcoffset=offset,
                uuid=task_id,
                root_id=task_id,
                kwargs=kwargsrepr,
                eta=eta,
                timestamp=time.time() if call.sent_at is None else call.sent_at,
            )
            out.append((event, self.event_kw))
        return out


class RedisSender:
    """Sends Celery task calls (and their sent events) in one Redis round trip per batch."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._pid = 0
        self._conn: Any = None
        self._channel: Any = None
        self._client: Any = None
        self._templates: dict[tuple[str, bool], _Template | None] = {}
        # read once: Celery's configuration lookups cost microseconds each, per message
        self._serializer = str(app.conf.task_serializer)
        self._event_exchange = str(app.conf.event_exchange)

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
                    if self._pid != pid:
                        self._templates = {}  # they hold the process's id (origin, event pid)
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
        self.execute(self.build(calls))

    def build(self, calls: Sequence[TaskCall]) -> list[Command]:
        """The Redis commands that send the calls (to send now, or later with :meth:`execute`:
        the scheduler builds the starts of fires it staged ahead). Unsupported: use kombu's."""
        channel, _ = self._channel_and_client()
        commands: list[Command] = []
        templating = self._templating()
        reply_to, offset = (self._app.thread_oid, utcoffset()) if templating else ("", 0.0)
        for call in calls:
            kind = (call.name, call.eta is None)
            template = self._templates.get(kind) if templating else None
            if template is not None:
                published = template.fill(self._app, call, reply_to, offset)
            else:
                published = self._celery_built(call)
                if templating and kind not in self._templates:
                    self._templates[kind] = _Template.learn(self._app, call, published)
            commands.extend(self._command(channel, body, kw) for body, kw in published)
        return commands

    def execute(self, commands: Sequence[Command]) -> None:
        """Issue built commands in one pipeline."""
        _, client = self._channel_and_client()
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

    def _celery_built(self, call: TaskCall) -> list[_Publish]:
        """What ``send_task`` publishes for ``call`` (the message, then its event)."""
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
        return recorder.published

    def _templating(self) -> bool:
        """Whether templates may stand in for ``send_task`` now (see the module's notes)."""
        app = self._app
        return (
            app.current_worker_task is None
            and int(app.conf.task_protocol) == 2
            and not (
                signals.before_task_publish.receivers
                or signals.after_task_publish.receivers
                or signals.task_sent.receivers
            )
            and all(isinstance(route, MapRoute) for route in app.amqp.router.routes)
        )

    def _command(self, channel: Any, body: Any, kw: dict[str, Any]) -> Command:
        """The Redis command kombu's Producer.publish and Redis channel would issue."""
        kw = dict(kw)
        exchange = kw.pop("exchange", "") or ""
        exchange = getattr(exchange, "name", exchange)
        routing_key = kw.pop("routing_key", None) or ""
        priority = kw.pop("priority", 0) or 0
        if priority or kw.pop("compression", None) or kw.get("content_type"):
            raise Unsupported("priority, compression or a preset content type")
        serializer = kw.pop("serializer", None) or self._serializer
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
        if exchange == self._event_exchange:
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
