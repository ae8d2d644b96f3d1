"""Atomic state changes of runs and items: the run-once guards.

Each function is one conditional UPDATE (or a short transaction of them). Whoever's UPDATE
changes the row owns the step; a redelivered or duplicated message finds the row already moved
and does nothing. Claims carry a lease so that the work of a killed worker is taken over once the
lease lapses; a live worker extends its lease while it works (:func:`extend_item_lease`,
:func:`extend_run_lease`, called by :mod:`jobengine.engine.heartbeat`), so a long step is never
taken over. A claim is re-entrant for its holder: a step that met an outage of the store starts
again from the top and takes its own claim back.

The guards a worker passes for every job are HotStatements (:mod:`jobengine.store.hot`): Core
statements compiled once per dialect and run on the session's connection, inside its
transaction, after flushing what the session holds (as its own ``execute`` would), so that the
statements reach the store in the order they were made. Their conditions are the guarantees;
the ORM is not needed to state them, and its cost (building, caching and wrapping each
statement) was a third of a worker's time on small jobs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple, TypeVar, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import manager_of_class, set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.elements import ColumnElement

from jobengine.i18n import LogMessage, english, message_args
from jobengine.store.db import commit_without_flush
from jobengine.store.hot import HotStatement, pipelined
from jobengine.store.schema import (
    COMPANIES,
    JOBS,
    RUNS,
    Company,
    Job,
    LogDetail,
    Run,
    RunItem,
    UTCDateTime,
    utcnow,
)
from jobengine.store.states import (
    ACTIVE_RUNS,
    STARTED_RUNS,
    ItemState,
    RunState,
    TriggerState,
)

__all__ = [
    "Counted",
    "ItemClaim",
    "LogEntry",
    "add_items",
    "cancel_held_item",
    "claim_finish",
    "claim_inline_finish",
    "claim_item",
    "claim_items",
    "claim_loaded_items",
    "complete_item",
    "detached",
    "end_item",
    "end_items",
    "end_run",
    "extend_held_leases",
    "extend_item_lease",
    "extend_run_lease",
    "finish_reads",
    "get_run",
    "load_run",
    "lock_job",
    "lock_job_of_run",
    "release_items",
    "run_flags",
    "run_items",
    "stop_requested",
    "write_log",
    "write_logs",
    "write_record",
]

RUN_ITEMS = cast(Table, RunItem.__table__)
LOG_DETAILS = cast(Table, LogDetail.__table__)
_R, _I, _J = RUNS.c, RUN_ITEMS.c, JOBS.c
T = TypeVar("T")


def _at(name: str) -> Any:
    """A time parameter (aware in, naive UTC in the store, as the ORM writes it)."""
    return bindparam(name, type_=UTCDateTime())


def _one_of(column: ColumnElement[Any], values: Sequence[str]) -> ColumnElement[bool]:
    """``column IN (...)`` written out: a fixed statement (HotStatement has no IN lists)."""
    return or_(*(column == value for value in values))


def _hot(session: Session) -> Connection:
    """The connection of the session's transaction, for a HotStatement: what the session holds
    is flushed first, as its own ``execute`` would (autoflush), so that rows added through the
    ORM (a run's items) reach the store before the statements that follow them."""
    session.flush()  # only a check when the session holds no changes
    return session.connection()


_LOADED = (Run, Job, Company)
_LOAD = (
    select(*RUNS.c, *JOBS.c, *COMPANIES.c)
    .join(JOBS, _J.id == _R.job_id)
    .join(COMPANIES, COMPANIES.c.id == _R.company_id)
    .where(_R.id == bindparam("run"))
)
_LOAD_RUN = HotStatement(_LOAD, typed=True)
# The same, with the job's row locked as lock_job_of_run locks it (PostgreSQL; SQLite has no
# FOR UPDATE and needs none): one round trip for the two.
_LOAD_RUN_LOCKING_JOB = HotStatement(_LOAD.with_for_update(of=JOBS), typed=True)
_GET_RUN = HotStatement(select(*RUNS.c).where(_R.id == bindparam("run")), typed=True)
# Each entity's attribute names, in the order of its table's columns in the rows above.
_LOAD_KEYS = [[c.key for c in cast(Table, cls.__table__).c] for cls in _LOADED]
assert all(keys[0] == "id" for keys in _LOAD_KEYS)  # _attached finds the id first


def _attached(session: Session, cls: type[Any], keys: list[str], values: Sequence[Any]) -> Any:
    """The object of ``cls`` a row holds, persistent in ``session`` as the ORM would load it
    (its changes are flushed): the one the session holds already, else made from the row."""
    known = session.identity_map.get(identity_key(cls, values[0]))  # the id comes first
    if known is not None:
        return known
    obj = detached(cls, keys, values)
    session.add(obj)
    return obj


def detached(cls: type[T], keys: Sequence[str], values: Sequence[Any]) -> T:
    """The object of ``cls`` a row holds, detached, as the ORM's loading makes one once its
    session closed: the values go straight into the instance's dict (committed, no change
    events) of an instance made without ``__init__``, whose instrumented attribute sets were a
    third of a pool child's time in loading a run."""
    obj = _manager(cls).new_instance()
    obj.__dict__.update(zip(keys, values, strict=True))
    make_transient_to_detached(obj)  # its values are the row's, committed
    return cast(T, obj)


_MANAGERS: dict[type[Any], Any] = {}


def _manager(cls: type[Any]) -> Any:
    """The ORM's class manager of ``cls`` (which makes its instances without ``__init__``)."""
    found = _MANAGERS.get(cls)
    if found is None:
        found = _MANAGERS[cls] = manager_of_class(cls)
    return found


def load_run(
    session: Session, run_id: int, *, lock_job: bool = False
) -> tuple[Run, Job, Company] | None:
    """A run, its job and its company, in one query, as persistent objects of ``session``,
    built from the row without the ORM's loading machinery; None if there is no such run.
    ``lock_job``: the job's row is locked too, as :func:`lock_job_of_run` would lock it."""
    load = _LOAD_RUN_LOCKING_JOB if lock_job else _LOAD_RUN
    return _loaded_run(session, load.first(_hot(session), {"run": run_id}))


def claim_loaded_start(
    session: Session, run_id: int, worker: str, lease: float
) -> tuple[tuple[Run, Job, Company] | None, bool]:
    """:func:`load_run` (the job's row locked) and the start's claim, sent together (on
    PostgreSQL one round trip, with the transaction's BEGIN when it was opened by
    :meth:`~jobengine.store.db.Store.write_pipelined`, else after the one psycopg waits for its
    BEGIN): the run, its job and its company as they were before the claim, and whether it
    claimed the start (Queued -> Running for ``worker``, or a start whose lease lapsed taken
    over, or ``worker``'s own taken back; ``_CLAIM_START``). The claim is made whatever the
    run was found to be: a caller that decides from the run not to start it rolls the
    transaction back."""
    conn = _hot(session)
    with pipelined(conn):
        load = _LOAD_RUN_LOCKING_JOB.send(conn, {"run": run_id})
        claim = _CLAIM_START.send(conn, _claim_params(run_id, worker, lease))
    claimed = claim.done() == 1
    return _loaded_run(session, next(iter(load.all()), None)), claimed


def _loaded_run(session: Session, row: Sequence[Any] | None) -> tuple[Run, Job, Company] | None:
    if row is None:
        return None
    made: list[Any] = []
    start = 0
    for cls, keys in zip(_LOADED, _LOAD_KEYS, strict=True):
        made.append(_attached(session, cls, keys, row[start : start + len(keys)]))
        start += len(keys)
    return made[0], made[1], made[2]


def get_run(session: Session, run_id: int) -> Run | None:
    """``session.get(Run, run_id)`` for the runner's hot path: the session's own object, else
    one read with a HotStatement and attached; None if there is no such run."""
    known = session.identity_map.get(identity_key(Run, run_id))
    if known is not None:
        return known
    row = _GET_RUN.first(_hot(session), {"run": run_id})
    return None if row is None else cast(Run, _attached(session, Run, _LOAD_KEYS[0], row))


def lock_job(session: Session, job: Job) -> None:
    """Lock a job's row (PostgreSQL) before touching its runs, and read it afresh: the control
    operations take the locks in the same order as the workers (job, then runs)."""
    session.execute(select(Job.id).where(Job.id == job.id).with_for_update())
    session.refresh(job)


def _serialized(session: Session) -> bool:
    """SQLite: every write transaction holds the one write lock from its BEGIN IMMEDIATE, so
    there are no row locks to order (and FOR UPDATE means nothing there)."""
    bind = session.get_bind()
    return bind.dialect.name == "sqlite"


_LOCK_JOB_OF_RUN = HotStatement(
    select(_J.id)
    .join(RUNS, _R.job_id == _J.id)
    .where(_R.id == bindparam("run"))
    .with_for_update(of=JOBS)
)


def lock_job_of_run(session: Session, run_id: int) -> None:
    """Lock the run's job row first (PostgreSQL), so that every transaction touching a job and
    its runs takes the locks in the same order: job, then runs. No deadlocks."""
    if _serialized(session):
        return
    _LOCK_JOB_OF_RUN.all(_hot(session), {"run": run_id})


_CLAIM_START = HotStatement(
    update(RUNS)
    .where(
        _R.id == bindparam("run"),
        or_(
            _R.state == RunState.QUEUED,
            and_(
                _one_of(_R.state, STARTED_RUNS),
                _R.planned.is_(False),
                or_(
                    _R.lease_until.is_(None),
                    _R.lease_until < _at("now"),
                    _R.claimed_by == bindparam("worker"),
                ),
            ),
        ),
    )
    .values(
        state=case((_R.state == RunState.QUEUED, RunState.RUNNING), else_=_R.state),
        claimed_by=bindparam("worker"),
        lease_until=_at("until"),
        started_at=_at("now"),
        last_progress_update=_at("now"),
    )
)


def _claim_params(run_id: int, worker: str, lease: float) -> dict[str, Any]:
    now = utcnow()
    return {"run": run_id, "worker": worker, "now": now, "until": now + timedelta(seconds=lease)}


@dataclass(frozen=True)
class ItemClaim:
    """The answer to an item claim: owned, already finished, or busy elsewhere until a time."""

    status: Literal["owned", "finished", "busy", "missing"]
    item: RunItem | None = None
    busy_until: datetime | None = None


_ITEM_COLUMNS = ("id", "run_id", "seq", "key", "state", "attempts", "claimed_by", "lease_until",
                 "result")  # fmt: skip
# An item a claim may take: pending, or running under a lapsed lease (its worker died) or
# under the claimer's own (a step that met an outage takes its claim back).
_CLAIMABLE = or_(
    _I.state == ItemState.PENDING,
    and_(
        _I.state == ItemState.RUNNING,
        or_(_I.lease_until < _at("now"), _I.claimed_by == bindparam("worker")),
    ),
)
# The item comes back as the claim left it (RETURNING): no second read for the usual answer.
_CLAIM_ITEM = HotStatement(
    update(RUN_ITEMS)
    .where(_I.run_id == bindparam("run"), _I.seq == bindparam("seq"), _CLAIMABLE)
    .values(
        state=ItemState.RUNNING,
        claimed_by=bindparam("worker"),
        lease_until=_at("until"),
        attempts=_I.attempts + 1,
    )
    .returning(*(RUN_ITEMS.c[name] for name in _ITEM_COLUMNS)),
    typed=True,
)
_ITEM = HotStatement(
    select(*(RUN_ITEMS.c[name] for name in _ITEM_COLUMNS)).where(
        _I.run_id == bindparam("run"), _I.seq == bindparam("seq")
    ),
    typed=True,
)


def claim_item(session: Session, run_id: int, seq: int, worker: str, lease: float) -> ItemClaim:
    """pending -> running for ``worker``; a lapsed lease of a dead worker is taken over, and
    ``worker``'s own claim taken back (after an outage interrupted its step). The item comes
    back as its row holds it after the claim (detached: read, not to be changed)."""
    now = utcnow()
    conn = _hot(session)
    params = {"run": run_id, "seq": seq, "worker": worker, "now": now,
              "until": now + timedelta(seconds=lease)}  # fmt: skip
    claimed = _CLAIM_ITEM.first(conn, params)
    if claimed is not None:
        return ItemClaim("owned", RunItem(**dict(zip(_ITEM_COLUMNS, claimed, strict=True))))
    row = _ITEM.first(conn, {"run": run_id, "seq": seq})
    if row is None:
        return ItemClaim("missing")
    item = RunItem(**dict(zip(_ITEM_COLUMNS, row, strict=True)))
    if item.state == ItemState.RUNNING:
        return ItemClaim("busy", item, item.lease_until)
    return ItemClaim("finished", item)


@functools.lru_cache(maxsize=64)
def _claim_items(count: int) -> HotStatement:
    """:data:`_CLAIM_ITEM` for ``count`` items at once (``seq IN (:s0, ...)``), returning the
    seq and key of each item it claimed."""
    return HotStatement(
        update(RUN_ITEMS)
        .where(
            _I.run_id == bindparam("run"),
            _I.seq.in_([bindparam(f"s{n}", type_=Integer()) for n in range(count)]),
            _CLAIMABLE,
        )
        .values(
            state=ItemState.RUNNING,
            claimed_by=bindparam("worker"),
            lease_until=_at("until"),
            attempts=_I.attempts + 1,
        )
        .returning(_I.seq, _I.key),
        typed=True,
    )


def claim_items(
    session: Session, run_id: int, seqs: Sequence[int], worker: str, lease: float
) -> tuple[list[tuple[int, str]], list[ItemClaim]]:
    """:func:`claim_item` for several items of a run in one statement: the items claimed, as
    ``(seq, key)`` in the order of ``seqs``, and the answer for each of the others (busy
    elsewhere until a time, finished, or missing), also in that order."""
    conn = _hot(session)
    claimed = _claim_items(len(seqs)).all(conn, _claim_items_params(run_id, seqs, worker, lease))
    return _claims(conn, run_id, seqs, claimed)


def claim_loaded_items(
    session: Session, run_id: int, seqs: Sequence[int], worker: str, lease: float
) -> tuple[tuple[Run, Job, Company] | None, list[tuple[int, str]], list[ItemClaim]]:
    """:func:`load_run` and :func:`claim_items`, sent together (on PostgreSQL one round trip,
    with the transaction's BEGIN when it was opened by
    :meth:`~jobengine.store.db.Store.write_pipelined`), the transaction's COMMIT set not to
    wait for the log's flush (:func:`~jobengine.store.db.commit_without_flush`: counting the
    items is a durable commit before anything rests on these claims). The claims are made
    whatever the run was found to be: a caller that decides from the run not to go on (it is
    stopped or paused) rolls the transaction back."""
    conn = _hot(session)
    with pipelined(conn):
        load = _LOAD_RUN.send(conn, {"run": run_id})
        claim = _claim_items(len(seqs)).send(conn, _claim_items_params(run_id, seqs, worker, lease))
        commit_without_flush(conn)
    claimed = claim.all()  # the results came back with the block's closing round trip
    held, others = _claims(conn, run_id, seqs, claimed)
    return _loaded_run(session, next(iter(load.all()), None)), held, others


def _claim_items_params(
    run_id: int, seqs: Sequence[int], worker: str, lease: float
) -> dict[str, Any]:
    now = utcnow()
    params: dict[str, Any] = {f"s{n}": seq for n, seq in enumerate(seqs)}
    params.update(run=run_id, worker=worker, now=now, until=now + timedelta(seconds=lease))
    return params


def _claims(
    conn: Connection, run_id: int, seqs: Sequence[int], claimed: Sequence[Sequence[Any]]
) -> tuple[list[tuple[int, str]], list[ItemClaim]]:
    """The items of ``seqs`` claimed (``claimed``: their seqs and keys), as ``(seq, key)`` in
    the order of ``seqs``, and each other one read for why not."""
    keys = {int(seq): str(key) for seq, key in claimed}
    others: list[ItemClaim] = []
    for seq in seqs:
        if seq in keys:
            continue
        row = _ITEM.first(conn, {"run": run_id, "seq": seq})
        if row is None:
            others.append(ItemClaim("missing", RunItem(run_id=run_id, seq=seq)))
            continue
        item = RunItem(**dict(zip(_ITEM_COLUMNS, row, strict=True)))
        busy = item.state == ItemState.RUNNING
        others.append(ItemClaim("busy" if busy else "finished", item, item.lease_until))
    return [(seq, keys[seq]) for seq in seqs if seq in keys], others


def _give_back(**values: Any) -> HotStatement:
    """An item ``worker`` claimed and has not begun, moved on with ``values``: its claim is
    taken back (``attempts`` counts the claims of an item that were begun)."""
    return HotStatement(
        update(RUN_ITEMS)
        .where(
            _I.run_id == bindparam("run"),
            _I.seq == bindparam("seq"),
            _I.state == ItemState.RUNNING,
            _I.claimed_by == bindparam("worker"),
        )
        .values(lease_until=None, attempts=_I.attempts - 1, **values)
    )


_RELEASE_HELD = _give_back(state=ItemState.PENDING, claimed_by=None)
_CANCEL_HELD = _give_back(state=ItemState.CANCELLED)


def release_items(session: Session, run_id: int, seqs: Sequence[int], worker: str) -> None:
    """Give back items ``worker`` claimed and has not begun (a chunk paused or out of time):
    pending again, as if never claimed, for whoever is sent them next."""
    rows = [{"run": run_id, "seq": seq, "worker": worker} for seq in seqs]
    _RELEASE_HELD.execute_many(_hot(session), rows)


def cancel_held_item(session: Session, run_id: int, seq: int, worker: str) -> bool:
    """running -> cancelled for an item ``worker`` claimed and has not begun (its run was
    stopped); False if it was not ``worker``'s."""
    params = {"run": run_id, "seq": seq, "worker": worker}
    return _CANCEL_HELD.execute(_hot(session), params) == 1


_ITEMS = HotStatement(
    select(*(RUN_ITEMS.c[name] for name in _ITEM_COLUMNS))
    .where(_I.run_id == bindparam("run"))
    .order_by(_I.seq),
    typed=True,
)


def run_items(session: Session, run_id: int) -> list[RunItem]:
    """A run's items in order (the ones an earlier start planned), as their rows hold them
    (transient objects: read, not to be changed)."""
    rows = _ITEMS.all(_hot(session), {"run": run_id})
    return [_read_item(dict(zip(_ITEM_COLUMNS, row, strict=True))) for row in rows]


def _read_item(values: dict[str, Any]) -> RunItem:
    """A transient RunItem holding ``values``, to be read and never changed: made as the ORM's
    loading makes objects (their values straight into the instance's dict), without the
    constructor's instrumented sets (which were half of a 500-item run's start)."""
    item: RunItem = _manager(RunItem).new_instance()
    item.__dict__.update(values)
    return item


_ADD_ITEM_KEYS = ("run_id", "seq", "key", "state", "claimed_by", "lease_until", "attempts")
_ADD_ITEM = HotStatement(insert(RUN_ITEMS), insert_keys=_ADD_ITEM_KEYS)
_PLANNED = HotStatement(
    update(RUNS)
    .where(_R.id == bindparam("run"))
    .values(total_items=bindparam("total", type_=Integer()),
            progress_message=bindparam("message", type_=String()))
)  # fmt: skip


def add_items(
    session: Session,
    run_id: int,
    keys: Sequence[str],
    *,
    holder: str | None,
    lease: float,
    message: str,
) -> list[RunItem]:
    """Record a run's planned items (one ``executemany``) and their count; claimed already by
    ``holder`` (who does them inline) when given, else pending. ``message`` is the run's
    progress message for none of them done. The items come back as written (transient)."""
    if holder is None:
        claim: dict[str, Any] = {"state": ItemState.PENDING, "claimed_by": None,
                                 "lease_until": None, "attempts": 0}  # fmt: skip
    else:
        until = utcnow() + timedelta(seconds=lease)
        claim = {"state": ItemState.RUNNING, "claimed_by": holder, "lease_until": until,
                 "attempts": 1}  # fmt: skip
    rows = [{"run_id": run_id, "seq": n, "key": key, **claim} for n, key in enumerate(keys)]
    conn = _hot(session)
    _ADD_ITEM.execute_many(conn, rows)
    _PLANNED.execute(conn, {"run": run_id, "total": len(rows), "message": message})
    return [_read_item({**row, "result": {}}) for row in rows]


_RUN_FLAGS = HotStatement(
    select(_R.stop_requested, _R.paused).where(_R.id == bindparam("run")), typed=True
)


def run_flags(conn: Connection, run_id: int) -> tuple[bool, bool] | None:
    """A run's control flags as the store holds them now: ``(stop_requested, paused)``; None
    if there is no such run."""
    row = _RUN_FLAGS.first(conn, {"run": run_id})
    return None if row is None else (bool(row[0]), bool(row[1]))


_STOP_REQUESTED = HotStatement(
    select(_R.stop_requested).where(_R.id == bindparam("run")), typed=True
)
_DONE_RESULTS = HotStatement(
    select(_I.result)
    .where(_I.run_id == bindparam("run"), _I.state == ItemState.DONE)
    .order_by(_I.seq),
    typed=True,
)


def stop_requested(conn: Connection, run_id: int) -> bool:
    """Whether the run has been stopped (stopJob, deleteJob)."""
    return bool(_STOP_REQUESTED.scalar(conn, {"run": run_id}))


def finish_reads(session: Session, run_id: int) -> tuple[bool, list[dict[str, Any]]]:
    """What a finish reads, in the transaction that claims it: whether the run was stopped,
    and the results of its items that ended ``done``, in item order."""
    stopped = stop_requested(_hot(session), run_id)
    done = [dict(row[0] or {}) for row in _DONE_RESULTS.all(_hot(session), {"run": run_id})]
    return stopped, done


_CANCEL_ITEM = HotStatement(
    update(RUN_ITEMS)
    .where(
        _I.run_id == bindparam("run"),
        _I.seq == bindparam("seq"),
        or_(
            _I.state == ItemState.PENDING,
            and_(_I.state == ItemState.RUNNING, _I.lease_until < _at("now")),
        ),
    )
    .values(state=ItemState.CANCELLED, lease_until=None)
    .returning(_I.key)
)


def cancel_item(session: Session, run_id: int, seq: int) -> str | None:
    """pending -> cancelled (a stopped run's item that never started), or running -> cancelled
    when its claim lapsed (its worker died holding it: nobody else would ever end it); the
    item's key, or None if it was neither."""
    params = {"run": run_id, "seq": seq, "now": utcnow()}
    key = _CANCEL_ITEM.scalar(_hot(session), params)
    return None if key is None else str(key)


@dataclass(frozen=True)
class Counts:
    """Counter increments for finished items (one, or several counted together)."""

    success: int = 0
    error: int = 0
    warning: int = 0
    size: int = 0
    duplicate: int = 0  # JobLog fileDuplicateCount
    update: int = 0  # JobLog fileUpdateCount

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.success + other.success,
            self.error + other.error,
            self.warning + other.warning,
            self.size + other.size,
            self.duplicate + other.duplicate,
            self.update + other.update,
        )


