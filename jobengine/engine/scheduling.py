"""The scheduler: Celery beat running our store-backed scheduler class.

``celery -A jobengine.celery_app beat -S jobengine.engine.scheduling:StoreScheduler`` (or
``jobengine beat``). Every tick, the beat that holds the Redis leader lock:

1. fires cron schedules that are due, as Quartz does: every fire time late by less than the
   misfire threshold (``JOBENGINE_MISFIRE_THRESHOLD``, 60 s) fires once, however many a slow
   tick or a leader change let pass; one later than that (a beat that was down) is a misfire
   and fires once, then the schedule goes on from the next fire time after now (Quartz's
   "fire once now"); a paused schedule does not fire;
2. sends one-shot ``execTime`` runs as they come inside the ETA horizon;
3. relays runs the broker did not take at submit time (the outbox);
4. re-sends the start of a queued run that waits on nothing: its queue is empty and it has not
   started ``JOBENGINE_IDLE_SECONDS`` after it was sent and after its ETA (the producer died
   between its commit and its send, the broker lost the message in a restart without
   persistence, the worker holding its ETA was killed). While its queue holds messages, a run
   may only be waiting its turn: then only after ``JOBENGINE_STALL_SECONDS``;
5. re-sends the steps of runs whose worker died and whose message was lost: claims whose lease
   lapsed (live steps keep theirs alive, :mod:`jobengine.engine.heartbeat`), finishes sent long ago,
   and the pending items of a run that waits on nothing (same rule as 4).

Ticks keep to the wall clock: each starts just after a multiple of ``JOBENGINE_BEAT_INTERVAL``
(for a 1 s interval, just after each second, when cron fire times fall due), however long the
last one took.

Every minute it also sends the e-mail notices an SMTP outage held back and, in a thread of its
own, the completion callbacks that are due (:func:`jobengine.notices.callbacks.callbacks_pending`).
At most once an hour (across beats: a Redis key with a TTL), again in a thread of its own, the
janitor deletes stored files no asset refers to (:mod:`jobengine.engine.janitor`).

Due schedules fire in batches (``FIRE_BATCH``): per batch one transaction reads the due jobs,
moves their next fire times and inserts their runs in one multi-row statement (already marked
sent), then their start messages go in one pipelined round trip; no job or company is loaded
through the ORM. 10,000 jobs on one cron are 20 transactions and 20 round trips.

The beat does that work before the fire time (``JOBENGINE_STAGE_AHEAD``, 5 s): a tick stages
the fires due within that window, writing their runs as ``Staged`` with the fire time as ETA
(:mod:`jobengine.store.staging`), and the tick at the fire time takes them (``TAKE_BATCH`` a
transaction: on PostgreSQL one statement, on SQLite one read and one update) and sends their
starts, first thing. Fires due at once that were not staged (a
job made inside the window, a beat that was down) fire as above.

Two beats never fire a schedule twice: only the lock holder ticks, and renews its lock between
batches (a tick longer than the lock's lease stops when it lost the lead); the batch's rows are
locked (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite's write transaction is exclusive), the
next fire time moves only from the value read, and each run's ``(job, fire key)`` is unique.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from celery.beat import Scheduler
from sqlalchemy import CursorResult, bindparam, or_, select, update

from jobengine.cron import CronExpression
from jobengine.cron import parse as parse_cron
from jobengine.embedded import redis_client
from jobengine.engine import dispatch, janitor
from jobengine.engine.runner import labels
from jobengine.engine.submission import send_run, send_runs
from jobengine.errors import Unavailable
from jobengine.kinds import kind_for
from jobengine.notices.callbacks import sweep_in_background
from jobengine.notices.email import notify_pending
from jobengine.runtime import Runtime, get_runtime
from jobengine.store.jobs import NewRun, fire_key, insert_runs, untaken_fires
from jobengine.store.schema import COMPANIES, JOBS, Company, Job, Run, RunItem, utcnow
from jobengine.store.staging import take_due
from jobengine.store.states import STARTED_RUNS, ItemState, RunState, TriggerState

__all__ = ["LeaderLock", "StoreScheduler", "TickReport", "tick"]

logger = logging.getLogger(__name__)

LOCK_KEY = "jobengine:beat:leader"
MAIL_SWEEP_SECONDS = 60.0
JANITOR_KEY = "jobengine:beat:janitor"
JANITOR_SECONDS = 3600

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


class LeaderLock:
    """A Redis lease held by one beat at a time, extended on every tick."""

    def __init__(self, client: redis.Redis, ttl: float, key: str = LOCK_KEY) -> None:
        self.client, self.key, self.ttl_ms = client, key, int(ttl * 1000)
        self.token = uuid.uuid4().hex
        self._script = client.register_script(_EXTEND)

    def hold(self) -> bool:
        """Take or extend the lease; False when another beat holds it."""
        return bool(self._script(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        if self.client.get(self.key) == self.token.encode():
            self.client.delete(self.key)


@dataclass
class TickReport:
    """What one tick sent (for logs and tests)."""

    fired: list[str] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)
    sent_at: list[str] = field(default_factory=list)
    relayed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)


def _cas(result: Any) -> bool:
    assert isinstance(result, CursorResult)
    return int(result.rowcount) == 1


FIRE_BATCH = 500  # jobs fired per transaction (and per pipelined send)
# Staged fires taken per transaction at their fire time (and per pipelined send): a take is one
# statement whose cost is nearly all per row, so fewer, larger batches save the round trips, the
# commits and the scan that picks each batch (bench/beat.py, PostgreSQL: p99 0.64 s with 500,
# 0.36 s with 2,000, 0.56 s with all 10,000 in one, the first start waiting for the last row).
TAKE_BATCH = 2000
MAX_FIRES_PER_TICK = 1000  # one schedule's late fire times fired in one tick (the rest next tick)

_DUE_COLUMNS = (
    JOBS.c.id,
    JOBS.c.next_fire_at,
    JOBS.c.exec_schedule,
    JOBS.c.name,
    JOBS.c.handle,
    JOBS.c.kind,
    JOBS.c.company_id,
    COMPANIES.c.handle,
)


def _due(*where: Any) -> Any:
    """Due jobs, oldest fire first. PostgreSQL: a second beat (the lock changed hands mid-tick)
    skips the rows this one holds instead of firing them too; SQLite's write transaction is
    exclusive already."""
    return (
        select(*_DUE_COLUMNS)
        .join(COMPANIES, COMPANIES.c.id == JOBS.c.company_id)
        .where(JOBS.c.trigger_state == TriggerState.NORMAL, JOBS.c.deleted_at.is_(None), *where)
        .order_by(JOBS.c.next_fire_at, JOBS.c.id)
        .with_for_update(of=JOBS, skip_locked=True)
    )


_DUE_SCHEDULES = _due(JOBS.c.exec_schedule.is_not(None), JOBS.c.next_fire_at <= bindparam("now"))
_DUE_ONE_SHOTS = _due(
    JOBS.c.exec_schedule.is_(None),
    JOBS.c.next_fire_at <= bindparam("horizon"),
    or_(JOBS.c.fired_through.is_(None), JOBS.c.fired_through < JOBS.c.next_fire_at),
)
_MOVE = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job"), JOBS.c.next_fire_at == bindparam("first"))
    .values(next_fire_at=bindparam("nxt"), trigger_state=bindparam("state"))
)
_FIRED_THROUGH = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job"), JOBS.c.next_fire_at == bindparam("at"))
    .values(fired_through=bindparam("at"))
)

_Tags = dict[int, tuple[str, str, str]]  # job id: its kind, job handle and company handle


PREPARED_MAX = 20_000  # staged starts kept built in memory (a few KB each)


class _PreparedStarts:
    """The start messages of the fires this process staged, built while they wait for their
    time, by run id. A fire staged by another beat (this one was not leading then), or beyond
    :data:`PREPARED_MAX`, is built when it is taken; one taken elsewhere or dropped is
    forgotten a minute after its time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_run: dict[int, tuple[datetime, dispatch.PreparedStart]] = {}

    def build(self, runs: list[dict[str, Any]], tags: _Tags) -> None:
        """Build the starts of staged runs (their ETA is their fire time)."""
        with self._lock:
            if len(self._by_run) + len(runs) > PREPARED_MAX:
                return
        messages = [_start({**run, "eta": None}, *tags[run["job_id"]]) for run in runs]
        try:
            built = dispatch.prepare_starts(messages, [run["eta"] for run in runs])
        except Exception as exc:  # the broker's client (it connects): they are built when taken
            logger.info("scheduler: cannot build staged starts ahead: %s", exc)
            return
        if built is None:
            return
        with self._lock:
            for run, one in zip(runs, built, strict=True):
                self._by_run[run["id"]] = (run["eta"], one)

    def take(self, run_ids: list[int], now: datetime) -> list[dispatch.PreparedStart | None]:
        """The built starts of these runs (None where there is none), forgotten here."""
        with self._lock:
            taken = [self._by_run.pop(run_id, (None, None))[1] for run_id in run_ids]
            stale = now - timedelta(seconds=60)
            if self._by_run and next(iter(self._by_run.values()))[0] < stale:
                self._by_run = {k: v for k, v in self._by_run.items() if v[0] >= stale}
        return taken


