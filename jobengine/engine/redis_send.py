"""Task messages onto kombu's Redis queues in one pipelined round trip.

Celery's ``send_task`` with ``task_send_sent_event`` costs two broker round trips per message
(the task, then the ``task-sent`` event that Flower shows), and kombu makes a new Redis client
for each. On the submit hot path that is most of the time a producer waits.

:class:`RedisSender` keeps all of Celery's message building: it calls ``app.send_task`` with a
stand-in producer that records the two ``publish()`` calls Celery makes (the task message, then
the event, which Celery's event dispatcher documents as the only producer method it uses). It
then writes exactly what kombu's Redis transport would write, built with kombu's own serializer
and channel helpers (``prepare_message``, ``encode_body``), as one request of several
commands on a connection of kombu's client, kept for the life of the process (``LPUSH`` to the
queue, ``PUBLISH`` to the event topic; :func:`_pipelined`). ``tests/engine/test_hot_path.py``
compares both envelopes with kombu's, field by field, so a kombu change that alters the wire
format fails there.

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

**Text templates and one command per queue.** A template also keeps its task message as the
text kombu pushes (:class:`_Text`): the envelope's JSON with slots for what differs per call,
and the body's JSON as a fixed head and tail around the call's kwargs. A message is then a
join of the text's pieces with the call's values (:class:`_Form`) and a base64, instead of
kombu's copying and two ``json.dumps`` of the whole envelope (one for the body, one for the
envelope). A text is kept only if rendering the call it
was learned from gives kombu's text back byte for byte. A batch's messages go as one ``LPUSH``
per queue, and their ``task-sent`` events as publishes of a list (``task.multi``, 500 events
at most), as Celery's event dispatcher sends a buffered group and its ``EventReceiver``
(Flower) reads it. The event of a templated call is rendered from a text too (``_EventText``),
and so is the envelope of a publish of events once one with the same options was built by
kombu's path (:func:`_envelope_form`).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from celery import signals
from celery.app.routes import MapRoute
from celery.utils.saferepr import saferepr
from celery.utils.time import utcoffset
from kombu.entity import maybe_delivery_mode
from kombu.serialization import dumps
from kombu.utils.json import JSONEncoder
from kombu.utils.json import dumps as json_dumps
from redis.exceptions import ResponseError

from jobengine.handles import uuid4_texts

__all__ = ["Command", "RedisSender", "TaskCall", "Unsupported", "kwargs_repr", "kwargs_texts"]


class Unsupported(Exception):
    """This message needs kombu's own publish path."""


class TaskCall(NamedTuple):
    """One ``send_task``: a task name, its id, its keyword arguments and an optional ETA (a
    named tuple: a bulk send makes one a job, and a frozen dataclass's ``__init__`` costs four
    times as much)."""

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
            [
                "'" + k.replace("'", "\\'") + "': "
                + ("'" + v.replace("'", "\\'") + "'" if type(v) is str else str(v))
                for k, v in kwargs.items()
            ]
        )
        + "}"
    )  # fmt: skip
    if maxlen is not None and len(text) >= maxlen:  # Celery cuts it short: let it
        return str(saferepr(kwargs, maxlen, maxlevels=maxlevels))
    return text


# A key's JSON and repr, each with its separator, by key (the few keys task kwargs use)
_KEY_TEXTS: dict[str, tuple[str, str]] = {}
_KEY_TEXTS_KEPT = 256