def _complete_item(claimed: bool) -> HotStatement:
    """The item's move to its final state: from ``running`` under the worker's claim, or (no
    worker: a pending item ended without being worked on) from ``pending``."""
    held = (
        and_(_I.state == ItemState.RUNNING, _I.claimed_by == bindparam("worker"))
        if claimed
        else _I.state == ItemState.PENDING
    )
    return HotStatement(
        update(RUN_ITEMS)
        .where(_I.run_id == bindparam("run"), _I.seq == bindparam("seq"), held)
        .values(
            state=bindparam("final", type_=String()),
            result=bindparam("result", type_=JSON()),
            lease_until=None,
        )
    )


_COMPLETE_CLAIMED, _COMPLETE_PENDING = _complete_item(True), _complete_item(False)


def complete_item(
    session: Session,
    run_id: int,
    seq: int,
    worker: str | None,
    *,
    final: ItemState,
    counts: Counts,
    result: dict[str, Any] | None = None,
) -> Counted | None:
    """Move a claimed item to its final state and count it; None if it was not ours to finish.

    Returns the run's finished and total items after counting (so the caller that finishes
    the last item sends the finishing task) and its stop and pause flags.
    """
    if not end_item(session, run_id, seq, worker, final=final, result=result):
        return None
    return count_finished(session, run_id, counts)


