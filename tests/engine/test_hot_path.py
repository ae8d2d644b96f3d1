"""The submit hot path: statements on the DBAPI cursor, pipelined Redis sends, lost-start requeue.

* ``HotStatement`` must store exactly what the ORM stores (types, defaults) on both stores, and
  raise SQLAlchemy's own exception classes.
* ``RedisSender`` must write, byte for byte apart from ids, the task message and ``task-sent``
  event that Celery and kombu write, so workers and Flower read them as their own.
* A run committed as sent whose message never reached a worker is sent again by the scheduler.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, signals
from celery.utils.collections import ConfigurationView
from celery.utils.saferepr import saferepr
from celery.utils.time import utcoffset
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu import Connection, Exchange, Queue
from kombu.utils import json as kombu_json
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    bindparam,
    create_engine,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from jobengine import submit
from jobengine.embedded import redis_url
from jobengine.engine import dispatch, redis_send
from jobengine.engine.app import app, configure
from jobengine.engine.redis_send import (
    EVENTS_PER_PUBLISH,
    RedisSender,
    TaskCall,
    Unsupported,
    kwargs_repr,
    kwargs_texts,
)
from jobengine.engine.scheduling import tick
from jobengine.runtime import get_runtime
from jobengine.settings import get_settings
from jobengine.store.hot import Batch, CopyInsert, HotStatement, RowidInsert, Same, inserted_ids
from jobengine.store.jobs import create_run
from jobengine.store.runs import end_run, get_run, load_run, write_log, write_record
from jobengine.store.schema import JOBS, RUNS, Company, Job, LogDetail, Run, utcnow
from tests.support.helpers import export_request, make_company
from tests.support.stack import unavailable

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

# --- HotStatement ------------------------------------------------------------------------------

_COLUMNS_SET_BY_ORM_DEFAULTS = (
    "planned", "stop_requested", "paused", "total_items", "finished_items", "success_count",
    "error_count", "warning_count", "duplicate_count", "update_count", "total_size", "progress",
    "progress_message", "fatal_error", "output",
)  # fmt: skip


def _a_job(name: str) -> Job:
    company, _ = make_company(0)
    with get_runtime().store.write() as session:
        from jobengine.assets.catalog import company_by_handle

        owner = company_by_handle(session, company)
        job = Job(
            company_id=owner.id,
            live_key=None,
            handle=f"{company}|{name}|",
            name=name,
            kind="exportJob",
            payload={"k": ["v", 1]},
            time_zone="UTC",
            trigger_state="None",
        )
        session.add(job)
        session.flush()
        session.expunge(job)
    return job


def test_hot_insert_stores_what_the_orm_stores(store_only: dict[str, str]) -> None:
    job = _a_job("Hot Insert")
    eta = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    store = get_runtime().store
    with store.connect() as conn:  # through HotStatement (create_run's path)
        hot = create_run(conn, job, "hot", local_now=utcnow(), eta=eta, dispatched_at=eta)
    with store.write() as session:  # through the ORM, with the same values
        orm = Run(
            job_id=job.id, company_id=job.company_id, run_name="orm-run", fire_key="orm",
            task_id="t", state="Queued", eta=eta, dispatched_at=eta,
        )  # fmt: skip
        session.add(orm)
    assert hot is not None
    with store.read() as session:
        a, b = session.get(Run, hot.id), session.get(Run, orm.id)
        assert a is not None and b is not None
        for column in _COLUMNS_SET_BY_ORM_DEFAULTS:
            assert getattr(a, column) == getattr(b, column), column
        assert a.eta == b.eta == eta  # UTCDateTime: naive UTC stored, aware UTC read back
        assert a.dispatched_at == eta
        assert a.created_at.tzinfo is UTC and abs(a.created_at - utcnow()) < timedelta(minutes=1)
        # and the database itself holds the same representation for both rows
        raw = (
            session.connection()
            .execute(
                select(RUNS.c.eta, RUNS.c.output, RUNS.c.planned).where(RUNS.c.id.in_([a.id, b.id]))
            )
            .all()
        )
        assert raw[0] == raw[1]


def test_hot_statement_raises_sqlalchemy_errors_and_refuses_expanding_lists(
    store_only: dict[str, str],
) -> None:
    job = _a_job("Hot Errors")
    store = get_runtime().store
    with store.connect() as conn:
        create_run(conn, job, "twice", local_now=utcnow())
    name_clash = HotStatement(
        insert(RUNS).returning(RUNS.c.id),
        insert_keys=("job_id", "company_id", "run_name", "fire_key", "task_id", "state"),
    )
    values = {"job_id": job.id, "company_id": job.company_id, "fire_key": "twice",
              "run_name": "other", "task_id": "x", "state": "Queued"}  # fmt: skip
    with pytest.raises(IntegrityError), store.connect() as conn:  # (job, fire_key) is unique
        name_clash.scalar(conn, values)
    with pytest.raises(ValueError, match="insert values"), store.connect() as conn:
        name_clash.scalar(conn, {"job_id": job.id})
    listed = HotStatement(select(JOBS.c.id).where(JOBS.c.id.in_(bindparam("ids", expanding=True))))
    with pytest.raises(ValueError, match="expanding"), store.connect() as conn:
        listed.first(conn, {"ids": [1]})
    literal = HotStatement(select(JOBS.c.id).where(JOBS.c.name == "Hot Errors").limit(1))
    with store.connect() as conn:
        assert literal.scalar(conn, {}) == job.id


class _Counted(TypeDecorator[str]):
    """Text whose bind processor counts its calls."""

    impl = String
    cache_ok = True
    calls = 0

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        _Counted.calls += 1
        return None if value is None else value.upper()


def test_constant_defaults_and_written_values_are_processed_once_not_per_row(
    tmp_path: Path,
) -> None:
    """An INSERT's constant defaults and a statement's written values go through their bind
    processors when it is compiled; the given values and the callable defaults, each row."""
    table = Table(
        "counted", MetaData(), Column("id", Integer, primary_key=True), Column("given", _Counted),
        Column("constant", _Counted, default="zero"), Column("made", _Counted, default=lambda: "m"),
    )  # fmt: skip
    engine = create_engine(f"sqlite:///{tmp_path / 'counted.db'}")
    table.create(engine)
    add = HotStatement(insert(table).returning(table.c.id), insert_keys=("given",))
    named = HotStatement(select(table.c.id).where(table.c.given == "B", table.c.constant == "ZERO"))
    _Counted.calls = 0
    with engine.begin() as conn:
        for value in ("a", "b", "c"):
            add.scalar(conn, {"given": value})
        assert _Counted.calls == 1 + 3 * 2  # the constant once; the given and the made each row
        assert named.scalar(conn, {}) == named.scalar(conn, {}) == 2
        assert _Counted.calls == 7 + 2  # the two written values, once
        rows = conn.execute(select(table.c.given, table.c.constant, table.c.made)).all()
    assert [tuple(r) for r in rows] == [("A", "ZERO", "M"), ("B", "ZERO", "M"), ("C", "ZERO", "M")]
    engine.dispose()


def test_runs_loaded_by_the_runner_are_what_the_orm_loads(store_only: dict[str, str]) -> None:
    """store.runs.load_run / get_run (typed HotStatements, objects attached to the session):
    every column as the ORM reads it, and changes to them flushed as the ORM's own."""
    job = _a_job("Hot Load")
    store = get_runtime().store
    with store.connect() as conn:
        made = create_run(conn, job, "load", local_now=utcnow(), dispatched_at=utcnow())
    assert made is not None
    with store.read() as session:
        orm = (
            session.get(Run, made.id),
            session.get(Job, job.id),
            session.get(Company, job.company_id),
        )
        session.expunge_all()
    with store.write() as session:
        loaded = load_run(session, made.id)
        assert loaded is not None
        for theirs, ours in zip(orm, loaded, strict=True):
            for column in type(ours).__table__.columns:  # type: ignore[attr-defined]
                assert getattr(ours, column.key) == getattr(theirs, column.key), column.key
        run, loaded_job, _ = loaded
        assert run.created_at.tzinfo is UTC and run.planned is False and run.output == {}
        assert loaded_job.payload == {"k": ["v", 1]}
        assert get_run(session, made.id) is run  # the session's own object, as session.get
        assert load_run(session, 10**9) is None
        loaded_job.description = "changed"  # persistent: flushed at commit
        write_log(session, run, "Info", "job {job} started", job="x")
        write_record(session, run, "OriginalJobName", "Hot Load")
        assert end_run(session, run, "Done", output={"zip": "k"})
        assert run.state == "Done" and run.progress == 100
        # a job without a schedule: its trigger completes with the run, the session's object too
        assert loaded_job.trigger_state == "Complete"
    with store.write() as session:
        fresh = get_run(session, made.id)
        assert fresh is not None and fresh.state == "Done" and fresh.output == {"zip": "k"}
        assert fresh.ended_at is not None and fresh.ended_at.tzinfo is UTC
        stored = session.get(Job, job.id)
        assert stored is not None and stored.description == "changed"
        assert stored.trigger_state == "Complete" and stored.next_fire_at is None
        rows = session.scalars(
            select(LogDetail).where(LogDetail.run_id == made.id).order_by(LogDetail.id)
        ).all()
        assert [(r.log_type, r.message, r.message_id, r.message_args) for r in rows] == [
            ("Info", "job x started", "job {job} started", {"job": "x"}),
            ("OriginalJobName", "Hot Load", None, None),  # SQL NULL, as the ORM left it
        ]
        assert rows[0].created_at.tzinfo is UTC