_PREPARED = _PreparedStarts()


def _fire_staged(
    runtime: Runtime, now: datetime, report: TickReport, keep_lead: Callable[[], bool]
) -> None:
    """Send the staged fires that are due, in batches: per batch one transaction takes them
    (Staged -> Queued, marked sent; the stale ones of a paused or deleted job are dropped),
    then one pipelined send. Stop when this beat no longer leads."""
    while True:
        with runtime.store.connect() as conn:
            taken, looked = take_due(conn, now, TAKE_BATCH)
        messages = [
            dispatch.StartMessage(
                kind_for(fire.kind).slug,
                fire.run_id,
                fire.task_id,
                {"job": fire.job_handle, "company": fire.company_handle, "run": fire.run_name},
            )
            for fire in taken
        ]
        prepared = _PREPARED.take([fire.run_id for fire in taken], now)
        # refused: unmarked, the relay sends them later
        send_runs(runtime, messages, marked=True, prepared=prepared)
        report.fired += [fire.run_name for fire in taken]
        if looked < TAKE_BATCH or not keep_lead():
            return


def _fire_schedules(
    runtime: Runtime,
    now: datetime,
    report: TickReport,
    keep_lead: Callable[[], bool],
    ahead: float,
) -> None:
    """Fire the due cron schedules in batches, and stage those due within ``ahead`` seconds;
    stop when this beat no longer leads."""
    horizon = now + timedelta(seconds=ahead)

    def plan(runtime: Runtime, conn: Any, now: datetime, tags: _Tags) -> _Planned:
        return _plan_schedules(runtime, conn, now, tags, horizon)

    while True:
        fired, staged, full = _fire_batch(runtime, now, plan)
        report.fired += fired
        report.staged += staged
        if not full or not keep_lead():
            return