def end_items(
    session: Session,
    run_id: int,
    worker: str,
    items: Sequence[tuple[int, ItemState, dict[str, Any] | None]],
) -> bool:
    """:func:`end_item` for several items ``worker`` claimed, ``(seq, final, result)`` each,
    in one ``executemany`` (on PostgreSQL one round trip); whether every one of them was
    still ``worker``'s and moved. When not, the caller rolls the transaction back (some
    moved, some did not) and ends them one by one."""
    rows = [
        {"run": run_id, "seq": seq, "final": final, "result": result or {}, "worker": worker}
        for seq, final, result in items
    ]
    return _COMPLETE_CLAIMED.execute_many(_hot(session), rows) == len(rows)


def end_item(
    session: Session,
    run_id: int,
    seq: int,
    worker: str | None,
    *,
    final: ItemState,
    result: dict[str, Any] | None = None,
) -> bool:
    """Move a claimed item (a pending one: ``worker`` None) to its final state, without
    counting it (the caller counts it with others: :func:`count_finished`); False if it was
    not ours to finish."""
    params: dict[str, Any] = {"run": run_id, "seq": seq, "final": final, "result": result or {}}
    if worker is None:
        moved = _COMPLETE_PENDING.execute(_hot(session), params)
    else:
        moved = _COMPLETE_CLAIMED.execute(_hot(session), {**params, "worker": worker})
    return moved == 1