def kwargs_texts(kwargs: dict[str, Any], maxlen: int | None, maxlevels: int) -> tuple[str, str]:
    """kombu's JSON of ``kwargs`` (as it writes them in a message body) and Celery's
    ``saferepr(kwargs, maxlen, maxlevels=maxlevels)`` (:func:`kwargs_repr`), in one pass for the
    flat case: ``str`` keys, ``str`` or ``int`` values or lists of ``int`` (a chunk's ``seqs``,
    which saferepr writes ``[...]`` at ``maxlevels`` 1), the repr shorter than ``maxlen``. JSON
    writes such a dict ``{"key": "value", "n": 1, "l": [1, 2]}``, strings ASCII-escaped,
    separators ``", "`` and ``": "``. Anything else goes to kombu's encoder and Celery's
    function."""
    if maxlevels >= 0:
        json_items: list[str] = []
        repr_items: list[str] = []
        for key, value in kwargs.items():
            written = _KEY_TEXTS.get(key) if type(key) is str else None
            if written is None:
                if type(key) is not str:
                    break
                quoted = "'" + key.replace("'", "\\'") + "': "
                written = (encode_basestring_ascii(key) + ": ", quoted)
                if len(_KEY_TEXTS) < _KEY_TEXTS_KEPT:
                    _KEY_TEXTS[key] = written
            kind = type(value)
            if kind is str:
                json_items.append(written[0] + encode_basestring_ascii(value))
                repr_items.append(written[1] + "'" + value.replace("'", "\\'") + "'")
            elif kind is int:
                number = int.__repr__(value)
                json_items.append(written[0] + number)
                repr_items.append(written[1] + number)
            elif kind is list and maxlevels != 1 and all(type(v) is int for v in value):
                numbers = "[" + ", ".join(map(int.__repr__, value)) + "]"  # a chunk's seqs
                json_items.append(written[0] + numbers)
                repr_items.append(written[1] + numbers)
            else:
                break
        else:
            text = "{" + ", ".join(repr_items) + "}"
            if maxlen is None or len(text) < maxlen:
                return "{" + ", ".join(json_items) + "}", text
    return _KWARGS_JSON(kwargs), str(saferepr(kwargs, maxlen, maxlevels=maxlevels))


# A slot of a text template: a JSON string holding "\x00<name>\x00" (json escapes the NULs).
_SLOT = re.compile(r'"\\u0000(\w+)\\u0000"')
_KWARGS_JSON = JSONEncoder().encode  # what kombu's json.dumps(kwargs) calls


def _slot(name: str) -> str:
    return f"\x00{name}\x00"


class _Form:
    """A JSON text with slots (see :data:`_SLOT`), rendered by joining its fixed pieces with
    each call's values: a ``str.format`` of the same text parses the whole text again for every
    call (about 3.5 us for a task message, against 0.9)."""

    __slots__ = ("names", "parts", "positions")

    def __init__(self, text: str, names: tuple[str, ...]) -> None:
        """``text``: the JSON with slots, each one of ``names`` (ValueError for another)."""
        pieces = _SLOT.split(text)
        slots = pieces[1::2]
        if not set(slots) <= set(names):
            raise ValueError(f"slots {sorted(set(slots) - set(names))} are not {names}")
        self.names = names
        # the pieces, a None where each slot goes; the positions of each name's slot(s)
        self.parts: list[str | None] = [p if n % 2 == 0 else None for n, p in enumerate(pieces)]
        self.positions = tuple(
            tuple(n for n, p in enumerate(pieces) if n % 2 == 1 and p == name) for name in names
        )

    def slots(self) -> set[str]:
        """The names of the slots the text holds."""
        return {name for name, at in zip(self.names, self.positions, strict=True) if at}

    def render(self, values: Sequence[str]) -> str:
        """The text with each slot replaced by the value of its name (in :attr:`names` order)."""
        parts = self.parts.copy()
        for at, value in zip(self.positions, values, strict=True):
            for n in at:
                parts[n] = value
        return "".join(parts)  # type: ignore[arg-type]  # every None was replaced


def _token(value: str | None) -> str:
    """A value as json writes it in kombu's envelope (ASCII-escaped string, or null)."""
    return "null" if value is None else encode_basestring_ascii(value)


_TEXT_SLOTS = ("task_id", "eta", "kwargsrepr", "reply_to", "tag", "body")  # _Text.form's names