def _send_one_shots(
    runtime: Runtime, now: datetime, report: TickReport, keep_lead: Callable[[], bool]
) -> None:
    """Send the ``execTime`` runs that come inside the ETA horizon, in batches."""
    while True:
        sent, _, full = _fire_batch(runtime, now, _plan_one_shots)
        report.sent_at += sent
        if not full or not keep_lead():
            return


_Planned = tuple[list[NewRun], list[NewRun]]  # runs to send now, runs to stage
_Plan = Callable[[Runtime, Any, datetime, _Tags], _Planned]


def _fire_batch(runtime: Runtime, now: datetime, plan: _Plan) -> tuple[list[str], list[str], bool]:
    """Fire up to FIRE_BATCH due jobs in one transaction: ``plan`` reads them, moves their
    triggers on and says which runs they get now and which it stages; one multi-row insert of
    the runs (marked sent) and one of the staged runs, then the starts in one pipelined send.
    Returns the names of the runs sent and staged, and whether the batch was full (more may be
    due)."""
    tags: _Tags = {}
    with runtime.store.connect() as conn:
        new, ahead = plan(runtime, conn, now, tags)
        untaken = untaken_fires(conn, new + ahead)
        local_now = now.astimezone(runtime.settings.zone)
        fresh = [run for run in untaken if run.named_at is None]
        runs = insert_runs(conn, fresh, local_now=local_now, dispatched_at=now)
        staged = [run for run in untaken if run.named_at is not None]
        staged_rows = insert_runs(conn, staged, local_now=local_now, state=RunState.STAGED)
    messages = [_start(run, *tags[run["job_id"]]) for run in runs]
    send_runs(runtime, messages, marked=True)  # refused: unmarked, the relay sends them later
    _PREPARED.build(staged_rows, tags)  # their starts, built while they wait for their time
    names = [run["run_name"] for run in runs]
    return names, [run["run_name"] for run in staged_rows], len(tags) == FIRE_BATCH


