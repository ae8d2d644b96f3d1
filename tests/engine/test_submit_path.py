"""submit()'s own path: its one read (company, name holder, assets) gives the faults the
separate lookups gave, its one write names runs as before, and on PostgreSQL a connection that
dies (idle in the pool, or under a transaction before its COMMIT) costs no submission and
doubles none."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from jobengine import errors, submit, submit_many
from jobengine.engine import bulk, submission
from jobengine.runtime import get_runtime
from jobengine.store.intake import (
    FEW_ASSETS,
    commits_each_statement,
    committed_run,
    first_read,
    insert_job_and_run,
    insert_job_and_run_alone,
    new_run_values,
)
from jobengine.store.schema import Job, Run, utcnow
from jobengine.store.states import RunState, TriggerState
from tests.support.helpers import export_request, make_company

Queue = tuple[dict[str, str], str]


def _runs_of(handle: str) -> list[Run]:
    """The runs of the job that holds ``handle`` now (an ended holder keeps its handle)."""
    with get_runtime().store.read() as session:
        job = session.scalar(select(Job).where(Job.handle == handle).order_by(Job.id.desc()))
        assert job is not None, handle
        return list(session.scalars(select(Run).where(Run.job_id == job.id)))


def test_unknown_company_asset_and_foreign_asset_fault_as_before(private_queue: Queue) -> None:
    company, assets = make_company(2)
    _, [foreign] = make_company(1)
    with pytest.raises(errors.InvalidCompany, match="unknown company"):
        submit(export_request(f"nope{uuid.uuid4().hex[:6]}", assets, "J"))
    with pytest.raises(errors.InvalidParameter, match=r"unknown assetHandle 'a\|9\|9\|9'"):
        submit(export_request(company, [*assets, "a|9|9|9"], "J"))
    with pytest.raises(errors.IllegalCompany, match="belongs to another company"):
        submit(export_request(company, [assets[0], foreign], "J"))
    # none of them recorded a job
    with get_runtime().store.read() as session:
        count = session.scalar(select(func.count()).select_from(Job).where(Job.name == "J"))
    assert count == 0


def test_company_handle_forms_and_many_assets_are_read_too(private_queue: Queue) -> None:
    many = FEW_ASSETS + 3  # past the one read: the assets are looked up on their own
    company, assets = make_company(many)
    handle = submit(export_request(f"c|{company}", assets[:2], "Forms"))
    assert handle == f"{company}|Forms|"
    assert submit(export_request(company, assets, "Many")) == f"{company}|Many|"
    with pytest.raises(errors.InvalidParameter, match="unknown assetHandle"):
        submit(export_request(company, [*assets, "a|0|0|0"], "Many Bad"))


def test_a_live_holder_keeps_its_name_and_an_ended_one_hands_it_on(private_queue: Queue) -> None:
    company, assets = make_company(1)
    first = submit(export_request(company, assets, "Held"))
    second = submit(export_request(company, assets, "Held"))  # the first is queued: live
    assert first == f"{company}|Held|"
    assert second.startswith(f"{company}|Held||")
    with get_runtime().store.write() as session:  # the holder's run ends
        job = session.scalar(select(Job).where(Job.handle == first))
        assert job is not None
        session.execute(update(Run).where(Run.job_id == job.id).values(state=RunState.DONE))
        assert job.trigger_state == TriggerState.NONE
    third = submit(export_request(company, assets, "Held"))
    assert third == f"{company}|Held|"
    with get_runtime().store.read() as session:
        holders = session.scalars(
            select(Job.handle).where(Job.live_key == "Held", Job.handle.startswith(company))
        ).all()
    assert holders == [third]  # the name passed on: the ended holder released it
    [run] = _runs_of(third)
    assert run.state == RunState.QUEUED and run.dispatched_at is not None


def _job_row(company_id: int, name: str, now: Any, live_key: str | None = None) -> dict[str, Any]:
    return dict(
        company_id=company_id, live_key=live_key, handle="", name=name, kind="exportJob",
        payload={}, submit_user_id=None, run_as_user_id=None, locale=None, description=None,
        exec_time=None, exec_schedule=None, time_zone="UTC", trigger_state=TriggerState.NONE,
        next_fire_at=None, fired_through=None, created_at=now, client=None,
    )  # fmt: skip


def _run_row(company_id: int, name: str, now: Any) -> dict[str, Any]:
    return new_run_values(company_id, name, "now", local_now=now, eta=None, dispatched_at=None)


def _company_id(handle: str) -> int:
    with get_runtime().store.read() as session:
        found = session.scalar(text("SELECT id FROM companies WHERE handle = :h"), {"h": handle})
    return int(found)


def _jobs_named(company_id: int, name: str) -> int:
    with get_runtime().store.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.company_id == company_id, Job.name == name)
            )
            or 0
        )


def test_a_run_name_taken_this_second_writes_nothing_and_is_named_again(
    store_only: dict[str, str],
) -> None:
    company, _ = make_company(1)
    store = get_runtime().store
    with store.read() as session:
        company_id = session.scalar(
            text("SELECT id FROM companies WHERE handle = :h"), {"h": company}
        )
    now = utcnow()
    job = _job_row(company_id, "Same", now)

    def run() -> dict[str, Any]:
        return _run_row(company_id, "Same", now)

    with store.connect() as conn:
        first_job, first_run = insert_job_and_run(conn, job, run())
        second_job, second_run = insert_job_and_run(conn, job, run())
    assert first_run is not None and second_run is None  # the second job went in, its run not
    assert second_job != first_job
    with store.read() as session:
        runs = session.scalars(select(Run).where(Run.company_id == company_id)).all()
        assert [(r.job_id, r.id) for r in runs] == [(first_job, first_run)]
    with store.connect() as conn:  # what submit() reads back: the name holder and no assets
        read = first_read(conn, name="Same", handles=[], company_id=company_id)
    assert read.company == (company_id, company) and read.holder is None and read.assets == []


def _backend_pid(conn: Any) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _terminate(pid: int) -> None:
    """Close a server process's connection as a restart would, from a connection of our own,
    and wait until the process is gone."""
    url = get_runtime().store.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, f"server process {pid} still there"
            time.sleep(0.01)


@pytest.fixture
def postgres(private_queue: Queue) -> Queue:
    if get_runtime().store.is_sqlite:
        pytest.skip("SQLite connections do not die under a running process")
    return private_queue


def test_a_pooled_connection_closed_by_the_server_is_replaced_at_checkout(
    postgres: Queue,
) -> None:
    company, assets = make_company(1)
    store = get_runtime().store
    store.dispose()
    with store.connect() as conn:  # the pool now holds this one connection, idle
        pid = _backend_pid(conn)
    _terminate(pid)
    # no ping, no fault, no retry (connect() has none): the checkout saw the closed socket
    with store.connect() as conn:
        assert _backend_pid(conn) != pid
    handle = submit(export_request(company, assets, "After Restart"))
    assert len(_runs_of(handle)) == 1


def test_a_transaction_whose_connection_dies_before_commit_runs_again_once(
    postgres: Queue,
) -> None:
    company, _ = make_company(1)
    store = get_runtime().store
    marker = f"retry-{uuid.uuid4().hex[:8]}"
    attempts: list[int] = []

    def work(conn: Any) -> int:
        pid = _backend_pid(conn)
        attempts.append(pid)
        conn.execute(
            text("UPDATE companies SET name = :n WHERE handle = :h"), {"n": marker, "h": company}
        )
        if len(attempts) == 1:
            _terminate(pid)  # dies before its COMMIT: nothing of it is committed
        return int(conn.exec_driver_sql("SELECT 1").scalar_one())

    assert store.transact(work) == 1
    assert len(attempts) == 2 and attempts[0] != attempts[1]
    with store.read() as session:
        name = session.scalar(text("SELECT name FROM companies WHERE handle = :h"), {"h": company})
    assert name == marker

    def always_dies(conn: Any) -> None:
        _terminate(_backend_pid(conn))
        conn.exec_driver_sql("SELECT 1")

    with pytest.raises(errors.StoreUnavailable):  # run again once, not for ever
        store.transact(always_dies)


def test_a_batch_whose_connection_dies_before_its_commit_is_written_once(
    postgres: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """submit_many() on PostgreSQL: its transaction opened by a BEGIN sent with its reads
    (intake.transaction, pipelined) on a connection that commits each statement. Its
    connection dying after the reads, before the writes and COMMIT, commits nothing: the batch
    runs again on a new connection, and is written once."""
    company, assets = make_company(1)
    pids: list[int] = []
    real = bulk._write_copied

    def dies_first(conn: Any, *args: Any) -> Any:
        pids.append(_backend_pid(conn))
        if len(pids) == 1:
            _terminate(pids[0])
        return real(conn, *args)

    monkeypatch.setattr(bulk, "_write_copied", dies_first)
    names = [f"Dies {n}" for n in range(3)]
    handles = submit_many([export_request(company, assets, name) for name in names])
    assert len(pids) == 2 and pids[0] != pids[1]
    assert handles == [f"{company}|{name}|" for name in names]
    with get_runtime().store.read() as session:
        jobs = session.scalars(select(Job.id).where(Job.name.in_(names))).all()
        runs = session.scalars(select(Run.id).where(Run.job_id.in_(jobs))).all()
    assert len(jobs) == 3 and len(runs) == 3


def test_alone_the_write_commits_whole_or_not_at_all(postgres: Queue) -> None:
    """On PostgreSQL the job and its run are one statement committed by itself: a clash of
    its run's name leaves nothing behind, and the same statement sent twice fails the second
    time, the run it committed found by its name and task id."""
    company, _ = make_company(1)
    company_id, now = _company_id(company), utcnow()
    store = get_runtime().store
    run = _run_row(company_id, "Alone", now)
    with store.each_statement() as conn:
        assert commits_each_statement(conn)
        job_id, run_id = insert_job_and_run_alone(conn, _job_row(company_id, "Alone", now), run)
        with pytest.raises(IntegrityError):  # the same run name: nothing of it committed
            insert_job_and_run_alone(
                conn, _job_row(company_id, "Alone", now), _run_row(company_id, "Alone", now)
            )
        assert committed_run(conn, run) == (job_id, run_id)
        assert committed_run(conn, {**run, "task_id": "another"}) is None
    assert _jobs_named(company_id, "Alone") == 1


@pytest.mark.parametrize("committed", [False, True], ids=["lost-before", "reply-lost"])
def test_a_write_whose_connection_died_is_written_once(postgres: Queue, committed: bool) -> None:
    """The one-statement write on a connection that died: sent again on a new connection, it
    goes in if the first never arrived, and is found (not doubled) if it had committed."""
    company, _ = make_company(1)
    company_id, now = _company_id(company), utcnow()
    store = get_runtime().store
    name = f"Died {committed}"
    job, run = _job_row(company_id, name, now, live_key=name), _run_row(company_id, name, now)
    earlier = None
    if committed:  # as if the first attempt committed and its reply was lost
        with store.each_statement() as other:
            earlier = insert_job_and_run_alone(other, job, run)
    with store.each_statement() as conn:
        _terminate(_backend_pid(conn))
        job_id, run_id = submission._insert_job_and_run(conn, get_runtime(), job, run)
    assert job_id is not None and run_id is not None
    with store.each_statement() as conn:
        assert committed_run(conn, run) == (job_id, run_id)
    if earlier is not None:
        assert (job_id, run_id) == earlier
    assert _jobs_named(company_id, name) == 1