class OneShotEnd(NamedTuple):
    """What :func:`end_one_shot` found: whether the item was still the worker's to count
    (when not, the caller rolls its transaction back), and the run's success, error and
    warning counts and item total once ended, or None if it was not ended."""

    counted: bool
    ended: tuple[int, int, int, int] | None


def end_one_shot(
    session: Session,
    run: Run,
    seq: int,
    worker: str,
    *,
    final: ItemState,
    counts: Counts,
    result: dict[str, Any],
    output: dict[str, Any],
) -> OneShotEnd:
    """:func:`complete_item`, then :func:`claim_inline_finish` and :func:`end_run` (Done, with
    ``output``) in one compare-and-set, for a run of one item that ``worker`` did in its start
    task, the job's row locked first (:func:`lock_job_of_run`): the four statements sent
    together, on PostgreSQL in one round trip (with the transaction's BEGIN when it was opened by
    :meth:`~jobengine.store.db.Store.write_pipelined`, else after the one psycopg waits for it).

    So they all run even when the first finds the item no longer ``worker``'s: then
    ``counted`` is False and the caller must roll the transaction back. ``ended`` None: items
    are left or the start is no longer ``worker``'s (the item is counted, the run unchanged).
    Ended, ``run`` is updated in memory too; its trigger is left to :func:`log_end`."""
    conn = _hot(session)
    now = utcnow()
    item = {"run": run.id, "seq": seq, "final": final, "result": result, "worker": worker}
    with pipelined(conn):
        lock = None if _serialized(session) else _LOCK_JOB_OF_RUN.send(conn, {"run": run.id})
        moved = _COMPLETE_CLAIMED.send(conn, item)
        counted = _COUNT_FINISHED.send(conn, _count_params(run.id, counts, 1, now))
        ended = _END_INLINE.send(conn, {"run": run.id, "worker": worker, "now": now,
                                        "output": output})  # fmt: skip
    # their results came back with the block's closing round trip
    if lock is not None:
        lock.all()
    if moved.done() != 1:
        counted.close()
        ended.close()
        return OneShotEnd(False, None)
    _counted(run.id, next(iter(counted.all()), None))
    row = next(iter(ended.all()), None)
    if row is None:
        return OneShotEnd(True, None)
    _ended_inline(run, worker, output, now)
    success, errors, warnings, total = (int(v) for v in row)
    return OneShotEnd(True, (success, errors, warnings, total))