def _plan_schedules(
    runtime: Runtime, conn: Any, now: datetime, tags: _Tags, horizon: datetime
) -> _Planned:
    """Cron schedules due by ``horizon``: each fire time since the next one (see
    :func:`_next_fire`); those due by ``now`` fire, the later ones are staged (named after
    their fire time, which is their ETA until they are taken)."""
    moves: list[dict[str, Any]] = []
    new: list[NewRun] = []
    ahead: list[NewRun] = []
    zone = runtime.settings.zone
    for job_id, first, expression, name, handle, kind, company_id, company in conn.execute(
        _DUE_SCHEDULES.limit(FIRE_BATCH), {"now": horizon}
    ):
        times, nxt = _fire_times(runtime, parse_cron(str(expression)), first, now, horizon)
        state = TriggerState.NORMAL if nxt else TriggerState.COMPLETE
        moves.append({"job": job_id, "first": first, "nxt": nxt, "state": state})
        tags[job_id] = (kind, handle, company)
        for at in times:
            key = fire_key("cron", at)
            if at <= now:
                new.append(NewRun(job_id, company_id, name, key))
            else:
                ahead.append(NewRun(job_id, company_id, name, key, at, at.astimezone(zone)))
    if moves:
        conn.execute(_MOVE, moves)
    return new, ahead


def _plan_one_shots(runtime: Runtime, conn: Any, now: datetime, tags: _Tags) -> _Planned:
    """Due ``execTime`` jobs: one run each, with an ETA when its time is still ahead."""
    horizon = now + timedelta(seconds=runtime.settings.eta_horizon)
    new: list[NewRun] = []
    marks: list[dict[str, Any]] = []
    for job_id, at, _, name, handle, kind, company_id, company in conn.execute(
        _DUE_ONE_SHOTS.limit(FIRE_BATCH), {"horizon": horizon}
    ):
        tags[job_id] = (kind, handle, company)
        marks.append({"job": job_id, "at": at})
        new.append(NewRun(job_id, company_id, name, fire_key("at", at), at if at > now else None))
    if marks:
        conn.execute(_FIRED_THROUGH, marks)
    return new, []


def _start(run: dict[str, Any], kind: str, job: str, company: str) -> dispatch.StartMessage:
    tags = {"job": job, "company": company, "run": run["run_name"]}
    return dispatch.StartMessage(kind_for(kind).slug, run["id"], run["task_id"], tags, run["eta"])


def _fire_times(
    runtime: Runtime,
    cron: CronExpression,
    first: datetime,
    now: datetime,
    horizon: datetime | None = None,
) -> tuple[list[datetime], datetime | None]:
    """A schedule's fire times due by ``horizon`` (default ``now``) from its next fire time
    ``first`` (a catch-up of a short gap fires each once), and its next fire time after them."""
    until = now if horizon is None else horizon
    times: list[datetime] = []
    fire_at: datetime | None = first
    while fire_at is not None and fire_at <= until and len(times) < MAX_FIRES_PER_TICK:
        times.append(fire_at)
        fire_at = _next_fire(runtime, cron, fire_at, now)
    return times, fire_at