@dataclass(frozen=True, slots=True)
class _Text:
    """One kind's task message as the text kombu's Redis transport pushes, with the parts that
    differ per call left as slots: the task id (``id``, ``root_id``, ``correlation_id``), the
    ETA, ``kwargsrepr``, ``reply_to``, the delivery tag and the base64 body, whose JSON is the
    call's kwargs between a fixed head and tail. Rendering one is a join of the text's pieces
    with these (:class:`_Form`) and a base64 of the body, instead of two ``json.dumps`` of the
    whole envelope and kombu's copying.

    Learned from a message kombu's path built (:meth:`learn`), and kept only if rendering that
    same call gives back kombu's text byte for byte.
    """

    key: str  # the queue (kombu's LPUSH key)
    form: _Form  # the envelope's text, with the slots of _TEXT_SLOTS
    body_head: str
    body_tail: str

    @classmethod
    def learn(
        cls, key: str, message: dict[str, Any], body: tuple[Any, ...], call: TaskCall
    ) -> _Text | None:
        """The text template of ``message`` (kombu's envelope for ``call``, its body already
        encoded), or None when it is not one a template reproduces exactly."""
        properties = message["properties"]
        if (
            properties.get("body_encoding") != "base64"
            or message.get("content-type") != "application/json"
            or message.get("content-encoding") != "utf-8"
        ):
            return None
        marked_body = str(json_dumps((body[0], _slot("kwargs"), body[2])))  # type: ignore[no-untyped-call]
        head, sep, tail = marked_body.partition('"\\u0000kwargs\\u0000"')
        if not sep:
            return None
        marked = dict(message, body=_slot("body"))
        marked["headers"] = dict(
            message["headers"],
            id=_slot("task_id"),
            root_id=_slot("task_id"),
            eta=_slot("eta"),
            kwargsrepr=_slot("kwargsrepr"),
        )
        marked["properties"] = dict(
            properties,
            correlation_id=_slot("task_id"),
            reply_to=_slot("reply_to"),
            delivery_tag=_slot("tag"),
        )
        try:
            text = cls(key, _Form(_json(marked), _TEXT_SLOTS), head, tail)
        except ValueError:  # a slot of another name
            return None
        headers = message["headers"]
        again = text.render(
            call.task_id, _KWARGS_JSON(call.kwargs), kwargsrepr=str(headers["kwargsrepr"]),
            eta=headers["eta"], reply_to=str(properties["reply_to"]),
            tag=str(properties["delivery_tag"]),
        )  # fmt: skip
        return text if again == _json(message) else None

    def render(
        self, task_id: str, kwargs_json: str, *, kwargsrepr: str, eta: str | None, reply_to: str,
        tag: str,
    ) -> str:  # fmt: skip
        """The payload of one call."""
        return self.rendered(
            _token(task_id), kwargs_json, kwargsrepr=_token(kwargsrepr), eta=_token(eta),
            reply_to=_token(reply_to), tag=_token(tag),
        )  # fmt: skip

    def rendered(
        self, task_id: str, kwargs_json: str, *, kwargsrepr: str, eta: str, reply_to: str,
        tag: str,
    ) -> str:  # fmt: skip
        """:meth:`render` of values already written as JSON (:func:`_token`): a batch writes
        those that are the same for every call (``reply_to``, no ETA) once."""
        body = (self.body_head + kwargs_json + self.body_tail).encode()
        encoded = '"' + base64.b64encode(body).decode() + '"'
        return self.form.render((task_id, eta, kwargsrepr, reply_to, tag, encoded))


_EVENT_SLOTS = ("clock", "utcoffset", "task_id", "kwargsrepr", "eta", "timestamp")


def _number(value: float) -> str:
    """A number as json writes it (``int.__repr__``, ``float.__repr__``)."""
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and value - value == 0:  # finite
        return float.__repr__(value)
    raise Unsupported(f"not a plain number: {value!r}")