@pytest.mark.parametrize("batch", [False, True], ids=["row-by-row", "batch"])
def test_inserted_ids_are_in_the_rows_order_and_errors_are_sqlalchemys(
    store_only: dict[str, str], batch: bool
) -> None:
    """Every store's way (SQLite row by row, or one executemany and the ids after the largest;
    PostgreSQL by psycopg's pipelined executemany, or ids from the sequence and one COPY): ids
    in order, the ORM's defaults stored, a constraint failure raised as SQLAlchemy's
    IntegrityError."""
    job = _a_job("Hot Many")
    store = get_runtime().store
    rows = [
        {"job_id": job.id, "company_id": job.company_id, "run_name": f"many-{i}",
         "fire_key": f"many-{i}", "task_id": f"t{i}", "state": "Queued", "eta": None,
         "dispatched_at": None, "created_at": utcnow()}
        for i in range(7)
    ]  # fmt: skip
    hot = HotStatement(insert(RUNS).returning(RUNS.c.id), insert_keys=tuple(rows[0]))
    batched = insert(RUNS).returning(RUNS.c.id, sort_by_parameter_order=True)
    ways: dict[str, Any] = (
        {"sqlite": RowidInsert(insert(RUNS), RUNS, tuple(rows[0])),
         "copy": CopyInsert(RUNS, tuple(rows[0]))}
        if batch else {}
    )  # fmt: skip
    with store.connect() as conn:
        ids = inserted_ids(conn, hot, batched, rows, **ways)
    with store.read() as session:
        names = dict(
            session.execute(select(RUNS.c.id, RUNS.c.run_name).where(RUNS.c.id.in_(ids))).all()
        )
        assert [names[i] for i in ids] == [row["run_name"] for row in rows]
        stored = session.get(Run, ids[0])
        assert stored is not None and stored.planned is False and stored.output == {}
    clash = [{**rows[0], "run_name": "other", "fire_key": "fresh"}, rows[1]]  # (job, fire_key)
    with pytest.raises(IntegrityError), store.connect() as conn:
        inserted_ids(conn, hot, batched, clash, **ways)
    with store.read() as session:  # all or nothing
        assert session.scalar(select(RUNS.c.id).where(RUNS.c.fire_key == "fresh")) is None