def _next_fire(
    runtime: Runtime, cron: CronExpression, fire_at: datetime, now: datetime
) -> datetime | None:
    """The fire time after ``fire_at``: the next one in the schedule when ``fire_at`` is late by
    less than the misfire threshold, else (a misfire: it fires once now) the next after now."""
    late = (now - fire_at).total_seconds()
    after = now if late >= runtime.settings.misfire_threshold else fire_at
    return cron.next_after(after, runtime.settings.zone)


def _tags(session: Any, job: Job, run: Run | None) -> tuple[str, Run, dict[str, str]] | None:
    if run is None:
        return None
    company = session.get(Company, job.company_id)
    assert company is not None
    return job.kind, run, labels(run, job, company)


def _relay_outbox(runtime: Runtime, now: datetime, report: TickReport) -> None:
    cutoff = now - timedelta(seconds=runtime.settings.outbox_grace)
    with runtime.store.read() as session:
        rows = session.execute(
            select(Run, Job)
            .join(Job, Job.id == Run.job_id)
            .where(
                Run.state == RunState.QUEUED, Run.dispatched_at.is_(None), Run.created_at < cutoff
            )
            .limit(500)
        ).all()
        pending = [_tags(session, job, run) for run, job in rows]
    for sent in pending:
        if sent is not None and send_run(runtime, *sent):
            report.relayed.append(sent[1].run_name)


class _Queues:
    """The depth of each queue, read from the broker once per tick and only when needed."""

    def __init__(self, runtime: Runtime) -> None:
        self._settings = runtime.settings
        self._depths: dict[str, int] | None = None
        self._read = False

    def empty(self, element: str) -> bool:
        """Whether the queue of job kind ``element`` holds no message (False when unknown)."""
        if not self._read:
            self._read = True
            try:
                self._depths = dispatch.queue_depths(self._settings, self._settings.all_queues)
            except Exception as exc:  # the broker is down: nothing is known to be lost
                logger.info("scheduler: cannot read the queues: %s", exc)
        if self._depths is None:
            return False
        return self._depths.get(self._settings.queue_of(kind_for(element).slug), 1) == 0


def _requeue_unstarted(
    runtime: Runtime, now: datetime, report: TickReport, queues: _Queues
) -> None:
    """Send again the start of queued runs that wait on nothing (see the module doc, step 4).

    At most once per period per run (the CAS moves its ``dispatched_at``): a run waiting behind
    a backlog gets one harmless duplicate per ``stall_seconds``, which its run-once guard drops.
    """
    idle = now - timedelta(seconds=runtime.settings.idle_seconds)
    stall = now - timedelta(seconds=runtime.settings.stall_seconds)
    with runtime.store.read() as session:
        rows = session.execute(
            select(Run.id, Run.dispatched_at, Run.eta, Job.kind)
            .join(Job, Job.id == Run.job_id)
            .where(
                Run.state == RunState.QUEUED,
                Run.paused.is_(False),
                Run.stop_requested.is_(False),
                Run.dispatched_at < idle,
                or_(Run.eta.is_(None), Run.eta < idle),
            )
            .limit(500)
        ).all()
    for run_id, sent_at, eta, element in rows:
        if sent_at is None:
            continue
        waited_out = sent_at < stall and (eta is None or eta < stall)
        if not waited_out and not queues.empty(str(element)):
            continue  # waiting its turn behind other messages
        name = _resend_start(runtime, run_id, sent_at, now)
        if name is None:
            return  # the broker is down: the relay sends it later
        if name:
            report.resent.append(f"{name}:start")


def _resend_start(runtime: Runtime, run_id: int, sent_at: datetime, now: datetime) -> str | None:
    """Send a queued run's start again, once per period: its run name, "" when it was not to be
    sent (it started meanwhile, another beat sent it), None when the broker refused it."""
    with runtime.store.write() as session:
        moved = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state == RunState.QUEUED, Run.dispatched_at == sent_at)
            .values(dispatched_at=now)
            .execution_options(synchronize_session=False)
        )
        if not _cas(moved):
            return ""  # it started meanwhile, or another beat took it
        run = session.get(Run, run_id)
        assert run is not None
        job = session.get(Job, run.job_id)
        assert job is not None
        sent = _tags(session, job, run)
    if sent is None:
        return ""
    try:
        dispatch.send_start(kind_for(sent[0]).slug, run_id, sent[1].task_id, sent[2])
    except dispatch.BrokerUnavailable:  # back to the outbox: the relay sends it later
        with runtime.store.write() as session:
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(dispatched_at=None)
                .execution_options(synchronize_session=False)
            )
        return None
    return sent[1].run_name


