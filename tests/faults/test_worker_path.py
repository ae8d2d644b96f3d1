"""Whole workers SIGKILLed twice on the worker's short path, on a PostgreSQL store of the
scenario's own: one-asset runs (start, item and finish in one task, the finish's reads taken
with its claim) and a fan-out of one export (items planned with one multi-row insert, the
finish claimed by the last item). Each run is done once: no run lost or failed, no item counted
twice, every ZIP whole with one member per asset, and nothing left staged after the janitor.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from jobengine import submit
from jobengine.cli.devstack import wait_for_runs
from jobengine.engine import janitor
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from jobengine.store.schema import Run, RunItem
from tests.support.fleet import (
    Figures,
    postgres_fleet,
    scenario,
    wait_until,
)
from tests.support.helpers import (
    duplicated_successes,
    export_request,
    make_company,
    zip_members,
)

pytestmark = pytest.mark.slow

SMALL_JOBS = 60
FAN_OUT = 40


def _done_runs() -> int:
    with get_runtime().store.read() as session:
        return int(session.scalar(select(func.count()).where(Run.state == "Done")) or 0)


def _done_items() -> int:
    with get_runtime().store.read() as session:
        done = select(func.count()).select_from(RunItem).where(RunItem.state == "done")
        return int(session.scalar(done) or 0)


def _taken_over() -> int:
    """Items claimed more than once: the work a killed worker held, taken over."""
    with get_runtime().store.read() as session:
        again = select(func.count()).select_from(RunItem).where(RunItem.attempts > 1)
        return int(session.scalar(again) or 0)


def test_workers_killed_twice_in_small_runs_and_in_a_fan_out_do_each_run_once(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    _, fleet = postgres_fleet(fault_home, fleet_parts)
    figures = Figures("worker SIGKILL x2: one-asset runs, then a fan-out (PostgreSQL)")
    with scenario(fleet.env):
        small, [asset] = make_company(1, pad=1_000_000)
        big, assets = make_company(FAN_OUT, pad=300_000)
        worker = fleet.worker()
        fleet.beat()

        # 1. one-asset runs, each done in its start task: two workers killed among them
        handles = [submit(export_request(small, [asset], f"Small {n}")) for n in range(SMALL_JOBS)]
        wait_until(lambda: _done_runs() >= 10, 120, "10 runs done", explain=fleet.tails)
        worker = fleet.replace(worker)
        wait_until(lambda: _done_runs() >= 30, 120, "30 runs done", explain=fleet.tails)
        worker = fleet.replace(worker)
        small_logs = wait_for_runs(small, handles, timeout=180)

        # 2. one export of FAN_OUT assets, its items fanned out: two workers killed mid-way
        items_before = _done_items()
        big_handle = submit(export_request(big, assets, "Fan Out"))
        wait_until(
            lambda: _done_items() >= items_before + 5, 120, "5 items done", explain=fleet.tails
        )
        worker = fleet.replace(worker)
        wait_until(
            lambda: _done_items() >= items_before + 20, 120, "20 items done", explain=fleet.tails
        )
        worker.kill()
        killed_at = time.monotonic()
        fleet.worker()
        [big_log] = wait_for_runs(big, [big_handle], timeout=180)
        figures.recovery_seconds = time.monotonic() - killed_at

        janitor.sweep(get_runtime(), temp_grace=0)  # what the killed steps left goes
        storage = get_runtime().storage
        assert isinstance(storage, LocalStorage)
        leftovers = [p for p in storage.root.rglob("*") if p.name.startswith(".tmp-")]
        staging = list((storage.root / "_staging").glob("run-*"))
        repeats, taken_over = duplicated_successes(), _taken_over()
        logs = [*small_logs, big_log]
        members = [zip_members(storage, str(log.output["zip"])) for log in logs if log.output]
        zips = {log.output.get("zip") for log in logs} - {None}

    figures.count(SMALL_JOBS + 1, logs)
    figures.duplicated = repeats
    figures.notes = {"kills": 4, "items_taken_over": taken_over}
    figures.record()
    failures = [(log.job_name, log.details[-1].log_message) for log in logs if log.state != "Done"]
    assert figures.failed == 0 and figures.lost == 0, failures
    assert figures.done == figures.accepted
    assert repeats == 0
    assert big_log.file_success_count == FAN_OUT
    assert len(zips) == figures.accepted  # every run its own ZIP, once
    assert members == [1] * SMALL_JOBS + [FAN_OUT]
    assert leftovers == [] and staging == []


CHUNKED = 320  # items of 10 a message: JOBENGINE_ITEM_CHUNK 16, at least 32 messages


def test_workers_killed_twice_mid_chunk_do_each_item_of_a_chunked_fan_out_once(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    """A fan-out whose items go ten a message (dispatch.item_chunks), converted so that the
    kills land while each child is inside a chunk: the item at work is taken over once its
    claim lapses, the chunk's items not begun are sent again by the scheduler (the killed
    worker's messages are gone with it), and every item is counted once."""
    _, fleet = postgres_fleet(fault_home, fleet_parts, JOBENGINE_ITEM_CHUNK="16")
    figures = Figures("worker SIGKILL x2 inside chunks of a fan-out (PostgreSQL)")
    with scenario(fleet.env):
        company, assets = make_company(CHUNKED)
        worker = fleet.worker()
        fleet.beat()
        request = export_request(company, assets, "Chunked Fan Out")
        request["exportJob"].update({"fmt": "convert", "is_modifier": "fmt=png&wid=200"})
        handle = submit(request)
        wait_until(lambda: _done_items() >= 40, 120, "40 items done", explain=fleet.tails)
        worker = fleet.replace(worker)
        wait_until(lambda: _done_items() >= 160, 120, "160 items done", explain=fleet.tails)
        worker.kill()
        killed_at = time.monotonic()
        fleet.worker()
        [log] = wait_for_runs(company, [handle], timeout=240)
        figures.recovery_seconds = time.monotonic() - killed_at

        janitor.sweep(get_runtime(), temp_grace=0)
        storage = get_runtime().storage
        assert isinstance(storage, LocalStorage)
        staging = list((storage.root / "_staging").glob("run-*"))
        repeats, taken_over = duplicated_successes(), _taken_over()
        members = zip_members(storage, str(log.output["zip"])) if log.output else 0

    figures.accepted = 1
    figures.done = int(log.state == "Done" and log.file_error_count == 0)
    figures.failed = int(log.state == "Failed" or log.file_error_count > 0)
    figures.lost = 0
    figures.duplicated = repeats
    figures.notes = {"kills": 2, "items": CHUNKED, "items_taken_over": taken_over}
    figures.record()
    assert log.state == "Done", log.details[-1].log_message
    assert log.file_success_count == CHUNKED and log.file_error_count == 0
    assert repeats == 0
    assert members == CHUNKED
    assert staging == []