@pytest.mark.parametrize("batch", [False, True], ids=["row-by-row", "batch"])
def test_a_batch_of_columns_stores_what_its_rows_store(
    store_only: dict[str, str], batch: bool
) -> None:
    """The same runs given as row dicts and as a Batch of columns (values every row shares as
    Same, a JSON column as raw text, a default column given): the same values stored."""
    job = _a_job("Hot Columns")
    store = get_runtime().store
    created = utcnow()
    eta = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    keys = ("job_id", "company_id", "run_name", "fire_key", "task_id", "state", "eta",
            "dispatched_at", "created_at", "output")  # fmt: skip
    rows = [
        {"job_id": job.id, "company_id": job.company_id, "run_name": f"rows-{i}",
         "fire_key": f"rows-{i}", "task_id": f"r{i}", "state": "Queued",
         "eta": eta if i % 2 else None, "dispatched_at": created, "created_at": created,
         "output": {"k": ["v", i], "ü": None}}
        for i in range(5)
    ]  # fmt: skip
    columns = Batch(
        5,
        {
            "job_id": Same(job.id),
            "company_id": [job.company_id] * 5,
            "run_name": [f"cols-{i}" for i in range(5)],
            "fire_key": [f"cols-{i}" for i in range(5)],
            "task_id": [f"c{i}" for i in range(5)],
            "state": Same("Queued"),
            "eta": [eta if i % 2 else None for i in range(5)],
            "dispatched_at": Same(created),
            "created_at": Same(created),
            "output": [json.dumps(row["output"]) for row in rows],
        },
        raw=("output",),
    )
    hot = HotStatement(insert(RUNS).returning(RUNS.c.id), insert_keys=keys)
    batched = insert(RUNS).returning(RUNS.c.id, sort_by_parameter_order=True)
    ways: dict[str, Any] = (
        {"sqlite": RowidInsert(insert(RUNS), RUNS, keys), "copy": CopyInsert(RUNS, keys)}
        if batch
        else {}
    )
    with store.connect() as conn:
        by_rows = inserted_ids(conn, hot, batched, rows, **ways)
        by_columns = inserted_ids(conn, hot, batched, columns, **ways)
    picked = [c for c in RUNS.c if c.key not in ("id", "run_name", "fire_key", "task_id")]
    with store.read() as session:
        stored = {
            row[0]: row[1:]
            for row in session.execute(
                select(RUNS.c.id, *picked).where(RUNS.c.id.in_(by_rows + by_columns))
            )
        }
        raw = dict(
            session.execute(
                select(RUNS.c.id, RUNS.c.planned).where(RUNS.c.id.in_(by_rows + by_columns))
            ).all()
        )
    assert [stored[i] for i in by_rows] == [stored[i] for i in by_columns]
    assert [raw[i] for i in by_rows] == [raw[i] for i in by_columns]
    assert stored[by_columns[1]][picked.index(RUNS.c.output)] == {"k": ["v", 1], "ü": None}
    # SQLAlchemy's own path gets the raw JSON back as Python values
    types = {c.key: c.type for c in RUNS.c}
    assert columns.rows(types)[3]["output"] == rows[3]["output"]
    assert columns.rows(types)[3]["job_id"] == job.id
    with pytest.raises(ValueError, match="only JSON"):
        Batch(1, {"run_name": ["x"]}, raw=("run_name",)).rows(types)
    with pytest.raises(ValueError, match="holds 2 values for 3 rows"):
        Batch(3, {"run_name": ["a", "b"]})
    with pytest.raises(ValueError, match="differ from the compiled"), store.connect() as conn:
        inserted_ids(conn, hot, batched, Batch(1, {"job_id": [job.id]}), **ways)


