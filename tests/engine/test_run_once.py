"""Run once, step by step, in this process: idempotent finishes, compare-and-set ends,
re-entrant claims, lease heartbeats, outages as one error, the broker breaker, and the
scheduler's idle re-sends and misfire rules (issue 10).

The steps run here through the real runner against the real stores (SQLite and PostgreSQL);
their messages go to a queue of the test's own (``private_queue``) that no worker reads, so each
state is the one the test made. The fault suite (``tests/faults/``) does the same with real
processes killed and services stopped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from jobengine import submit
from jobengine.engine import dispatch, runner
from jobengine.engine.app import configure
from jobengine.engine.heartbeat import Heartbeat
from jobengine.engine.scheduling import tick, until_next_tick
from jobengine.errors import ServerError, StoreUnavailable
from jobengine.kinds import kind_for
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from jobengine.store.db import Store
from jobengine.store.runs import claim_finish, claim_item, end_run, extend_item_lease
from jobengine.store.schema import Job, LogDetail, Run
from tests.support.helpers import export_request, make_company
from tests.support.procs import free_port

Queue = tuple[dict[str, str], str]


def _run(name: str) -> Run:
    with get_runtime().store.read() as session:
        run = session.scalar(
            select(Run).join(Job, Job.id == Run.job_id).where(Job.name == name).order_by(Run.id)
        )
    assert run is not None
    return run


def _items_done(name: str, n_assets: int = 2) -> tuple[str, Run]:
    """An export of ``n_assets`` whose items ran here; its finish is due (and was sent to the
    private queue, where nobody reads it)."""
    company, assets = make_company(n_assets)
    submit(export_request(company, assets, name))
    run = _run(name)
    assert runner.start(run.id, "starter") == "started"
    for seq in range(n_assets):
        assert runner.run_item(run.id, seq, "worker-a").status == "done"
    return company, _run(name)


def _finish_killed_before_commit(run: Run, company: str) -> str:
    """What a finish killed between writing its output and committing the run's end leaves:
    its claim (lapsing now), and the whole ZIP. Returns the ZIP's key."""
    runtime = get_runtime()
    with runtime.store.write() as session:
        assert claim_finish(session, run.id, "doomed-worker", lease=0.05)
    with runtime.store.read() as session:
        job = session.get(Job, run.job_id)
        assert job is not None
        kind = kind_for(job.kind)
        ids, names = (run.id, job.id, run.company_id), (company, run.run_name)
        ctx = kind.context(runtime, ids, names, job.payload)
        output = kind.finish(ctx, False).output
    time.sleep(0.1)  # the dead worker's lease lapses
    return str(output["zip"])


def _summaries(run_id: int) -> int:
    with get_runtime().store.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(LogDetail)
                .where(LogDetail.run_id == run_id, LogDetail.message_id.like("job done:%"))
            )
            or 0
        )


def _staged(run_id: int) -> list[str]:
    return get_runtime().storage.list_files(f"_staging/run-{run_id}", recursive=True)


def test_a_finish_killed_before_its_commit_is_completed_by_the_next_one(
    private_queue: Queue,
) -> None:
    company, run = _items_done("Run Once Killed Finish")
    zip_key = _finish_killed_before_commit(run, company)
    assert _run("Run Once Killed Finish").state == "Running" and _staged(run.id)

    assert runner.finish(run.id, "worker-b") == "done"  # the re-sent finish

    done = _run("Run Once Killed Finish")
    assert done.state == "Done" and not done.fatal_error
    assert done.output["zip"] == zip_key and done.success_count == 2
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    with zipfile.ZipFile(storage.path(zip_key)) as zf:
        assert len(zf.namelist()) == 2
    assert _staged(run.id) == []  # removed once the end was committed
    assert runner.finish(run.id, "worker-c") == "duplicate"  # a third copy changes nothing
    assert _run("Run Once Killed Finish").state == "Done" and _summaries(run.id) == 1


def test_a_finish_whose_staging_is_gone_uses_the_zip_already_written(
    private_queue: Queue,
) -> None:
    company, run = _items_done("Run Once Zip Already There")
    zip_key = _finish_killed_before_commit(run, company)
    get_runtime().storage.delete_tree(f"_staging/run-{run.id}")

    assert runner.finish(run.id, "worker-b") == "done"
    done = _run("Run Once Zip Already There")
    assert done.state == "Done" and done.output["zip"] == zip_key and done.output["files"] == 2