@dataclass(frozen=True, slots=True)
class _EventText:
    """One kind's ``task-sent`` event as the JSON text kombu would serialize it, with slots for
    what differs per call (the clock, the UTC offset, the task id as ``uuid`` and ``root_id``,
    the kwargs repr, the ETA and the timestamp); kept only if rendering the event it was
    learned from gives kombu's text back."""

    form: _Form

    @classmethod
    def learn(cls, event: dict[str, Any]) -> _EventText | None:
        if event.get("uuid") != event.get("root_id"):
            return None
        marked = dict(
            event,
            clock=_slot("clock"),
            utcoffset=_slot("utcoffset"),
            uuid=_slot("task_id"),
            root_id=_slot("task_id"),
            kwargs=_slot("kwargsrepr"),
            eta=_slot("eta"),
            timestamp=_slot("timestamp"),
        )
        try:
            form = _Form(str(json_dumps(marked)), _EVENT_SLOTS)  # type: ignore[no-untyped-call]
        except ValueError:  # a slot of another name
            return None
        if form.slots() != set(_EVENT_SLOTS):
            return None
        learned = cls(form)
        try:
            again = learned.render(
                event["clock"], event["utcoffset"], str(event["uuid"]),
                kwargsrepr=str(event["kwargs"]), eta=event["eta"], timestamp=event["timestamp"],
            )  # fmt: skip
        except (Unsupported, TypeError):
            return None
        return learned if again == json_dumps(event) else None  # type: ignore[no-untyped-call]

    def render(
        self, clock: int, utcoffset: float, task_id: str, *, kwargsrepr: str, eta: str | None,
        timestamp: float,
    ) -> str:  # fmt: skip
        """The event's JSON for one call."""
        return self.form.render(
            (_number(clock), _number(utcoffset), _token(task_id), _token(kwargsrepr), _token(eta),
             _number(timestamp))
        )  # fmt: skip


_Publish = tuple[Any, dict[str, Any]]  # what Celery hands Producer.publish: body, keywords
# One built send: ("lpush", queue key, message text), or ("event", group, (publish options,
# the event's fields or JSON)); RedisSender.execute pipelines them, events grouped.
Command = tuple[str, str, Any]


@dataclass(frozen=True, slots=True)
class _Template:
    """One kind's message (and ``task-sent`` event) as Celery built it for a first call."""

    task_body: tuple[Any, ...]
    task_kw: dict[str, Any]
    event_body: dict[str, Any] | None
    event_kw: dict[str, Any] | None
    kwargsrepr_maxsize: int
    repr_maxlevels: int
    text: _Text | None = None  # the task message's payload as text, when it could be learned
    event_text: _EventText | None = None  # its event's JSON as text, likewise
    event_group: str = ""  # events published with the same options go out together

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
        if self.event_kw is not None:
            out.append((self.event(app, call, offset, kwargsrepr, eta), self.event_kw))
        return out

    def event(
        self, app: Any, call: TaskCall, offset: float, kwargsrepr: str, eta: str | None
    ) -> dict[str, Any]:
        """The fields of ``call``'s ``task-sent`` event, as Celery's dispatcher makes them."""
        event = dict(self.event_body or ())
        event.update(
            clock=app.clock.forward(),
            utcoffset=offset,
            uuid=call.task_id,
            root_id=call.task_id,
            kwargs=kwargsrepr,
            eta=eta,
            timestamp=time.time() if call.sent_at is None else call.sent_at,
        )
        return event


# Events a publish carries at most: a batch of 10,000 jobs is not one 6 MB message for every
# event receiver (Flower) to read at once.
EVENTS_PER_PUBLISH = 500

# Events to publish, by publish options: the options and the events (fields, or their JSON)
_EventGroups = dict[str, tuple[dict[str, Any], list[dict[str, Any] | str]]]