# --- RedisSender -------------------------------------------------------------------------------


@pytest.fixture
def contract_app(store_only: dict[str, str]) -> Any:
    """A Celery app on the test Redis with jobengine's settings and a queue no worker reads."""
    probe = Celery("contract", set_as_current=False)
    probe.conf.update(
        {k: v for k, v in app.conf.items() if k.startswith(("broker_", "task_", "result_"))}
    )
    probe.conf.update(task_default_queue="contract-queue", task_send_sent_event=True)
    client = redis.Redis.from_url(redis_url(get_settings()))
    client.delete("contract-queue")
    yield probe
    client.delete("contract-queue")
    client.close()
    probe.close()


def _pop(client: redis.Redis, key: str) -> dict[str, Any]:
    raw = client.rpop(key)
    assert raw is not None, f"nothing in {key}"
    return dict(json.loads(raw))


def _normalised(envelope: dict[str, Any], task_id: str) -> dict[str, Any]:
    """The envelope, body decoded, with the per-message parts made comparable."""
    out = dict(envelope)
    out["properties"] = dict(out["properties"])
    out["properties"].pop("delivery_tag")
    body = json.loads(base64.b64decode(out.pop("body")))
    for event in body if isinstance(body, list) else [body]:
        if isinstance(event, dict):  # an event: its timing fields differ by nature
            for key in ("timestamp", "clock", "utcoffset"):
                event.pop(key, None)
    out["decoded_body"] = body
    return dict(json.loads(json.dumps(out).replace(task_id, "TASK")))


def _body(raw: bytes) -> bytes:
    return base64.b64decode(json.loads(raw)["body"])


def _send_both_ways(
    probe: Any, eta: datetime | None, *, templated: bool = False
) -> tuple[list[Any], list[Any]]:
    """One call sent by Celery, then by the pipelined sender (``templated``: as the second call of
    a batch, so from the template the first call taught it)."""
    client = redis.Redis.from_url(redis_url(get_settings()))
    pubsub = client.pubsub()
    pubsub.psubscribe("*celeryev*")
    while pubsub.get_message(timeout=0.2) is not None:  # the subscribe confirmations
        pass
    kwargs = {"run_id": 7, "job": "47|Name|", "company": "47", "run": "Name_2026"}
    name = "jobengine.export.start"
    results: list[list[Any]] = []
    for way in ("celery", "pipelined"):
        task_id = str(uuid.uuid4())
        if way == "celery":
            probe.send_task(name, kwargs=kwargs, task_id=task_id, eta=eta, ignore_result=True)
        elif templated:
            first = TaskCall(name, str(uuid.uuid4()), {**kwargs, "run_id": 6}, eta)
            RedisSender(probe).send([first, TaskCall(name, task_id, kwargs, eta)])
            _pop(client, "contract-queue")  # the first call's
        else:
            RedisSender(probe).send([TaskCall(name, task_id, kwargs, eta)])
        message = _normalised(_pop(client, "contract-queue"), task_id)
        event = None
        deadline = time.monotonic() + 5
        while event is None and time.monotonic() < deadline:
            got = pubsub.get_message(timeout=0.5)
            if got and got["type"] == "pmessage" and task_id.encode() in _body(got["data"]):
                # (the test worker's heartbeats and task events share the exchange: skip them)
                event = (got["channel"], _normalised(json.loads(got["data"]), task_id))
        assert event is not None, f"no task-sent event from the {way} path"
        results.append([message, event])
    pubsub.close()
    client.close()
    return results[0], results[1]