def test_a_finish_killed_after_its_commit_leaves_nothing_staged(private_queue: Queue) -> None:
    _, run = _items_done("Run Once Killed After Commit")
    assert runner.finish(run.id, "worker-b") == "done"
    with get_runtime().storage.writer(f"_staging/run-{run.id}/left/over.jpg") as out:
        out.write(b"x")  # as if the worker died between the commit and the removal

    assert runner.finish(run.id, "worker-c") == "duplicate"  # the re-sent finish cleans up
    assert _staged(run.id) == []
    assert _run("Run Once Killed After Commit").state == "Done"


def test_a_one_item_run_is_done_in_its_start_task_with_no_other_message(
    private_queue: Queue,
) -> None:
    from jobengine.embedded import redis_client

    _, queue = private_queue
    company, [asset] = make_company(1)
    submit(export_request(company, [asset], "Run Once Inline"))
    client = redis_client(get_runtime().settings)
    client.delete(queue)  # its start message: this process plays the worker
    run = _run("Run Once Inline")
    assert runner.start(run.id, "worker-a") == "done"
    done = _run("Run Once Inline")
    assert done.state == "Done" and done.success_count == 1 and done.output["files"] == 1
    assert client.llen(queue) == 0  # no item or finish message was needed
    assert runner.start(run.id, "worker-b") == "duplicate" and _summaries(run.id) == 1
    assert _staged(run.id) == []


def test_an_end_is_committed_once_and_a_failure_never_overwrites_it(
    private_queue: Queue,
) -> None:
    _, run = _items_done("Run Once Ended Once")
    assert runner.finish(run.id, "worker-b") == "done"
    with get_runtime().store.write() as session:
        stored = session.get(Run, run.id)
        assert stored is not None
        assert end_run(session, stored, "Failed", fatal=True) is False
    ended = _run("Run Once Ended Once")
    assert ended.state == "Done" and not ended.fatal_error


def test_a_claim_is_taken_back_by_its_holder_only(private_queue: Queue) -> None:
    company, assets = make_company(2)  # two items: fanned out (one would run inline)
    submit(export_request(company, assets, "Run Once Claims"))
    run = _run("Run Once Claims")
    assert runner.start(run.id, "starter") == "started"
    store = get_runtime().store
    with store.write() as session:
        assert claim_item(session, run.id, 0, "holder", 60).status == "owned"
    with store.write() as session:
        assert claim_item(session, run.id, 0, "another", 60).status == "busy"
    with store.write() as session:  # the holder's step met an outage and starts again
        assert claim_item(session, run.id, 0, "holder", 60).status == "owned"


def test_a_live_step_keeps_its_lease_and_a_dead_one_loses_it(private_queue: Queue) -> None:
    company, assets = make_company(2)  # two items: fanned out (one would run inline)
    submit(export_request(company, assets, "Run Once Heartbeat"))
    run = _run("Run Once Heartbeat")
    assert runner.start(run.id, "starter") == "started"
    runtime, lease = get_runtime(), 0.4
    with runtime.store.write() as session:
        assert claim_item(session, run.id, 0, "alive", lease).status == "owned"
    with Heartbeat(runtime, lambda: extend_item_lease(run.id, 0, "alive", lease), lease) as beat:
        for _ in range(6):  # 1.5 s: almost four leases
            time.sleep(0.25)
            with runtime.store.write() as session:
                assert claim_item(session, run.id, 0, "usurper", lease).status == "busy"
    assert beat.beats >= 3 and not beat.lost
    time.sleep(lease + 0.1)  # no beats any more: the holder counts as dead
    with runtime.store.write() as session:
        assert claim_item(session, run.id, 0, "usurper", lease).status == "owned"