def log_end(session: Session, run: Run, entries: Sequence[LogEntry]) -> None:
    """After :func:`end_one_shot` ended a run: its job's trigger completes (a one-shot job's)
    and its last log rows are written, sent together (one round trip on PostgreSQL)."""
    conn = _hot(session)
    with pipelined(conn):
        trigger = _TRIGGER_DONE.send(conn, {"job": run.job_id})
        write_logs(session, run, entries)
    _trigger_completed(session, run.job_id, trigger.done())


def _count(name: str) -> Any:
    return bindparam(name, type_=Integer())


_COUNT_FINISHED = HotStatement(
    update(RUNS)
    .where(_R.id == bindparam("run"))
    .values(
        finished_items=_R.finished_items + _count("items"),
        success_count=_R.success_count + _count("success"),
        error_count=_R.error_count + _count("error"),
        warning_count=_R.warning_count + _count("warning"),
        duplicate_count=_R.duplicate_count + _count("duplicate"),
        update_count=_R.update_count + _count("update"),
        total_size=_R.total_size + _count("size"),
        progress=((_R.finished_items + _count("items")) * 100) / _R.total_items,
        # i18n.PROGRESS_MESSAGE in English (queries render it in the reader's locale)
        progress_message=sql_cast(_R.finished_items + _count("items"), String)
        + " of "
        + sql_cast(_R.total_items, String)
        + " file(s) processed",
        last_progress_update=_at("now"),
    )
    .returning(_R.finished_items, _R.total_items, _R.stop_requested, _R.paused),
    typed=True,
)