@pytest.mark.parametrize("templated", [False, True], ids=["built", "templated"])
@pytest.mark.parametrize("eta", [None, datetime(2030, 1, 1, tzinfo=UTC)], ids=["now", "eta"])
def test_pipelined_messages_are_kombus_own(
    contract_app: Any, eta: datetime | None, templated: bool
) -> None:
    celery_way, pipelined = _send_both_ways(contract_app, eta, templated=templated)
    assert pipelined[0] == celery_way[0]  # the task message, envelope and body
    if not templated:  # a lone call: its event as Celery sends it
        assert pipelined[1][0] == celery_way[1][0]  # the event topic
        assert pipelined[1][1] == celery_way[1][1]  # the event envelope and fields
        event = pipelined[1][1]["decoded_body"]
    else:  # two calls in one send: their events as one list, as Celery's dispatcher groups them
        topic, envelope = pipelined[1]
        assert topic == celery_way[1][0].replace(b"task.sent", b"task.multi")
        events, theirs = envelope.pop("decoded_body"), dict(celery_way[1][1])
        celery_event = theirs.pop("decoded_body")
        assert len(events) == 2 and events[0]["uuid"] != "TASK" and events[1] == celery_event
        theirs["properties"]["delivery_info"]["routing_key"] = "task.multi"
        assert envelope == theirs  # the envelope but the routing key
        event = events[1]
    assert event["type"] == "task-sent" and event["uuid"] == "TASK"
    assert event["name"] == "jobengine.export.start" and event["queue"] == "contract-queue"


def test_a_batchs_events_go_as_lists_of_at_most_events_per_publish(contract_app: Any) -> None:
    """Every call's task-sent event is published once, in lists of at most EVENTS_PER_PUBLISH
    under ``task.multi`` (a last lone one as Celery sends it), and every message is queued."""
    client = redis.Redis.from_url(redis_url(get_settings()))
    pubsub = client.pubsub()
    pubsub.psubscribe("*celeryev/task.*")
    while pubsub.get_message(timeout=0.2) is not None:  # the subscribe confirmations
        pass
    name = "jobengine.export.start"
    calls = [
        TaskCall(name, str(uuid.uuid4()), {"run_id": i, "job": f"47|J{i}|"})
        for i in range(2 * EVENTS_PER_PUBLISH + 1)
    ]
    RedisSender(contract_app).send(calls)
    seen: list[str] = []
    topics: list[bytes] = []
    deadline = time.monotonic() + 10
    while len(seen) < len(calls) and time.monotonic() < deadline:
        got = pubsub.get_message(timeout=0.5)
        if not got or got["type"] != "pmessage":
            continue
        body = json.loads(_body(got["data"]))
        events = body if isinstance(body, list) else [body]
        ours = [e["uuid"] for e in events if e.get("name") == name]
        if ours:  # (the test worker's own task events share the exchange: skip them)
            seen += ours
            topics.append(got["channel"].rsplit(b"/", 1)[1])
    pubsub.close()
    assert seen == [call.task_id for call in calls]  # each once, in order
    assert topics == [b"task.multi", b"task.multi", b"task.sent"]
    queued = [json.loads(raw)["headers"]["id"] for raw in client.lrange("contract-queue", 0, -1)]
    assert queued[::-1] == [call.task_id for call in calls]  # LPUSH: the first is popped first
    client.delete("contract-queue")
    client.close()


def test_an_event_groups_envelope_from_its_text_is_kombus(contract_app: Any) -> None:
    """The second publish of events with the same options renders kombu's envelope from the
    text learned at the first: the same bytes as kombu's own but for the delivery tag."""
    name = "jobengine.export.start"
    sender = RedisSender(contract_app)
    built = sender.build(
        [TaskCall(name, str(uuid.uuid4()), {"run_id": i, "job": "47|Ünï 'q'|"}) for i in range(4)]
    )
    [(kw, built_by_celery), *rest] = [payload for verb, _, payload in built if verb == "event"]
    texts = [event for _, event in rest]
    assert isinstance(built_by_celery, dict) and all(isinstance(t, str) for t in texts)
    channel = contract_app.connection_for_write().default_channel
    for events in ([texts[0], texts[1]], [texts[1], texts[2]], [built_by_celery, *texts]):
        learned = sender._event_command(channel, kw, list(events))
        multi = dict(kw, routing_key="task.multi")
        parts = [e if isinstance(e, str) else kombu_json.dumps(e) for e in events]
        text = "[" + ", ".join(parts) + "]"
        _, topic, message = sender._message(channel, None, multi, json_text=text)
        kombus = json.dumps(message)  # kombu's transport: json of the envelope
        assert learned[0] == topic
        assert _TAG.sub("TAG", learned[1]) == _TAG.sub("TAG", kombus)
        assert json.loads(base64.b64decode(json.loads(learned[1])["body"])) == json.loads(text)
    assert [form is not None for _, form in sender._event_envelopes.values()] == [True]