def test_a_heartbeat_that_finds_its_claim_taken_stops(private_queue: Queue) -> None:
    company, assets = make_company(2)  # two items: fanned out (one would run inline)
    submit(export_request(company, assets, "Run Once Lost Claim"))
    run = _run("Run Once Lost Claim")
    assert runner.start(run.id, "starter") == "started"
    runtime = get_runtime()
    with runtime.store.write() as session:
        assert claim_item(session, run.id, 0, "slow", 0.05).status == "owned"
    time.sleep(0.1)
    with runtime.store.write() as session:
        assert claim_item(session, run.id, 0, "fast", 60).status == "owned"
    with Heartbeat(runtime, lambda: extend_item_lease(run.id, 0, "slow", 0.2), 0.2) as beat:
        time.sleep(0.3)
    assert beat.lost and beat.beats == 0


# --- outages are one error -----------------------------------------------------------------


def test_an_unreachable_store_is_store_unavailable_and_bad_sql_is_not(tmp_path: Path) -> None:
    down = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    with pytest.raises(StoreUnavailable, match="the job store is unreachable"), down.read() as s:
        s.execute(text("SELECT 1"))
    local = Store(f"sqlite:///{tmp_path / 'store.db'}")
    with pytest.raises(Exception) as raised, local.read() as session:
        session.execute(text("SELEC 1"))  # a statement's own error is no outage
    assert not isinstance(raised.value, StoreUnavailable)
    local.dispose()