class Counted(NamedTuple):
    """A run's items finished and in all after more were counted, and its control flags as
    the same statement found them."""

    finished: int
    total: int
    stop_requested: bool
    paused: bool


def count_finished(session: Session, run_id: int, counts: Counts, items: int = 1) -> Counted:
    """Add ``items`` finished items and their counters to the run, in one statement that
    returns the counts and the run's flags after it."""
    row = _COUNT_FINISHED.first(_hot(session), _count_params(run_id, counts, items, utcnow()))
    return _counted(run_id, row)


def _count_params(run_id: int, counts: Counts, items: int, now: datetime) -> dict[str, Any]:
    return {"run": run_id, "items": items, "success": counts.success, "error": counts.error,
            "warning": counts.warning, "duplicate": counts.duplicate, "update": counts.update,
            "size": counts.size, "now": now}  # fmt: skip


def _counted(run_id: int, row: Sequence[Any] | None) -> Counted:
    if row is None:
        raise LookupError(f"run {run_id} is gone")  # the ORM's .one() raised here too
    return Counted(int(row[0]), int(row[1]), bool(row[2]), bool(row[3]))


_MARK_FINISH_SENT = HotStatement(
    update(RUNS)
    .where(
        _R.id == bindparam("run"),
        _R.planned.is_(True),
        _R.finished_items >= _R.total_items,
        _R.finish_sent_at.is_(None),
    )
    .values(finish_sent_at=_at("now"))
)