def test_commands_go_as_one_request_and_an_error_reply_is_raised(contract_app: Any) -> None:
    """redis_send._pipelined: the replies of every command read (the next request on the
    same pool is answered in step), an error reply raised, non-ASCII arguments as UTF-8."""
    client = RedisSender(contract_app)._channel_and_client()[1]
    client.set("contract-text", "not a list")
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            redis_send._pipelined(
                client, [("LPUSH", "contract-queue", "a"), ("LPUSH", "contract-text", "x")]
            )
        redis_send._pipelined(client, [("LPUSH", "contract-queue", "b", "ü"), ("PING",)])
        assert client.lrange("contract-queue", 0, -1) == [b"\xc3\xbc", b"b", b"a"]
        assert client.get("contract-text") == b"not a list"
    finally:
        client.delete("contract-text", "contract-queue")


def test_pipelined_sender_refuses_what_it_does_not_cover(contract_app: Any) -> None:
    topic = Exchange("elsewhere", type="topic")
    contract_app.conf.task_routes = {
        "jobengine.export.start": {"queue": Queue("contract-queue", topic, routing_key="x")}
    }
    client = redis.Redis.from_url(redis_url(get_settings()))
    with pytest.raises(Unsupported, match="elsewhere"):
        RedisSender(contract_app).send([TaskCall("jobengine.export.start", "id-1", {})])
    assert client.llen("contract-queue") == 0  # all or nothing: nothing was written
    client.close()
    assert RedisSender.supports(contract_app)
    contract_app.conf.broker_transport_options = {"global_keyprefix": "p:"}
    assert not RedisSender.supports(contract_app)
    contract_app.conf.broker_url = "amqp://guest:guest@127.0.0.1:5672//"
    assert not RedisSender.supports(contract_app)


# --- message templates ---------------------------------------------------------------------------

_TAG = re.compile(r'"delivery_tag": "([0-9a-f-]{36})"')
_EVENT_TIMES = re.compile(rb'"(clock|timestamp)": ([0-9.]+)')


def _exact(command: tuple[str, str, str]) -> tuple[str, str, str, bytes, list[Any]]:
    """A Redis command with its delivery tag and event timing set aside (each must have kombu's
    and Celery's form); everything else is kept byte for byte."""
    verb, key, payload = command
    [tag] = _TAG.findall(payload)
    assert str(uuid.UUID(tag)) == tag  # kombu's: a fresh uuid4 per message
    envelope = json.loads(payload)
    body = base64.b64decode(envelope["body"])
    times = _EVENT_TIMES.findall(body)
    if verb == "publish":  # an event: a logical clock (int) and a timestamp (float, now)
        assert [name for name, _ in times] == [b"clock", b"timestamp"]
        clock, stamp = int(times[0][1]), float(times[1][1])
        assert clock > 0 and abs(stamp - time.time()) < 60
    envelope_text = _TAG.sub('"delivery_tag": "TAG"', payload.replace(envelope["body"], "BODY"))
    return verb, key, envelope_text, _EVENT_TIMES.sub(rb'"\1": 0', body), times


