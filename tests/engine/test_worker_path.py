"""The worker's short path, step by step in this process on both stores: planned items written
at once, the finish's reads taken in the transaction that claims it, the asset of an item read
by a prebuilt statement, and originals staged as one file per item.

Messages go to a queue of the test's own (``private_queue``) that no worker reads.
"""

from __future__ import annotations

import zipfile
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.sql import Executable

from jobengine import submit
from jobengine.engine import runner, taskkit
from jobengine.kinds import base as kinds_base
from jobengine.kinds import kind_for
from jobengine.kinds.base import ItemOutcome, PlannedItem, RunContext, asset_in_folder
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from jobengine.store.runs import add_items, finish_reads, run_items
from jobengine.store.schema import Asset, Job, LogDetail, Run, RunItem
from tests.support.helpers import export_request, make_company
from tests.support.helpers import run_named as _run

Queue = tuple[dict[str, str], str]


def _items(run_id: int) -> list[tuple[int, str, str, str | None, int]]:
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(RunItem.seq, RunItem.key, RunItem.state, RunItem.claimed_by, RunItem.attempts)
            .where(RunItem.run_id == run_id)
            .order_by(RunItem.seq)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_fanned_out_start_records_its_items_at_once_and_a_second_start_reuses_them(
    private_queue: Queue,
) -> None:
    company, assets = make_company(3)
    submit(export_request(company, assets, "Path Fan Out"))
    run = _run("Path Fan Out")

    assert runner.start(run.id, "starter") == "started"

    assert _items(run.id) == [(n, h, "pending", None, 0) for n, h in enumerate(assets)]
    started = _run("Path Fan Out")
    assert started.total_items == 3 and started.progress_message == "0 of 3 file(s) processed"
    with get_runtime().store.read() as session:
        again = run_items(session, run.id)
    assert [(i.seq, i.key, i.state) for i in again] == [(n, h, "pending") for n, h in
                                                         enumerate(assets)]  # fmt: skip


def test_items_claimed_when_planned_carry_their_holder_and_lease(private_queue: Queue) -> None:
    company, assets = make_company(2)
    submit(export_request(company, assets, "Path Claimed Items"))
    run = _run("Path Claimed Items")
    with get_runtime().store.write() as session:
        made = add_items(session, run.id, assets, holder="w1", lease=30, message="0 of 2")
    assert [(i.seq, i.state, i.claimed_by, i.attempts) for i in made] == [
        (0, "running", "w1", 1),
        (1, "running", "w1", 1),
    ]
    assert [row[2:] for row in _items(run.id)] == [("running", "w1", 1), ("running", "w1", 1)]
    with get_runtime().store.read() as session:
        leases = session.scalars(select(RunItem.lease_until).where(RunItem.run_id == run.id))
        assert all(lease is not None for lease in leases)
        assert session.get(Run, run.id).total_items == 2  # type: ignore[union-attr]


def test_the_finish_reads_the_stop_flag_and_the_done_results_with_its_claim(
    private_queue: Queue,
) -> None:
    company, assets = make_company(2)
    submit(export_request(company, assets, "Path Finish Reads"))
    run = _run("Path Finish Reads")
    assert runner.start(run.id, "starter") == "started"
    assert runner.run_item(run.id, 0, "worker-a").status == "done"
    with get_runtime().store.read() as session:
        stopped, done = finish_reads(session, run.id)
    assert not stopped
    members = [f["member"] for r in done for f in r["files"]]
    assert [m.rpartition("/")[2] for m in members] == [_name(assets[0])]

    assert runner.run_item(run.id, 1, "worker-a").status == "done"
    with get_runtime().store.write() as session:
        session.execute(update(Run).where(Run.id == run.id).values(stop_requested=True))
    assert runner.finish(run.id, "worker-b") == "stopped"  # the flag its claim read
    ended = _run("Path Finish Reads")
    assert ended.state == "Stopped" and ended.output == {}