def mark_finish_sent(session: Session, run_id: int) -> bool:
    """Record that the finishing task is being sent; True only for the one caller that should."""
    return _MARK_FINISH_SENT.execute(_hot(session), {"run": run_id, "now": utcnow()}) == 1


# A run whose start ``worker`` holds, every item finished, its finish neither sent nor planned.
_CLAIM_INLINE_FINISH_GUARD = (
    _R.id == bindparam("run"),
    _one_of(_R.state, STARTED_RUNS),
    _R.planned.is_(False),
    _R.claimed_by == bindparam("worker"),
    _R.finished_items >= _R.total_items,
    _R.finish_sent_at.is_(None),
)
# What claiming such a run's finish sets (the lease apart).
_INLINE_FINISH_CLAIMED = {
    "planned": True,
    "finish_sent_at": _at("now"),
    "claimed_by": bindparam("worker"),
}
_CLAIM_INLINE_FINISH = HotStatement(
    update(RUNS)
    .where(*_CLAIM_INLINE_FINISH_GUARD)
    .values(**_INLINE_FINISH_CLAIMED, lease_until=_at("until"))
)


def claim_inline_finish(session: Session, run_id: int, worker: str, lease: float) -> bool:
    """A run whose items one worker did in its start task (its start claim is ``worker``'s):
    mark it planned, its finish sent and claimed by ``worker``, in one conditional UPDATE;
    False if items are left or the start is no longer ``worker``'s."""
    now = utcnow()
    params = {"run": run_id, "worker": worker, "now": now, "until": now + timedelta(seconds=lease)}
    return _CLAIM_INLINE_FINISH.execute(_hot(session), params) == 1


_END_INLINE = HotStatement(
    update(RUNS)
    .where(*_CLAIM_INLINE_FINISH_GUARD)
    .values(
        **_INLINE_FINISH_CLAIMED,
        lease_until=None,
        state=RunState.DONE,
        ended_at=_at("now"),
        last_progress_update=_at("now"),
        progress=100,
        output=bindparam("output", type_=JSON()),
    )
    .returning(_R.success_count, _R.error_count, _R.warning_count, _R.total_items)
)


def _ended_inline(run: Run, worker: str, output: dict[str, Any], now: datetime) -> None:
    """What ``_END_INLINE`` set, in ``run`` (without reading it again)."""
    ended = {"planned": True, "finish_sent_at": now, "claimed_by": worker, "lease_until": None,
             "state": RunState.DONE, "ended_at": now, "last_progress_update": now,
             "progress": 100, "output": output}  # fmt: skip
    for name, value in ended.items():
        set_committed_value(run, name, value)


_CLAIM_FINISH = HotStatement(
    update(RUNS)
    .where(
        _R.id == bindparam("run"),
        _one_of(_R.state, STARTED_RUNS),
        _R.planned.is_(True),
        _R.finished_items >= _R.total_items,
        or_(
            _R.lease_until.is_(None),
            _R.lease_until < _at("now"),
            _R.claimed_by == bindparam("worker"),
        ),
    )
    .values(claimed_by=bindparam("worker"), lease_until=_at("until"))
)


def claim_finish(session: Session, run_id: int, worker: str, lease: float) -> bool:
    """Take the finishing step of a run whose items are all finished (once; or take back
    ``worker``'s own claim)."""
    now = utcnow()
    params = {"run": run_id, "worker": worker, "now": now, "until": now + timedelta(seconds=lease)}
    return _CLAIM_FINISH.execute(_hot(session), params) == 1


_END_TYPES: dict[str, Any] = {"state": String(), "ended_at": UTCDateTime(),
                              "lease_until": UTCDateTime(), "last_progress_update": UTCDateTime(),
                              "fatal_error": Boolean(), "progress": Integer(),
                              "output": JSON()}  # fmt: skip


@functools.lru_cache(maxsize=16)
def _end(names: tuple[str, ...]) -> HotStatement:
    """The compare-and-set that ends a run, setting these columns (a few combinations)."""
    return HotStatement(
        update(RUNS)
        .where(_R.id == bindparam("run"), _one_of(_R.state, ACTIVE_RUNS))
        .values({name: bindparam(f"v_{name}", type_=_END_TYPES[name]) for name in names})
    )


_TRIGGER_DONE = HotStatement(
    update(JOBS)
    .where(
        _J.id == bindparam("job"),
        _J.exec_schedule.is_(None),
        _J.trigger_state != TriggerState.PAUSED,
        _J.trigger_state != TriggerState.COMPLETE,
    )
    .values(trigger_state=TriggerState.COMPLETE, next_fire_at=None)
)


