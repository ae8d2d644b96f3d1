"""No lost job and no job run twice: broker down at submit, two beats, killed workers, RabbitMQ."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from jobengine import submit
from jobengine.engine.app import app, configure
from jobengine.engine.scheduling import tick
from jobengine.runtime import get_runtime
from jobengine.store.schema import Job, LogDetail, Run, RunItem
from tests.support.helpers import export_request
from tests.support.stack import Worker, unavailable

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _run_of(name: str) -> Run:
    with get_runtime().store.read() as session:
        run = session.scalar(
            select(Run).join(Job, Job.id == Run.job_id).where(Job.name == name).order_by(Run.id)
        )
    assert run is not None
    return run


def test_broker_down_at_submit_keeps_the_job_and_the_relay_sends_it(stack) -> None:
    company, assets = stack.company(2)
    configure(broker_url="redis://127.0.0.1:9/0")  # nothing listens there
    try:
        handle = submit(export_request(company, assets, "Outbox"))
    finally:
        configure()
    assert handle == f"{company}|Outbox|"
    run = _run_of("Outbox")
    assert run.state == "Queued" and run.dispatched_at is None
    time.sleep(1.2)  # the test outbox grace is 1 s
    report = tick()
    assert run.run_name in report.relayed
    log = stack.wait(company, handle)
    assert log.state == "Done" and log.file_success_count == 2


@pytest.mark.slow
def test_two_beats_never_fire_a_schedule_twice(stack) -> None:
    company, assets = stack.company(1)
    submit(export_request(company, assets, "Two Beats", execSchedule="* * * * * ?"))
    env = {**os.environ, **stack.env}
    home = Path(stack.env["JOBENGINE_HOME"])
    beats = []
    for n in range(2):
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "jobengine.celery_app",
            "beat",
            "-S",
            "jobengine.engine.scheduling:StoreScheduler",
            "--loglevel",
            "info",
            "--schedule",
            str(home / f"beat{n}.db"),
        ]
        out = (home / f"beat{n}.log").open("ab")
        beats.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        time.sleep(6)
        beats[0].send_signal(signal.SIGKILL)  # the leader may die; the other takes over
        time.sleep(8)
    finally:
        for beat in beats:
            if beat.poll() is None:
                beat.send_signal(signal.SIGTERM)
            beat.wait(20)
    with get_runtime().store.read() as session:
        keys = list(
            session.scalars(
                select(Run.fire_key)
                .join(Job, Job.id == Run.job_id)
                .where(Job.name == "Two Beats", Run.state != "Staged")  # fires written ahead
            )
        )
    assert len(keys) == len(set(keys))
    assert 5 <= len(keys) <= 15  # one per second while a beat was leader, never two


@pytest.mark.slow
def test_a_worker_child_killed_mid_job_still_completes_the_job_once(store_only) -> None:
    from tests.support.helpers import make_company

    company, assets = make_company(40, pad=2_000_000)
    worker = Worker(store_only, concurrency=2)
    try:
        handle = submit(export_request(company, assets, "Killed"))
        run, victim = _wait_for_item_in(worker, "Killed")
        os.kill(victim, signal.SIGKILL)  # mid-item: the item is claimed and half done
        from jobengine.cli.devstack import wait_for_runs

        # beat's tick re-sends what the dead child held (lease lapsed); call it as beat would
        [log] = wait_for_runs(company, [handle], timeout=100, on_poll=lambda _: tick())
    finally:
        worker.stop()
    assert log.state == "Done", [(d.log_type, d.log_message) for d in log.details[-5:]]
    assert log.file_success_count == 40 and log.file_error_count == 0
    with zipfile.ZipFile(get_runtime().storage.path(log.output["zip"])) as zf:
        names = zf.namelist()
    assert len(names) == len(set(names)) == 40
    with get_runtime().store.read() as session:
        items = session.scalars(select(RunItem).where(RunItem.run_id == run.id)).all()
        successes = Counter(
            session.scalars(
                select(LogDetail.asset_handle).where(
                    LogDetail.run_id == run.id, LogDetail.log_type == "ReturnSuccess"
                )
            )
        )
    assert {i.state for i in items} == {"done"}
    assert set(successes.values()) == {1}  # every asset logged exactly once


def _wait_for_item_in(worker: Worker, name: str, timeout: float = 60) -> tuple[Run, int]:
    """A run and the pid of one of ``worker``'s children that holds one of its items now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {str(pid): pid for pid in worker.children()}
        with get_runtime().store.read() as session:
            run = session.scalar(
                select(Run).join(Job, Job.id == Run.job_id).where(Job.name == name)
            )
            claims = session.scalars(
                select(RunItem.claimed_by).where(
                    RunItem.run_id == (run.id if run else -1), RunItem.state == "running"
                )
            ).all()
        for claim in claims:
            pid = (claim or "").split(":")[1] if claim and claim.count(":") >= 2 else ""
            if run is not None and pid in pids and run.finished_items > 0:
                return run, pids[pid]
        time.sleep(0.005)
    raise AssertionError(f"no item of {name} was seen running in the worker")


@pytest.mark.slow
def test_rabbitmq_as_the_broker(store_only) -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as exc:
        unavailable("RabbitMQ", f"{AMQP_URL}: {exc}")
    from tests.support.helpers import make_company
    from tests.support.stack import apply_env

    env = {**store_only, "JOBENGINE_BROKER_URL": AMQP_URL}
    apply_env(env)
    worker = Worker(env, concurrency=1)
    try:
        company, assets = make_company(3)
        handle = submit(export_request(company, assets, "Over AMQP"))
        from jobengine.cli.devstack import wait_for_runs

        [log] = wait_for_runs(company, [handle], timeout=60)
    finally:
        worker.stop()
        env.pop("JOBENGINE_BROKER_URL")
        os.environ.pop("JOBENGINE_BROKER_URL", None)
        apply_env(env)
    assert log.state == "Done" and log.file_success_count == 3
    assert app.conf.broker_url != AMQP_URL


@pytest.mark.slow
def test_a_whole_worker_killed_mid_job_is_taken_over_by_another(store_only) -> None:
    """SIGKILL of a worker's main process and its child: the messages it held come back through
    the scheduler (lapsed leases, stalled pending items) and another worker completes the job.

    The survivor starts once the doomed worker is seen holding an item: started before, it could
    take every item of the run under load and leave the doomed worker nothing to die with."""
    from jobengine.cli.devstack import wait_for_runs
    from tests.support.helpers import make_company

    company, assets = make_company(40, pad=2_000_000)
    doomed = Worker(store_only, concurrency=1)
    survivor = None
    try:
        handle = submit(export_request(company, assets, "Whole Worker"))
        run, child = _wait_for_item_in(doomed, "Whole Worker")
        os.kill(child, signal.SIGKILL)
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(10)
        survivor = Worker(store_only, concurrency=1)
        [log] = wait_for_runs(company, [handle], timeout=100, on_poll=lambda _: tick())
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()
    assert log.state == "Done", [(d.log_type, d.log_message) for d in log.details[-5:]]
    assert log.file_success_count == 40 and log.file_error_count == 0
    with get_runtime().store.read() as session:
        successes = Counter(
            session.scalars(
                select(LogDetail.asset_handle).where(
                    LogDetail.run_id == run.id, LogDetail.log_type == "ReturnSuccess"
                )
            )
        )
    assert len(successes) == 40 and set(successes.values()) == {1}