def test_a_one_asset_run_is_done_in_its_start_with_its_zip(private_queue: Queue) -> None:
    company, [asset] = make_company(1)
    submit(export_request(company, [asset], "Path One Asset"))
    run = _run("Path One Asset")

    assert runner.start(run.id, "starter") == "done"

    done = _run("Path One Asset")
    assert done.state == "Done" and done.success_count == 1 and done.output["files"] == 1
    assert _items(run.id) == [(0, asset, "done", "starter", 1)]
    assert get_runtime().storage.list_files(f"_staging/run-{run.id}", recursive=True) == []


def test_an_items_asset_is_read_with_its_folder_and_only_in_its_company(
    private_queue: Queue,
) -> None:
    company, [asset] = make_company(1)
    _other, [foreign] = make_company(1)
    submit(export_request(company, [asset], "Path Asset Read"))
    run = _run("Path Asset Read")
    with get_runtime().store.read() as session:
        job = session.get(Job, run.job_id)
        assert job is not None
        stored = session.scalar(select(Asset).where(Asset.handle == asset))
        assert stored is not None
        expected = {c.key: getattr(stored, c.key) for c in Asset.__table__.c}
    ctx = kind_for(job.kind).context(
        get_runtime(), (run.id, job.id, run.company_id), (company, run.run_name), job.payload
    )

    found = asset_in_folder(ctx, asset)
    assert found is not None
    read, folder = found
    assert {key: getattr(read, key) for key in expected} == expected
    assert folder == "/" or folder.startswith("/")
    assert asset_in_folder(ctx, foreign) is None  # another company's asset is not there
    assert asset_in_folder(ctx, f"{asset}-gone") is None


def test_an_original_is_staged_as_one_file_which_a_retried_item_replaces(
    private_queue: Queue,
) -> None:
    company, assets = make_company(2)
    submit(export_request(company, assets, "Path Staged"))
    run = _run("Path Staged")
    assert runner.start(run.id, "starter") == "started"
    assert runner.run_item(run.id, 0, "worker-a").status == "done"
    storage = get_runtime().storage
    staged = storage.list_files(f"_staging/run-{run.id}", recursive=True)
    assert len(staged) == 1 and staged[0].count("/") == 2  # _staging/run-N/<file>: no folder

    with get_runtime().store.write() as session:  # as if its worker died after the copy
        session.execute(
            update(RunItem)
            .where(RunItem.run_id == run.id, RunItem.seq == 1)
            .values(state="running", claimed_by="dead", attempts=1)
        )
    with get_runtime().store.read() as session:
        job = session.get(Job, run.job_id)
        assert job is not None
    kind = kind_for(job.kind)
    ctx = kind.context(
        get_runtime(), (run.id, job.id, run.company_id), (company, run.run_name), job.payload
    )
    kind.process(ctx, PlannedItem(key=assets[1]))  # the dead worker's copy
    kind.process(ctx, PlannedItem(key=assets[1]))  # and the retried item's
    assert len(storage.list_files(f"_staging/run-{run.id}", recursive=True)) == 2


def _name(handle: str) -> str:
    with get_runtime().store.read() as session:
        name = session.scalar(select(Asset.name).where(Asset.handle == handle))
    assert name is not None
    return name


def _log(run_id: int) -> list[tuple[str, str]]:
    """The run's log rows in order: (log type, English message)."""
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(LogDetail.log_type, LogDetail.message)
            .where(LogDetail.run_id == run_id)
            .order_by(LogDetail.id)
        ).all()
    return [(str(t), str(m)) for t, m in rows]


class _Died(BaseException):
    """A worker dying at a point of the test's choosing (nothing catches it)."""


def test_a_one_asset_run_ends_in_one_transaction_with_its_rows_in_order(
    private_queue: Queue,
) -> None:
    company, [asset] = make_company(1)
    submit(export_request(company, [asset], "Path One Shot Rows"))
    run = _run("Path One Shot Rows")

    assert runner.start(run.id, "starter") == "done"

    ended = _run("Path One Shot Rows")
    assert ended.planned and ended.finish_sent_at is not None and ended.lease_until is None
    assert (ended.finished_items, ended.total_items, ended.success_count) == (1, 1, 1)
    types = [t for t, _ in _log(run.id)]
    assert types == ["BeginGet", "OriginalJobName", "ReturnSuccess", "EndGet"]
    assert _log(run.id)[-1][1].startswith("job done: 1 succeeded, 0 failed")