def end_run(
    session: Session,
    run: Run,
    state: RunState,
    *,
    fatal: bool = False,
    output: dict[str, Any] | None = None,
) -> bool:
    """Give an active run its final state, once: a compare-and-set on its state, so that two
    finishing steps (a re-sent one, one whose lease was taken over) never both end it, and a
    failure never overwrites an end already committed. False when the run had ended already.
    A one-shot job's trigger completes with its run. ``run`` is updated in memory too (and its
    job, if the session holds it)."""
    now = utcnow()
    values: dict[str, Any] = {
        "state": state,
        "ended_at": now,
        "lease_until": None,
        "last_progress_update": now,
    }
    if fatal:
        values["fatal_error"] = True
    if state == RunState.DONE:
        values["progress"] = 100
    if output is not None:
        values["output"] = output
    conn = _hot(session)
    params = {f"v_{name}": value for name, value in values.items()}
    if _end(tuple(values)).execute(conn, {"run": run.id, **params}) != 1:
        return False
    for name, value in values.items():  # what the row holds now, without reading it again
        set_committed_value(run, name, value)
    _complete_trigger(session, conn, run.job_id)
    return True


def _complete_trigger(session: Session, conn: Connection, job_id: int) -> None:
    """A one-shot job's trigger completes with its run (a schedule's stays)."""
    _trigger_completed(session, job_id, _TRIGGER_DONE.execute(conn, {"job": job_id}))


def _trigger_completed(session: Session, job_id: int, changed: int) -> None:
    """After ``_TRIGGER_DONE`` changed ``changed`` rows: the job in memory too."""
    if changed == 1:
        job = session.identity_map.get(identity_key(Job, job_id))
        if job is not None:  # as the ORM's synchronize_session="evaluate" did
            set_committed_value(job, "trigger_state", TriggerState.COMPLETE)
            set_committed_value(job, "next_fire_at", None)


def extend_item_lease(run_id: int, seq: int, worker: str, lease: float) -> Any:
    """The statement that extends ``worker``'s claim of an item (nothing if it lost it)."""
    return (
        update(RunItem)
        .where(
            RunItem.run_id == run_id,
            RunItem.seq == seq,
            RunItem.state == ItemState.RUNNING,
            RunItem.claimed_by == worker,
        )
        .values(lease_until=utcnow() + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    )


def extend_held_leases(run_id: int, worker: str, lease: float) -> Any:
    """The statement that extends ``worker``'s claims of a run's items, all of them (a chunk's
    items it claimed together, begun or not)."""
    return (
        update(RunItem)
        .where(
            RunItem.run_id == run_id,
            RunItem.state == ItemState.RUNNING,
            RunItem.claimed_by == worker,
        )
        .values(lease_until=utcnow() + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    )


def extend_run_lease(run_id: int, worker: str, lease: float) -> Any:
    """The statement that extends ``worker``'s claim of a run's start or finish."""
    return (
        update(Run)
        .where(Run.id == run_id, Run.state.in_(ACTIVE_RUNS), Run.claimed_by == worker)
        .values(lease_until=utcnow() + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    )


_RECORD_KEYS = ("run_id", "company_id", "log_type", "message")
_RECORD = HotStatement(insert(LOG_DETAILS), insert_keys=_RECORD_KEYS)
_LOG_KEYS = (*_RECORD_KEYS, "message_id", "message_args", "asset_name", "asset_type",
             "asset_handle")  # fmt: skip
_LOG = HotStatement(insert(LOG_DETAILS), insert_keys=_LOG_KEYS)


def write_record(session: Session, run: Run, log_type: str, value: str) -> None:
    """Add one job metadata row to a run (``OriginalJobName``, ``JobClient``...): its
    logMessage is ``value`` itself, data that is never translated."""
    _RECORD.execute(
        _hot(session),
        {"run_id": run.id, "company_id": run.company_id, "log_type": log_type,
         "message": value[:4000]},
    )  # fmt: skip


class LogEntry(NamedTuple):
    """One JobLogDetail row to write (see :func:`write_log`)."""

    log_type: str
    message_id: LogMessage
    args: Mapping[str, object]
    asset_name: str | None = None
    asset_type: str | None = None
    asset_handle: str | None = None


def write_log(
    session: Session,
    run: Run,
    log_type: str,
    message_id: LogMessage,
    *,
    asset_name: str | None = None,
    asset_type: str | None = None,
    asset_handle: str | None = None,
    **args: object,
) -> None:
    """Add one JobLogDetail row to a run: ``message_id`` with its ``args`` (stringified), and
    the English text they make, e.g. ``write_log(s, run, "ReturnSuccess", "published {path}",
    path=p)``. Arguments (names, paths, exception texts) are never translated."""
    entry = LogEntry(log_type, message_id, args, asset_name, asset_type, asset_handle)
    _LOG.execute(_hot(session), _log_values(run, entry))


def write_logs(session: Session, run: Run, entries: Sequence[LogEntry]) -> None:
    """Add rows to a run's log, in this order, in one statement (one round trip)."""
    _LOG.execute_many(_hot(session), [_log_values(run, entry) for entry in entries])


def _log_values(run: Run, entry: LogEntry) -> dict[str, Any]:
    values = message_args(entry.args)
    return {
        "run_id": run.id,
        "company_id": run.company_id,
        "log_type": entry.log_type,
        "message": english(entry.message_id, values)[:4000],
        "message_id": entry.message_id,
        "message_args": values,
        "asset_name": entry.asset_name,
        "asset_type": entry.asset_type,
        "asset_handle": entry.asset_handle,
    }