_KINDS: list[tuple[str, dict[str, Any], datetime | None]] = [
    ("jobengine.export.start", {"run_id": 1, "job": "47|A|", "company": "47", "run": "A_1"}, None),
    ("jobengine.upload.start", {"run_id": 2, "job": "47|B|", "company": "47", "run": "B_1"}, None),
    ("jobengine.export.start", {"run_id": 3, "job": "47|C|", "company": "47", "run": "C_1"},
     datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
    ("jobengine.upload.start", {"run_id": 4, "job": "c|9|Ünïcode 'q' \"dq\"|", "company": "9",
                                "run": "x" * 3000}, datetime(2031, 6, 1, tzinfo=UTC)),
]  # fmt: skip


def test_templated_messages_are_what_celery_builds_for_the_same_call(contract_app: Any) -> None:
    """Several kinds (one routed to a queue of its own), with and without an ETA, different
    arguments (a long one that saferepr shortens): a templated message and its event equal,
    byte for byte, what Celery and kombu build for the same call."""
    contract_app.conf.task_routes = {"jobengine.upload.start": {"queue": "contract-other"}}
    sender = RedisSender(contract_app)
    channel = contract_app.connection_for_write().default_channel
    for name, kwargs, eta in _KINDS:  # the first call of each kind teaches its template
        sender.send([TaskCall(name, str(uuid.uuid4()), {**kwargs, "run_id": 0}, eta)])
    assert len(sender._templates) == len(_KINDS)
    assert all(
        t is not None and t.text is not None and t.event_text is not None
        for t in sender._templates.values()
    )
    clocks: list[int] = []
    for round_ in range(3):
        for name, kwargs, eta in _KINDS:
            call = TaskCall(name, str(uuid.uuid4()), {**kwargs, "run_id": round_ * 10}, eta)
            template = sender._templates[(name, eta is None)]
            assert template is not None
            ours = template.fill(contract_app, call, contract_app.thread_oid, utcoffset())
            celerys = sender._celery_built(call)
            assert len(ours) == len(celerys) == 2  # the task message, its task-sent event
            for mine, theirs in zip(ours, celerys, strict=True):
                a, b = (
                    _exact(sender._command(channel, *mine)),
                    _exact(sender._command(channel, *theirs)),
                )
                assert a[:4] == b[:4]
                if a[0] == "publish":
                    clocks += [int(a[4][0][1]), int(b[4][0][1])]
            # the task message rendered from the template's text: kombu's bytes again
            assert template.text is not None
            eta_text = eta.isoformat() if eta else None
            kwargsrepr = saferepr(call.kwargs, template.kwargsrepr_maxsize)
            rendered = template.text.render(
                call.task_id, json.dumps(call.kwargs), kwargsrepr=kwargsrepr, eta=eta_text,
                reply_to=contract_app.thread_oid, tag=str(uuid.uuid4()),
            )  # fmt: skip
            celery_message = sender._command(channel, *celerys[0])
            assert _exact(("lpush", template.text.key, rendered))[:4] == _exact(celery_message)[:4]
            # and its event, given the clock and time Celery's has: kombu's JSON text of it
            assert template.event_text is not None
            celery_event = celerys[1][0]
            assert template.event_text.render(
                celery_event["clock"], celery_event["utcoffset"], call.task_id,
                kwargsrepr=kwargsrepr, eta=eta_text, timestamp=celery_event["timestamp"],
            ) == kombu_json.dumps(celery_event)  # fmt: skip
    assert clocks == sorted(clocks) and len(set(clocks)) == len(clocks)  # the app's clock
    client = redis.Redis.from_url(redis_url(get_settings()))
    client.delete("contract-other")
    client.close()


def test_a_templated_send_reads_none_of_celerys_configuration(
    contract_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery's configuration lookups cost microseconds each: a sender reads what it needs
    when it is made, not for each message (it is made again when the app is configured
    again)."""
    sender = RedisSender(contract_app)
    name = "jobengine.export.start"
    sender.send([TaskCall(name, str(uuid.uuid4()), {"run_id": 0})])  # teaches the template
    looked_up: list[str] = []
    lookup = ConfigurationView.__getitem__

    def counted(view: ConfigurationView, key: str) -> Any:
        looked_up.append(key)
        return lookup(view, key)

    monkeypatch.setattr(ConfigurationView, "__getitem__", counted)
    sender.send([TaskCall(name, str(uuid.uuid4()), {"run_id": i}) for i in (1, 2)])
    assert looked_up == []


_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "'", "\\'", '"', "a b", "47|Name|", "x" * 1100, "tab\tnew\nline", "Ünï"]
)
_VALUE = _TEXT | st.integers() | st.booleans() | st.floats(allow_nan=False) | st.none()


@settings(max_examples=400, deadline=None)
@given(
    kwargs=st.dictionaries(_TEXT, _VALUE | st.lists(_VALUE, max_size=3), max_size=6),
    maxlen=st.sampled_from([None, 0, 1, 8, 40, 200, 1024]),
    maxlevels=st.sampled_from([-1, 0, 1, 3]),
)
def test_kwargs_repr_is_celerys_saferepr(
    kwargs: dict[str, Any], maxlen: int | None, maxlevels: int
) -> None:
    assert kwargs_repr(kwargs, maxlen, maxlevels) == saferepr(kwargs, maxlen, maxlevels=maxlevels)


@settings(max_examples=400, deadline=None)
@given(
    kwargs=st.dictionaries(_TEXT, _VALUE | st.lists(_VALUE, max_size=3), max_size=6)
    | st.dictionaries(_TEXT, _TEXT | st.integers() | st.lists(st.integers()), max_size=6),
    maxlen=st.sampled_from([None, 0, 1, 8, 40, 200, 1024]),
    maxlevels=st.sampled_from([-1, 0, 1, 2, 3]),
)
def test_kwargs_texts_are_kombus_json_and_celerys_saferepr(
    kwargs: dict[str, Any], maxlen: int | None, maxlevels: int
) -> None:
    assert kwargs_texts(kwargs, maxlen, maxlevels) == (
        kombu_json.dumps(kwargs),
        saferepr(kwargs, maxlen, maxlevels=maxlevels),
    )


def test_templates_stand_aside_where_celery_must_build_each_message(contract_app: Any) -> None:
    """A publish-signal receiver, or a router that reads the arguments: every message is built
    by Celery, so each gets what the receiver or router gives it."""
    client = redis.Redis.from_url(redis_url(get_settings()))
    name = "jobengine.export.start"

    def mark(headers: dict[str, Any], **_: Any) -> None:
        headers["x-marked"] = headers["id"]

    signals.before_task_publish.connect(mark)
    try:
        sender = RedisSender(contract_app)
        calls = [TaskCall(name, str(uuid.uuid4()), {"run_id": i}) for i in range(3)]
        sender.send(calls)
        for call in calls:
            message = _pop(client, "contract-queue")
            assert message["headers"]["x-marked"] == call.task_id
        assert not sender._templates
    finally:
        signals.before_task_publish.disconnect(mark)

    def by_parity(name: str, args: Any, kwargs: dict[str, Any], options: Any, **_: Any) -> Any:
        return {"queue": "contract-queue" if kwargs["run_id"] % 2 else "contract-even"}

    contract_app.conf.task_routes = (by_parity,)
    contract_app.amqp.flush_routes()
    vars(contract_app.amqp).pop("router", None)
    sender = RedisSender(contract_app)
    calls = [TaskCall(name, str(uuid.uuid4()), {"run_id": i}) for i in range(4)]
    sender.send(calls)
    odd = [_pop(client, "contract-queue")["headers"]["id"] for _ in range(2)]
    even = [_pop(client, "contract-even")["headers"]["id"] for _ in range(2)]
    assert odd == [calls[1].task_id, calls[3].task_id]
    assert even == [calls[0].task_id, calls[2].task_id]
    assert not sender._templates
    client.delete("contract-even")
    client.close()


def test_starts_over_rabbitmq_go_through_celery(store_only: dict[str, str]) -> None:
    """With a RabbitMQ broker no pipelined sender (nor template) is used: each start message is
    Celery's own, with its ETA and arguments."""
    queue = f"contract-{uuid.uuid4().hex[:8]}"
    try:
        with Connection(AMQP_URL, connect_timeout=2) as probe:
            probe.ensure_connection(max_retries=1)
    except Exception as exc:  # whatever amqp raises for a broker that is not there
        unavailable("RabbitMQ", f"{AMQP_URL}: {exc}")
    configure(broker_url=AMQP_URL, task_default_queue=queue)
    eta = datetime(2030, 1, 1, tzinfo=UTC)
    starts = [
        dispatch.StartMessage(
            "export", i, str(uuid.uuid4()), {"job": f"47|J{i}|"}, eta if i else None
        )
        for i in range(3)
    ]
    try:
        assert dispatch._redis_sender() is None
        dispatch.send_starts(starts)
        got: list[Any] = []
        with Connection(AMQP_URL) as conn:
            simple = conn.SimpleQueue(queue)
            for _ in starts:
                message = simple.get(timeout=10)
                got.append((message.headers, message.decode()))
                message.ack()
            simple.close()
            conn.default_channel.queue_delete(queue)
    finally:
        configure()
    for start, (headers, body) in zip(starts, got, strict=True):
        assert headers["id"] == headers["root_id"] == start.task_id
        assert headers["task"] == "jobengine.export.start"
        assert headers["eta"] == (start.eta.isoformat() if start.eta else None)
        assert body[1] == {"run_id": start.run_id, **start.labels}


# --- requeue of a start that never arrived -----------------------------------------------------


def test_a_start_message_that_never_arrived_is_sent_again(stack: Any) -> None:
    company, assets = stack.company(1)
    configure(task_default_queue="nobody-reads-this")  # the message is lost to the workers
    try:
        handle = submit(export_request(company, assets, "Lost Start"))
    finally:
        configure()
    with get_runtime().store.read() as session:
        run = session.scalar(
            select(Run).join(Job, Job.id == Run.job_id).where(Job.name == "Lost Start")
        )
    assert run is not None and run.state == "Queued" and run.dispatched_at is not None
    assert f"{run.run_name}:start" not in tick().resent  # not yet: it was sent moments ago
    stall = get_runtime().settings.stall_seconds
    later = utcnow() + timedelta(seconds=stall + 1)
    report = tick(now=later)
    assert f"{run.run_name}:start" in report.resent
    with get_runtime().store.read() as session:  # its clock restarts: once per period at most
        again = session.get(Run, run.id)
        assert again is not None and again.dispatched_at == later
    log = stack.wait(company, handle)
    assert log.state == "Done" and log.file_success_count == 1
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("nobody-reads-this")
