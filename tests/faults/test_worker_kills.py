"""Whole workers SIGKILLed: during a batch (holding an ETA message), in the middle of writing a
ZIP, and between a written ZIP and the commit of its run's end. Nothing is lost, nothing fails,
every ZIP is there once, and the janitor leaves no temporary file or staging folder behind.
"""

from __future__ import annotations

import sqlite3
import time
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from jobengine import submit
from jobengine.cli.devstack import wait_for_runs
from jobengine.engine import janitor
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage, safe_name
from jobengine.store.schema import Job, Run
from tests.support.fleet import (
    KILL_TIMINGS,
    Figures,
    Fleet,
    RedisServer,
    fleet_env,
    scenario,
    wait_until,
)
from tests.support.helpers import duplicated_successes, export_request, make_company

pytestmark = pytest.mark.slow

SMALL_JOBS = 100
BIG_ASSETS = 12


def _states() -> Counter[str]:
    with get_runtime().store.read() as session:
        return Counter(session.scalars(select(Run.state)))


def _exports(company: str) -> Path:
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    return storage.path(f"{company}/exports")


def _temp_zips(company: str) -> list[Path]:
    folder = _exports(company)
    return list(folder.glob(".tmp-*")) if folder.exists() else []


def _run_of(name: str) -> Run:
    with get_runtime().store.read() as session:
        run = session.scalar(select(Run).join(Job, Job.id == Run.job_id).where(Job.name == name))
    assert run is not None
    return run


def test_workers_killed_in_a_batch_and_in_finishes_lose_and_fail_nothing(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    redis = RedisServer(fault_home)
    fleet_parts.append(redis)
    store = fault_home / "store.db"
    env = fleet_env(fault_home, redis, f"sqlite:///{store}", **KILL_TIMINGS)
    fleet = Fleet(env, fault_home)
    fleet_parts.append(fleet)
    figures = Figures("worker SIGKILL: batch, mid-ZIP, between ZIP and commit")
    with scenario(env):
        small, [asset] = make_company(1)
        big, assets = make_company(BIG_ASSETS, pad=3_000_000)
        worker = fleet.worker()
        fleet.beat()
        handles = [submit(export_request(small, [asset], f"Small {n}")) for n in range(SMALL_JOBS)]

        # 1. a whole worker killed in the middle of the batch, holding an ETA message
        wait_until(lambda: _states()["Done"] >= 20, 60, "20 runs done")
        at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        handles.append(submit(export_request(small, [asset], "ETA Held", execTime=at)))
        time.sleep(0.5)  # the worker takes the message and holds it until its time
        worker = fleet.replace(worker)

        # 2. killed while writing a ZIP: its temporary file is left behind
        handles.append(submit(export_request(big, assets, "Big Mid Write")))
        wait_until(lambda: bool(_temp_zips(big)), 60, "a ZIP being written", poll=0.002)
        worker = fleet.replace(worker)
        orphans = set(_temp_zips(big))
        wait_for_runs(big, handles[-1:], timeout=120)  # its re-sent finish wrote it again

        # 3. killed after its ZIP is complete, before the end of its run is committed: this
        # process holds the store's write lock while the ZIP is written, so the finish waits
        # for it with the ZIP done
        handles.append(submit(export_request(big, assets, "Big Before Commit")))
        zip_path = _exports(big) / f"{safe_name(_run_of('Big Before Commit').run_name)}.zip"
        writing = lambda: bool(set(_temp_zips(big)) - orphans)  # noqa: E731
        wait_until(writing, 60, "the second ZIP being written", poll=0.002)
        lock = sqlite3.connect(store, timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            wait_until(zip_path.exists, 60, "the complete ZIP", poll=0.002)
            time.sleep(0.3)  # the finish is now waiting on its commit
            worker.kill()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert _run_of("Big Before Commit").state == "Running"  # the ZIP is there, the end not
        killed_at = time.monotonic()
        fleet.worker()

        logs = wait_for_runs(small, handles[: SMALL_JOBS + 1], timeout=180)
        logs += wait_for_runs(big, handles[SMALL_JOBS + 1 :], timeout=180)
        figures.recovery_seconds = time.monotonic() - killed_at
        janitor.sweep(get_runtime(), temp_grace=0)  # the leftovers of the killed writes go
        storage = get_runtime().storage
        assert isinstance(storage, LocalStorage)
        leftovers = [p for p in storage.root.rglob("*") if p.name.startswith(".tmp-")]
        staging = list((storage.root / "_staging").glob("run-*"))
        duplicated = duplicated_successes()
        held = _run_of("ETA Held")
        assert held.started_at is not None and held.eta is not None
        eta_late = round((held.started_at - held.eta).total_seconds(), 1)
        zips = {log.output.get("zip") for log in logs} - {None}
        members = [_members(storage, str(log.output["zip"])) for log in logs if log.output]

    figures.accepted = len(handles)
    figures.done = sum(log.state == "Done" for log in logs)
    figures.failed = sum(log.state == "Failed" for log in logs)
    figures.lost = len(handles) - len(logs)
    figures.duplicated = duplicated
    figures.notes = {"kills": 3, "orphan_tmp_swept": len(orphans), "eta_late_s": eta_late}
    figures.record()
    failures = [(log.job_name, log.details[-1].log_message) for log in logs if log.state != "Done"]
    assert figures.failed == 0 and figures.lost == 0, failures
    assert figures.done == len(handles)
    assert duplicated == 0
    assert len(zips) == len(handles)  # every run its own ZIP, once
    assert members == [1] * (SMALL_JOBS + 1) + [BIG_ASSETS, BIG_ASSETS]
    assert orphans and leftovers == [] and staging == []


def _members(storage: LocalStorage, key: str) -> int:
    with zipfile.ZipFile(storage.path(key)) as zf:
        names = zf.namelist()
    assert len(names) == len(set(names))
    return len(names)