class _BatchTokens:
    """What the templated calls of one :meth:`RedisSender.build` share, written as JSON once:
    the thread's ``reply_to``, the UTC offset (made at the first event that needs it: a value
    json would not write plainly is Unsupported there, as before) and the delivery tags, drawn
    for the whole batch at once."""

    __slots__ = ("_offset", "_tags", "reply_to", "utcoffset")

    def __init__(self, reply_to: str, utcoffset: float, calls: int) -> None:
        self.reply_to = encode_basestring_ascii(reply_to)
        self.utcoffset = utcoffset
        self._offset: str | None = None
        self._tags = iter(uuid4_texts(calls))

    def offset(self) -> str:
        if self._offset is None:
            self._offset = _number(self.utcoffset)
        return self._offset

    def tag(self) -> str:
        """A fresh delivery tag (a uuid4's text, as kombu's), as JSON."""
        return '"' + next(self._tags) + '"'


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
        # an event publish's topic and envelope text (slots: body, tag), by its options
        self._event_envelopes: dict[tuple[str, str], tuple[str, _Form | None]] = {}
        # read once: Celery's configuration lookups cost microseconds each, per message (a
        # sender is made again when the app is configured again: see dispatch._redis_sender)
        self._serializer = str(app.conf.task_serializer)
        self._event_exchange = str(app.conf.event_exchange)
        self._protocol = int(app.conf.task_protocol)

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
                        self._event_envelopes = {}
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
        """The Redis commands that send the calls, to issue now or later with :meth:`execute`
        (the scheduler builds the starts of the fires it staged ahead). Unsupported: use
        kombu's path."""
        channel, _ = self._channel_and_client()
        commands: list[Command] = []
        templating = self._templating()
        reply_to, offset = (self._app.thread_oid, utcoffset()) if templating else ("", 0.0)
        batch = _BatchTokens(reply_to, offset, len(calls))
        for call in calls:
            kind = (call.name, call.eta is None)
            template = self._templates.get(kind) if templating else None
            if template is not None and template.text is not None:
                self._render(template, template.text, call, batch, commands)
                continue
            if template is not None:
                published = template.fill(self._app, call, reply_to, offset)
            else:
                published = self._celery_built(call)
                if templating and kind not in self._templates:
                    self._templates[kind] = self._learn(channel, call, published)
            for body, kw in published:
                if _exchange_of(kw) == self._event_exchange:
                    commands.append(_event(body, kw, _event_group(kw)))
                    continue
                _, key, payload = self._command(channel, body, kw)
                commands.append(("lpush", key, payload))
        return commands

    def execute(self, commands: Sequence[Command]) -> None:
        """Issue built commands in one pipeline.

        The messages of a queue go as one ``LPUSH`` of them all (in order: the first is
        consumed first, as with one ``LPUSH`` each), and the ``task-sent`` events as lists of
        up to :data:`EVENTS_PER_PUBLISH` under the routing key ``task.multi``, as Celery's
        event dispatcher sends a buffered group (``buffer_group``; a worker sends its task
        events so) and as Celery's ``EventReceiver``, hence Flower, reads them. A lone event
        goes as Celery sends it (``task.sent``).
        """
        channel, client = self._channel_and_client()
        pushes: dict[str, list[str]] = {}
        events: _EventGroups = {}
        for verb, key, payload in commands:
            if verb == "lpush":
                pushes.setdefault(key, []).append(payload)
            else:
                kw, fields = payload
                events.setdefault(key, (kw, []))[1].append(fields)
        publishes = [
            self._event_command(channel, kw, group[i : i + EVENTS_PER_PUBLISH])
            for kw, group in events.values()
            for i in range(0, len(group), EVENTS_PER_PUBLISH)
        ]
        issued: list[tuple[str, ...]] = [
            ("LPUSH", key, *payloads) for key, payloads in pushes.items()
        ]
        issued += [("PUBLISH", topic, payload) for topic, payload in publishes]
        try:
            _pipelined(client, issued)
        except Exception:
            self.reset()
            raise

    def _render(
        self, template: _Template, text: _Text, call: TaskCall, batch: _BatchTokens,
        commands: list[Command],
    ) -> None:  # fmt: skip
        """A call's message (and event) from its kind's text templates."""
        eta = call.eta.isoformat() if call.eta else None
        eta_token = "null" if eta is None else encode_basestring_ascii(eta)
        kwargs_json, kwargsrepr = kwargs_texts(
            call.kwargs, template.kwargsrepr_maxsize, template.repr_maxlevels
        )
        task_token = encode_basestring_ascii(call.task_id)
        repr_token = encode_basestring_ascii(kwargsrepr)
        payload = text.rendered(
            task_token, kwargs_json, kwargsrepr=repr_token, eta=eta_token,
            reply_to=batch.reply_to, tag=batch.tag(),
        )  # fmt: skip
        commands.append(("lpush", text.key, payload))
        if template.event_kw is None:
            return
        event: dict[str, Any] | str
        if template.event_text is not None:
            stamp = time.time() if call.sent_at is None else call.sent_at
            event = template.event_text.form.render(
                (_number(self._app.clock.forward()), batch.offset(), task_token, repr_token,
                 eta_token, _number(stamp))
            )  # fmt: skip
        else:
            event = template.event(self._app, call, batch.utcoffset, kwargsrepr, eta)
        commands.append(_event(event, template.event_kw, template.event_group))

    def _event_command(
        self, channel: Any, kw: dict[str, Any], events: list[dict[str, Any] | str]
    ) -> tuple[str, str]:
        """The publish of a group of events: a lone one as Celery sends it, several as one
        list under ``<group>.multi`` (Celery's ``EventDispatcher.flush``). Events rendered as
        JSON text (only ever with the json serializer) join the list as kombu's json would
        write them: ``[a, b]``, items separated by ``", "``."""
        if len(events) > 1:
            group = str(kw.get("routing_key") or "").split(".", 1)[0]
            kw = dict(kw, routing_key=f"{group}.multi")
        if all(isinstance(event, dict) for event in events):
            verb, topic, payload = self._command(
                channel, events[0] if len(events) == 1 else events, kw
            )
        else:
            texts = [e if isinstance(e, str) else str(json_dumps(e)) for e in events]  # type: ignore[no-untyped-call]
            text = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
            key = (_event_group(kw), str(kw.get("routing_key") or ""))
            known = self._event_envelopes.get(key)
            form = None if known is None else known[1]
            if known is not None and form is not None:  # its envelope as text (see below)
                topic = known[0]
                body = base64.b64encode(text.encode()).decode()
                return topic, form.render(('"' + body + '"', '"' + uuid4_texts(1)[0] + '"'))
            verb, topic, message = self._message(channel, None, kw, json_text=text)
            payload = _json(message)
            if verb == "publish" and known is None:
                self._event_envelopes[key] = (topic, _envelope_form(message, payload, text))
        if verb != "publish":
            raise Unsupported("an event that is not published")
        return topic, payload

    def _learn(self, channel: Any, call: TaskCall, published: list[_Publish]) -> _Template | None:
        """The template of ``call``'s kind, with its text when kombu's envelope for it can be
        rendered from one (see :class:`_Text`)."""
        template = _Template.learn(self._app, call, published)
        if template is None:
            return None
        body, kw = published[0]
        verb, key, message = self._message(channel, body, kw)
        text = _Text.learn(key, message, body, call) if verb == "lpush" else None
        group, event_text = "", None
        if template.event_kw is not None:
            group = _event_group(template.event_kw)
            if (template.event_kw.get("serializer") or self._serializer) == "json":
                event_text = _EventText.learn(published[1][0])
        return dataclasses.replace(template, text=text, event_text=event_text, event_group=group)

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
            and self._protocol == 2
            and not (
                signals.before_task_publish.receivers
                or signals.after_task_publish.receivers
                or signals.task_sent.receivers
            )
            and all(isinstance(route, MapRoute) for route in app.amqp.router.routes)
        )

    def _command(self, channel: Any, body: Any, kw: dict[str, Any]) -> Command:
        """The Redis command kombu's Producer.publish and Redis channel would issue."""
        verb, key, message = self._message(channel, body, kw)
        return verb, key, _json(message)

    def _message(
        self, channel: Any, body: Any, kw: dict[str, Any], *, json_text: str | None = None
    ) -> tuple[str, str, dict[str, Any]]:
        """The Redis verb, key and envelope kombu's Producer.publish and Redis channel would
        issue (the envelope before its JSON); ``json_text``: the body already serialized by
        kombu's json (the serializer must be json)."""
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
        if json_text is None:
            content_type, content_encoding, data = dumps(body, serializer=serializer)  # type: ignore[no-untyped-call]
        elif serializer == "json":
            content_type, content_encoding, data = "application/json", "utf-8", json_text
        else:
            raise Unsupported(f"JSON text for the {serializer!r} serializer")
        message = channel.prepare_message(
            data, priority, content_type, content_encoding, headers, properties
        )
        message["body"], body_encoding = channel.encode_body(message["body"], channel.body_encoding)
        message["properties"].update(body_encoding=body_encoding, delivery_tag=str(uuid.uuid4()))
        message["properties"]["delivery_info"].update(exchange=exchange, routing_key=routing_key)
        if exchange == "":
            return "lpush", routing_key, message  # the default exchange: straight to the queue
        if exchange == self._event_exchange:
            return "publish", _topic(channel, exchange, routing_key), message
        raise Unsupported(f"exchange {exchange!r}")