def test_a_one_asset_run_reads_its_asset_when_claimed_and_zips_the_original_where_it_lies(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of one asset done in its start task: the asset is read in the transaction that
    claims the run (no transaction of its own), and its ZIP is written from the stored
    original itself: nothing staged, as its finish follows at once, in the same task."""
    company, [asset] = make_company(1)
    submit(export_request(company, [asset], "Path One Shot Original"))
    run = _run("Path One Shot Original")

    def no_read(*args: object) -> None:
        raise AssertionError("the asset was read again, in a transaction of its own")

    monkeypatch.setattr(kinds_base, "asset_in_folder", no_read)
    assert runner.start(run.id, "starter") == "done"
    monkeypatch.undo()

    with get_runtime().store.read() as session:
        file_key = session.scalar(select(Asset.file_key).where(Asset.handle == asset))
        [result] = session.scalars(select(RunItem.result).where(RunItem.run_id == run.id))
    assert [f["staged"] for f in result["files"]] == [file_key]  # the original, not a copy
    storage = get_runtime().storage
    assert storage.list_files(f"_staging/run-{run.id}", recursive=True) == []
    done = _run("Path One Shot Original")
    assert isinstance(storage, LocalStorage)
    with zipfile.ZipFile(storage.path(str(done.output["zip"]))) as zf:
        [member] = zf.namelist()
        assert zf.read(member) == storage.path(str(file_key)).read_bytes()


def test_a_one_asset_run_killed_before_its_one_commit_is_done_once_by_the_next_start(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    company, [asset] = make_company(1)
    submit(export_request(company, [asset], "Path One Shot Killed"))
    run = _run("Path One Shot Killed")

    def die(*args: object, **kwargs: object) -> str:
        raise _Died  # the ZIP is written, nothing of the item or the end is committed

    monkeypatch.setattr(runner, "_end_one_shot", die)
    with pytest.raises(_Died):
        runner.start(run.id, "doomed")
    monkeypatch.undo()
    held = _run("Path One Shot Killed")
    assert held.state == "Running" and held.finished_items == 0
    assert _items(run.id) == [(0, asset, "running", "doomed", 1)]
    with get_runtime().store.write() as session:  # the dead worker's leases lapse
        past = held.started_at
        session.execute(update(Run).where(Run.id == run.id).values(lease_until=past))
        session.execute(update(RunItem).where(RunItem.run_id == run.id).values(lease_until=past))

    assert runner.start(run.id, "worker-b") == "done"  # the re-sent start

    done = _run("Path One Shot Killed")
    assert done.state == "Done" and (done.finished_items, done.success_count) == (1, 1)
    assert [t for t, _ in _log(run.id)].count("ReturnSuccess") == 1
    assert _items(run.id) == [(0, asset, "done", "worker-b", 2)]
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    with zipfile.ZipFile(storage.path(str(done.output["zip"]))) as zf:
        assert [m.rpartition("/")[2] for m in zf.namelist()] == [_name(asset)]
    assert runner.start(run.id, "worker-c") == "duplicate"


def _one_asset_run(name: str) -> tuple[Run, str, Any]:
    """A submitted one-asset export named ``name``: its run, its asset and its kind."""
    company, [asset] = make_company(1)
    submit(export_request(company, [asset], name))
    run = _run(name)
    with get_runtime().store.read() as session:
        job = session.get(Job, run.job_id)
        assert job is not None
    return run, asset, kind_for(job.kind)


def _meanwhile(kind: Any, monkeypatch: pytest.MonkeyPatch, *changes: Executable) -> None:
    """``kind``'s items, once processed, find ``changes`` made to the store meanwhile (by
    another party, while they worked)."""
    process = type(kind).process

    def process_then(self: object, ctx: RunContext[Any], item: PlannedItem) -> ItemOutcome:
        outcome = process(kind, ctx, item)
        with get_runtime().store.write() as session:
            for change in changes:
                session.execute(change)
        return outcome

    monkeypatch.setattr(type(kind), "process", process_then)


def test_a_one_asset_run_whose_item_was_taken_over_while_it_worked_records_nothing_of_it(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-shot end sends the item's move, its count and the run's end together: when the
    move finds the item another worker's, the count and the end sent with it are rolled back."""
    run, asset, kind = _one_asset_run("Path One Shot Taken Over")
    _meanwhile(  # our leases lapsed: worker-b took the run and its item over
        kind,
        monkeypatch,
        update(Run).where(Run.id == run.id).values(claimed_by="worker-b"),
        update(RunItem).where(RunItem.run_id == run.id).values(claimed_by="worker-b", attempts=2),
    )
    assert runner.start(run.id, "worker-a") == "duplicate"

    held = _run("Path One Shot Taken Over")
    assert (held.state, held.claimed_by, held.finished_items) == ("Running", "worker-b", 0)
    assert (held.success_count, held.output, held.finish_sent_at) == (0, {}, None)
    assert _items(run.id) == [(0, asset, "running", "worker-b", 2)]
    assert "ReturnSuccess" not in [t for t, _ in _log(run.id)]
    with get_runtime().store.read() as session:
        assert session.get(Job, run.job_id).trigger_state != "Complete"  # type: ignore[union-attr]