def _resend_lost_steps(
    runtime: Runtime, now: datetime, report: TickReport, queues: _Queues
) -> None:
    """Re-send start, item and finish messages lost with a dead worker (guards drop extras)."""
    stale = now - timedelta(seconds=runtime.settings.outbox_grace)
    with runtime.store.write() as session:
        runs = session.execute(
            select(Run, Job)
            .join(Job, Job.id == Run.job_id)
            .where(
                Run.state.in_(STARTED_RUNS),
                or_(Run.lease_until.is_(None), Run.lease_until < stale),
            )
        ).all()
        todo: list[tuple[str, str, Run, dict[str, str], list[tuple[int, str]]]] = []
        for run, job in runs:
            tagged = _tags(session, job, run)
            assert tagged is not None
            tags, slug = tagged[2], kind_for(job.kind).slug
            if not run.planned and run.lease_until is not None:
                todo.append(("start", slug, run, tags, []))
            elif run.planned and run.finished_items >= run.total_items:
                if _finish_lost(runtime, run, job, queues, now):
                    run.finish_sent_at = now
                    todo.append(("finish", slug, run, tags, []))
            elif run.planned:
                lost = _lost_items(session, run, now, stale, _sweep_after(runtime, job, queues))
                if lost:
                    todo.append(("items", slug, run, tags, lost))
    for step, slug, run, tags, items in todo:
        try:
            if step == "start":
                dispatch.send_start(slug, run.id, run.task_id, tags)
            elif step == "finish":
                dispatch.send_finish(slug, run.id, run.task_id, tags)
            else:
                dispatch.send_items(slug, run.id, run.task_id, items, tags)
        except dispatch.BrokerUnavailable:
            return
        report.resent.append(f"{run.run_name}:{step}")


def _finish_lost(runtime: Runtime, run: Run, job: Job, queues: _Queues, now: datetime) -> bool:
    """Whether a run's finish is to be sent again: its claim lapsed (the finisher died), or it
    was never claimed and waited long enough (the idle time while its queue is empty, else the
    stall time: behind a backlog it is only waiting its turn)."""
    if run.finish_sent_at is None:
        return True
    claimed = run.lease_until is not None  # the query keeps only lapsed leases
    wait = runtime.settings.outbox_grace if claimed else _sweep_after(runtime, job, queues)
    return run.finish_sent_at < now - timedelta(seconds=wait)


def _sweep_after(runtime: Runtime, job: Job, queues: _Queues) -> float:
    """Seconds without progress after which a run's pending items are sent again: the idle
    time while its queue is empty (nothing is coming for them), else the stall time."""
    settings = runtime.settings
    if settings.idle_seconds < settings.stall_seconds and queues.empty(job.kind):
        return settings.idle_seconds
    return settings.stall_seconds


def _lost_items(
    session: Any, run: Run, now: datetime, stale: datetime, stall: float
) -> list[tuple[int, str]]:
    """Items to send again: claims whose lease lapsed, and the pending items of a stalled run.

    A stalled run (no progress for ``stall`` seconds) may have lost a message that a worker
    took but never started (Celery loses such a message when the pool child dies first), or
    that a broker restart without persistence dropped.
    """
    states = [ItemState.RUNNING]
    stalled = run.last_progress_update is not None and run.last_progress_update < now - timedelta(
        seconds=stall
    )
    if stalled and (run.swept_at is None or run.swept_at < now - timedelta(seconds=stall)):
        states.append(ItemState.PENDING)
        run.swept_at = now
    rows = session.execute(
        select(RunItem.seq, RunItem.key, RunItem.state, RunItem.lease_until).where(
            RunItem.run_id == run.id, RunItem.state.in_(states)
        )
    ).all()
    return [
        (int(seq), str(key))
        for seq, key, state, lease in rows
        if state == ItemState.PENDING or (lease is not None and lease < stale)
    ]