def test_a_locked_sqlite_store_is_busy_not_a_failure(tmp_path: Path) -> None:
    import sqlite3

    from sqlalchemy import create_engine

    from jobengine.store.db import outage

    path = tmp_path / "locked.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing for a long time
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        with pytest.raises(StoreUnavailable, match="busy"), outage(), engine.begin() as conn:
            conn.execute(text("SELECT * FROM t"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


def _in_fresh_process(
    code: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_submit_and_the_cli_with_the_store_down_say_so(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/down",
        "JOBENGINE_HOME": str(tmp_path),
    }
    job = {
        "companyHandle": "47",
        "jobName": "x",
        "imageServingPublishJob": {"publishType": "Full", "emailSetting": "None"},
    }
    code = (
        "import json, sys\n"
        "from jobengine import submit\n"
        "from jobengine.errors import ServerError\n"
        "try:\n"
        "    submit(json.loads(sys.argv[1]))\n"
        "except ServerError as fault:\n"
        "    print(fault.code, fault.reason)\n"
    )
    out = _in_fresh_process(code, env, json.dumps(job))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("30000 the job store is unreachable")
    request = tmp_path / "job.json"
    request.write_text(json.dumps(job))
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "jobengine"), "submit", str(request)],
        env={**os.environ, **env, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = (cli.stdout + cli.stderr).strip()
    assert cli.returncode == 2 and "Traceback" not in said
    assert len(said.splitlines()) == 1 and "the job store is unreachable" in said
    assert issubclass(ServerError, Exception)


# --- the broker breaker ----------------------------------------------------------------------


class _CountingListener:
    """A TCP port on 127.0.0.1 that accepts and drops every connection, counting them: a broker
    that is down, whose connection attempts the test can count."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dead_broker(stack) -> Iterator[_CountingListener]:
    listener = _CountingListener()
    configure(broker_url=f"redis://127.0.0.1:{listener.port}/0")
    try:
        yield listener
    finally:
        listener.close()
        configure()


def test_once_the_broker_is_known_down_submits_go_straight_to_the_outbox(
    stack, dead_broker: _CountingListener
) -> None:
    company, assets = stack.company(1)
    submit(export_request(company, assets, "Run Once Breaker 0"))
    tried = dead_broker.accepted
    assert tried > 0 and dispatch.broker_known_down()
    for n in range(1, 6):
        submit(export_request(company, assets, f"Run Once Breaker {n}"))
    assert dead_broker.accepted == tried  # not one more connection attempt
    for n in range(6):
        run = _run(f"Run Once Breaker {n}")
        assert run.state == "Queued" and run.dispatched_at is None  # in the outbox
    configure()  # the broker is back (and this process forgets the refusal)
    time.sleep(1.2)  # the test outbox grace is 1 s
    report = tick()
    assert len([r for r in report.relayed if r.startswith("Run Once Breaker")]) == 6
    for n in range(6):
        handle = f"{company}|Run Once Breaker {n}|"
        assert stack.wait(company, handle).state == "Done"


# --- the scheduler: runs that wait on nothing, cron misfires, ticks on the clock -------------


def _lose_messages(queue: str) -> None:
    from jobengine.embedded import redis_client
    from jobengine.settings import get_settings

    redis_client(get_settings()).delete(queue)


def test_a_queued_run_whose_message_is_lost_is_sent_again_once_its_queue_is_empty(
    private_queue: Queue,
) -> None:
    _, queue = private_queue
    company, assets = make_company(1)
    submit(export_request(company, assets, "Run Once Lost Start"))
    run = _run("Run Once Lost Start")
    settings = get_runtime().settings
    later = run.dispatched_at + timedelta(seconds=settings.idle_seconds + 1)
    # its message waits in the queue: the run is only waiting its turn
    assert "Run Once Lost Start" not in " ".join(tick(now=later).resent)
    _lose_messages(queue)  # a Redis restart without persistence, a producer killed in between
    report = tick(now=later)
    assert f"{run.run_name}:start" in report.resent
    assert run.run_name + ":start" not in tick(now=later).resent  # once per period


def test_pending_items_of_a_run_that_waits_on_nothing_are_sent_again(
    private_queue: Queue,
) -> None:
    _, queue = private_queue
    company, assets = make_company(3)
    submit(export_request(company, assets, "Run Once Lost Items"))
    run = _run("Run Once Lost Items")
    assert runner.start(run.id, "starter") == "started"
    assert runner.run_item(run.id, 0, "worker-a").status == "done"
    settings = get_runtime().settings
    later = datetime.now(UTC) + timedelta(seconds=settings.idle_seconds + 1)
    assert not [r for r in tick(now=later).resent if r.startswith(run.run_name)]  # queued
    _lose_messages(queue)
    assert f"{run.run_name}:items" in tick(now=later).resent


def _schedule(name: str, fire_at: datetime) -> str:
    company, assets = make_company(1)
    submit(export_request(company, assets, name, execSchedule="* * * * * ?"))
    with get_runtime().store.write() as session:
        session.execute(update(Job).where(Job.name == name).values(next_fire_at=fire_at))
    return company


def _fires(name: str) -> list[str]:
    with get_runtime().store.read() as session:
        keys = session.scalars(
            select(Run.fire_key).join(Job, Job.id == Run.job_id).where(Job.name == name)
        )
        return sorted(keys)


def _next_fire(name: str) -> datetime:
    with get_runtime().store.read() as session:
        value = session.scalar(select(Job.next_fire_at).where(Job.name == name))
    assert value is not None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def test_every_fire_time_a_slow_tick_passed_fires_once(private_queue: Queue) -> None:
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    _schedule("Run Once Late Ticks", due)
    tick(now=due + timedelta(seconds=3.2))  # a tick that lands three periods late
    assert _fires("Run Once Late Ticks") == [f"cron:{(due + timedelta(seconds=n)).isoformat()}"
                                    for n in range(4)]  # fmt: skip
    assert _next_fire("Run Once Late Ticks") == due + timedelta(seconds=4)
    tick(now=due + timedelta(seconds=3.9))  # nothing new is due
    assert len(_fires("Run Once Late Ticks")) == 4


def test_a_fire_time_past_the_misfire_threshold_fires_once_then_goes_on_from_now(
    private_queue: Queue,
) -> None:
    threshold = get_runtime().settings.misfire_threshold
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=threshold + 120)
    _schedule("Run Once Misfired", due)
    now = due + timedelta(seconds=threshold + 100.5)
    tick(now=now)
    assert _fires("Run Once Misfired") == [f"cron:{due.isoformat()}"]  # once, for the missed time
    assert _next_fire("Run Once Misfired") == now.replace(microsecond=0) + timedelta(seconds=1)


def test_ticks_keep_to_the_wall_clock() -> None:
    assert until_next_tick(1.0, now=100.0) == pytest.approx(0.005)
    assert until_next_tick(1.0, now=100.004) == pytest.approx(0.001)
    assert until_next_tick(1.0, now=100.5) == pytest.approx(0.505)
    assert until_next_tick(1.0, now=103.7) == pytest.approx(0.305)  # a long tick: no drift
    assert until_next_tick(0.2, now=10.0) == pytest.approx(0.005)
    assert until_next_tick(1.0, now=100.0049) == pytest.approx(1.0001)  # never a zero wait