def test_a_paused_start_rolls_back_the_claim_sent_with_its_read(private_queue: Queue) -> None:
    """The start's read and claim go together (with the BEGIN, on PostgreSQL): a run found
    paused is left queued and unclaimed, its job's row unlocked, for resumeJob to send it."""
    run, _, _ = _one_asset_run("Path Paused Start")
    with get_runtime().store.write() as session:
        session.execute(update(Run).where(Run.id == run.id).values(paused=True))

    assert runner.start(run.id, "worker-a") == "paused"

    held = _run("Path Paused Start")
    assert (held.state, held.claimed_by, held.lease_until, held.started_at) == (
        "Queued", None, None, None,
    )  # fmt: skip
    assert _log(run.id) == [] and _items(run.id) == []
    with get_runtime().store.write() as session:  # resumed: the job's row is not held
        session.execute(update(Run).where(Run.id == run.id).values(paused=False))
    assert runner.start(run.id, "worker-b") == "done"


def test_a_one_asset_run_stopped_while_its_item_worked_ends_stopped_with_it_counted(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _, kind = _one_asset_run("Path One Shot Stopped")
    _meanwhile(kind, monkeypatch, update(Run).where(Run.id == run.id).values(stop_requested=True))
    assert runner.start(run.id, "starter") == "stopped"

    ended = _run("Path One Shot Stopped")
    assert ended.state == "Stopped" and ended.output == {} and ended.success_count == 1
    assert [t for t, _ in _log(run.id)] == [
        "BeginGet", "OriginalJobName", "ReturnSuccess", "EndGet"
    ]  # fmt: skip


def test_a_one_asset_run_whose_output_fails_counts_its_item_and_fails(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _, kind = _one_asset_run("Path One Shot Output Fails")

    def no_zip(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(kind), "_write_zip", staticmethod(no_zip))
    assert runner.start(run.id, "starter") == "failed"

    ended = _run("Path One Shot Output Fails")
    assert ended.state == "Failed" and ended.fatal_error and ended.success_count == 1
    types = [t for t, _ in _log(run.id)]
    assert types == ["BeginGet", "OriginalJobName", "ReturnSuccess", "FatalError"]


def test_an_item_task_sends_progress_about_every_twentieth_of_its_run_and_at_its_end() -> None:
    def sent(total: int) -> list[int]:
        steps = (runner.ItemStep("done", finished=n, total=total) for n in range(1, total + 1))
        return [step.finished for step in steps if taskkit._reports(step)]

    assert sent(500) == list(range(25, 501, 25))
    assert sent(3) == [1, 2, 3]
    assert sent(45)[-1] == 45 and len(sent(45)) == 23  # every second item, and the last