def tick(
    runtime: Runtime | None = None,
    now: datetime | None = None,
    keep_lead: Callable[[], bool] = lambda: True,
    ahead: float = 0.0,
) -> TickReport:
    """One scheduler pass (beat calls it every ``JOBENGINE_BEAT_INTERVAL`` seconds).

    ``keep_lead`` renews the beat's leader lock between batches of fires, False when another
    beat took it: a long tick then stops firing instead of firing beside the new leader.
    ``ahead``: stage the cron fires due within that many seconds (beat passes
    ``JOBENGINE_STAGE_AHEAD``); staged fires that are due are sent whatever it is.
    """
    runtime = runtime or get_runtime()
    now = now or utcnow()
    report = TickReport()
    queues = _Queues(runtime)
    _fire_staged(runtime, now, report, keep_lead)  # first: they are due now, and cheap to send
    _fire_schedules(runtime, now, report, keep_lead, ahead)
    _send_one_shots(runtime, now, report, keep_lead)
    _relay_outbox(runtime, now, report)
    _requeue_unstarted(runtime, now, report, queues)
    _resend_lost_steps(runtime, now, report, queues)
    return report


TICK_OFFSET = 0.005  # seconds after the boundary: a fire time due at a whole second is due


def until_next_tick(interval: float, now: float | None = None) -> float:
    """Seconds from ``now`` (wall clock) to just after the next multiple of ``interval``: ticks
    that keep to the clock instead of drifting by their own duration."""
    now = time.time() if now is None else now
    wait = interval - ((now - TICK_OFFSET) % interval)
    return wait if wait >= 0.0005 else wait + interval  # at the boundary: the next one


class StoreScheduler(Scheduler):  # type: ignore[misc]
    """Celery beat scheduler whose schedule lives in the job store, not in a shelve file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._runtime = get_runtime()
        interval = self._runtime.settings.beat_interval
        self._lock = LeaderLock(redis_client(self._runtime.settings), ttl=max(5.0, interval * 5))
        super().__init__(*args, **kwargs)
        self.max_interval = interval
        self._mail_swept = 0.0
        self._janitor_tried = 0.0

    def setup_schedule(self) -> None:
        """No static entries: every schedule is a job in the store."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = float(self._runtime.settings.beat_interval)
        try:
            if self._lock.hold():
                ahead = self._runtime.settings.stage_ahead
                report = tick(self._runtime, keep_lead=self._lock.hold, ahead=ahead)
                for name in report.fired + report.sent_at + report.relayed + report.resent:
                    logger.info("scheduler sent %s", name)
                if time.monotonic() - self._mail_swept > MAIL_SWEEP_SECONDS:
                    self._mail_swept = time.monotonic()
                    notify_pending()  # notices held back by an SMTP outage
                    sweep_in_background()  # completion callbacks to retry (a thread of its own)
                self._janitor()
        except Unavailable as exc:  # the store is down: the next tick tries again
            logger.warning("scheduler tick skipped: %s", exc.reason)
        except redis.RedisError as exc:  # the leader lock's Redis is down: the same
            logger.warning("scheduler tick skipped: Redis is unreachable: %s", exc)
        except Exception:  # a bad tick must not stop beat; the next one tries again
            logger.exception("scheduler tick failed")
        return until_next_tick(interval)

    def _janitor(self) -> None:
        """Start the janitor's sweep if no beat started one in the last hour (never raises)."""
        if self._janitor_tried and time.monotonic() - self._janitor_tried < MAIL_SWEEP_SECONDS:
            return
        self._janitor_tried = time.monotonic()
        try:
            if self._lock.client.set(JANITOR_KEY, self._lock.token, nx=True, ex=JANITOR_SECONDS):
                janitor.sweep_in_background()
        except Exception:
            logger.exception("could not start the janitor")

    def close(self) -> None:
        self._lock.release()
        super().close()