def _event(fields: Any, kw: dict[str, Any], group: str) -> Command:
    """The built publish of an event (its fields, or their JSON rendered from a template), to
    go out with the others of its group."""
    if not isinstance(fields, dict | str):
        raise Unsupported("an event that is not a dict of fields")
    return ("event", group, (kw, fields))


def _exchange_of(kw: dict[str, Any]) -> str:
    exchange = kw.get("exchange", "") or ""
    return str(getattr(exchange, "name", exchange))


def _event_group(kw: dict[str, Any]) -> str:
    """Events whose publish options (but the routing key) are the same go out together."""
    return repr(sorted((k, repr(v)) for k, v in kw.items() if k not in ("routing_key", "declare")))


def _topic(channel: Any, exchange: str, routing_key: str) -> str:
    """kombu's Redis fanout topic (``/{db}.celeryev/task.sent`` with the default options)."""
    prefix = str(channel.keyprefix_fanout)
    if routing_key and channel.fanout_patterns:
        return f"{prefix}{exchange}/{routing_key}"
    return f"{prefix}{exchange}"


def _pipelined(client: Any, commands: Sequence[tuple[str, ...]]) -> None:
    """Issue ``commands`` (each its arguments as text) in one round trip on a connection of
    ``client``'s pool, as one write of the whole RESP request, and read their replies (an
    error reply raised). redis-py's pipeline packs each argument through its encoder and sends
    a batch as chunks of about 6 kB, a ``sendall`` each: 30 calls for 100 messages, 10 us of a
    job's 60. A failed connection is dropped (disconnected) before it goes back to the pool."""
    parts: list[bytes] = []
    for args in commands:
        parts.append(b"*%d\r\n" % len(args))
        for arg in args:
            data = arg.encode()
            parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([b"".join(parts)])
        replies = [connection.read_response() for _ in commands]
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply


def _envelope_form(message: dict[str, Any], payload: str, text: str) -> _Form | None:
    """kombu's envelope of a published event group (``payload``, its JSON; ``text``, its
    body's) as a text with slots for its base64 body and its delivery tag, the rest being the
    same for every publish with the same options: a batch's events are then one base64 and a
    join, not kombu's envelope and a ``json.dumps`` scanning its whole base64 body. None unless
    the body is the base64 of ``text`` and rendering it back gives ``payload``."""
    properties = message["properties"]
    if (
        properties.get("body_encoding") != "base64"
        or message["body"] != base64.b64encode(text.encode()).decode()
    ):
        return None
    marked = dict(message, body=_slot("body"))
    marked["properties"] = dict(properties, delivery_tag=_slot("tag"))
    try:
        form = _Form(_json(marked), ("body", "tag"))
    except ValueError:
        return None
    again = form.render((_token(str(message["body"])), _token(str(properties["delivery_tag"]))))
    return form if again == payload else None


def _json(message: dict[str, Any]) -> str:
    return str(json_dumps(message))  # type: ignore[no-untyped-call]  # as kombu's transport does
