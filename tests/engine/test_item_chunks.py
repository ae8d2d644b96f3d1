"""A fan-out's items in chunks: several items a message, each still done once.

``dispatch.send_items`` cuts a run's items into chunks (at most ``JOBENGINE_ITEM_CHUNK`` a
message, fewer while that would make under ``ITEM_SPREAD`` messages); the item task does a
chunk with ``runner.run_chunk``: its items claimed together (each under its own claim), done
in order, and counted together. Here the chunks run in this process on both stores, against
items held elsewhere, a dead holder, a stop and a pause asked for mid-chunk, a chunk out of
time, and a chunk's process SIGKILLed before it began its items; their messages go to a queue
of the test's own that no worker reads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from sqlalchemy import select, update

from jobengine import submit
from jobengine.embedded import redis_client
from jobengine.engine import dispatch, runner
from jobengine.engine.scheduling import tick
from jobengine.kinds.base import ItemOutcome, PlannedItem, RunContext
from jobengine.kinds.export import ExportKind
from jobengine.runtime import get_runtime
from jobengine.settings import get_settings
from jobengine.store.runs import claim_item
from jobengine.store.schema import LogDetail, Run, RunItem
from tests.support.helpers import export_request, make_company
from tests.support.helpers import queued_messages as _messages
from tests.support.helpers import run_named as _run

Queue = tuple[dict[str, str], str]


def _started(name: str, n: int) -> tuple[Run, list[str]]:
    """A fanned-out export of ``n`` assets whose start ran here (its items pending)."""
    company, assets = make_company(n)
    submit(export_request(company, assets, name))
    run = _run(name)
    assert runner.start(run.id, "starter") == "started"
    return run, assets


def _items(run_id: int, *columns: Any) -> list[Any]:
    """``columns`` of each of the run's items, in order."""
    with get_runtime().store.read() as session:
        query = select(*columns).where(RunItem.run_id == run_id).order_by(RunItem.seq)
        return list(session.execute(query).all())


def _states(run_id: int) -> list[tuple[str, int]]:
    rows = _items(run_id, RunItem.state, RunItem.attempts)
    return [(str(state), int(attempts)) for state, attempts in rows]


def _outcome_rows(run_id: int) -> list[tuple[str, str | None]]:
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(LogDetail.log_type, LogDetail.asset_handle)
            .where(LogDetail.run_id == run_id, LogDetail.asset_handle.is_not(None))
            .order_by(LogDetail.id)
        ).all()
    return [(str(t), h) for t, h in rows]


def test_items_are_cut_into_chunks_of_at_most_the_setting_and_enough_messages() -> None:
    items = [(s, f"a|{s}") for s in range(500)]
    chunks = dispatch.item_chunks(items, 16)
    assert [len(c) for c in chunks] == [16] * 31 + [4]
    assert [i for c in chunks for i in c] == items  # every item once, in order
    assert [len(c) for c in dispatch.item_chunks(items[:40], 16)] == [2] * 20  # >= 32 messages
    assert [len(c) for c in dispatch.item_chunks(items[:20], 16)] == [1] * 20
    assert [len(c) for c in dispatch.item_chunks(items, 1)] == [1] * 500
    assert [len(c) for c in dispatch.item_chunks(items[:3], 16)] == [1, 1, 1]


@pytest.mark.parametrize("way", ["pipelined", "group"])
def test_a_chunk_is_one_message_with_its_seqs_and_one_item_is_a_message_as_before(
    private_queue: Queue, way: str
) -> None:
    _, queue = private_queue
    client: redis.Redis = redis_client(get_settings())
    labels = {"job": "47|Many|", "company": "47", "run": "Many_2026"}
    items = [(s, f"a|{s}") for s in range(70)]  # chunks of 3: 23 of them, then one of 1
    try:
        if way == "pipelined":
            dispatch.send_items("export", 1, "t-1", items, labels, chunk=16)
        else:  # the way on a broker the pipelined sender does not cover (RabbitMQ)
            chunks = dispatch.item_chunks(items, 16)
            dispatch._send_group("jobengine.export.item", 1, "t-1", chunks, labels)
        sent = _messages(client, queue)
    finally:
        client.delete(queue)
    expected = [
        ("jobengine.export.item", f"t-1-{s}",
         {"run_id": 1, "seq": s, "item": f"a|{s}", "seqs": [s, s + 1, s + 2], **labels})
        for s in range(0, 69, 3)
    ]  # fmt: skip
    expected.append(("jobengine.export.item", "t-1-69",
                     {"run_id": 1, "seq": 69, "item": "a|69", **labels}))  # fmt: skip
    assert sent == expected


def test_a_chunk_does_each_item_once_and_its_last_item_sends_the_finish(
    private_queue: Queue,
) -> None:
    run, assets = _started("Chunk Once", 5)
    steps: list[runner.ItemStep] = []

    first = runner.run_chunk(run.id, [0, 1, 2], "worker-a", on_item=steps.append)
    again = runner.run_chunk(run.id, [0, 1, 2], "worker-b", on_item=steps.append)  # a copy

    assert first == runner.ChunkStep("done") and again == runner.ChunkStep("duplicate")
    assert [(s.status, s.finished, s.total) for s in steps] == [
        ("done", 1, 5), ("done", 2, 5), ("done", 3, 5)
    ]  # fmt: skip
    assert _run("Chunk Once").finish_sent_at is None
    assert runner.run_chunk(run.id, [3, 4], "worker-a", on_item=steps.append).status == "done"
    done = _run("Chunk Once")
    assert done.finished_items == 5 and done.success_count == 5
    assert done.finish_sent_at is not None  # the last item's transaction sent the finish
    assert _states(run.id) == [("done", 1)] * 5
    assert _outcome_rows(run.id) == [("ReturnSuccess", a) for a in assets]
    assert runner.finish(run.id, "finisher") == "done"
    assert _run("Chunk Once").output["files"] == 5


def test_a_chunk_leaves_items_a_live_delivery_holds_and_takes_over_a_dead_ones(
    private_queue: Queue,
) -> None:
    run, _ = _started("Chunk Held", 4)
    with get_runtime().store.write() as session:
        assert claim_item(session, run.id, 1, "live-worker", 30).status == "owned"
        assert claim_item(session, run.id, 2, "dead-worker", 0.05).status == "owned"
    time.sleep(0.1)  # the dead worker's lease lapses

    step = runner.run_chunk(run.id, [0, 1, 2, 3], "worker-a", on_item=lambda s: None)

    assert step.status == "done" and [seq for seq, _ in step.busy] == [1]
    assert step.busy[0][1] > _run("Chunk Held").last_progress_update  # until its lease lapses
    assert _states(run.id) == [("done", 1), ("running", 1), ("done", 2), ("done", 1)]
    assert _run("Chunk Held").finished_items == 3


def _while_doing(monkeypatch: pytest.MonkeyPatch, key: str, then: Callable[[], None]) -> None:
    """Call ``then`` while the export item of asset ``key`` is at work (before its file is
    exported), in this process."""
    real = ExportKind.process

    def process(self: ExportKind, ctx: RunContext[Any], item: PlannedItem) -> ItemOutcome:
        if item.key == key:
            then()
        return real(self, ctx, item)

    monkeypatch.setattr(ExportKind, "process", process)


def _set_run(run_id: int, **values: bool) -> Callable[[], None]:
    def change() -> None:
        with get_runtime().store.write() as session:
            session.execute(update(Run).where(Run.id == run_id).values(**values))

    return change


def test_a_stop_asked_for_mid_chunk_cancels_the_items_left_and_sends_the_finish(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, assets = _started("Chunk Stopped", 4)
    # item 1 is at work when the stop comes: done (a conversion would be ended in flight);
    # items 2 and 3, claimed with the chunk and not begun, are cancelled
    _while_doing(monkeypatch, assets[1], _set_run(run.id, stop_requested=True))
    steps: list[runner.ItemStep] = []

    step = runner.run_chunk(run.id, [0, 1, 2, 3], "worker-a", on_item=steps.append)

    assert step.status == "cancelled"
    assert [(s.status, s.finished) for s in steps] == [
        ("done", 1), ("done", 2), ("cancelled", 3), ("cancelled", 4)
    ]  # fmt: skip
    assert _states(run.id) == [("done", 1), ("done", 1), ("cancelled", 0), ("cancelled", 0)]
    assert _outcome_rows(run.id) == [("ReturnSuccess", a) for a in assets[:2]]
    stopped = _run("Chunk Stopped")
    assert stopped.finished_items == 4 and stopped.success_count == 2
    assert stopped.finish_sent_at is not None
    assert runner.finish(run.id, "finisher") == "stopped"
    with get_runtime().store.read() as session:
        cancels = session.scalars(
            select(LogDetail.message)
            .where(LogDetail.run_id == run.id, LogDetail.log_type == "FileCancel")
            .order_by(LogDetail.id)
        ).all()
    assert cancels == [f"{a} cancelled: job stopped" for a in assets[2:]]


def test_a_pause_mid_chunk_gives_back_the_items_not_begun_and_resume_sends_them(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, assets = _started("Chunk Paused", 4)
    _while_doing(monkeypatch, assets[2], _set_run(run.id, paused=True))

    # item 2 is at work when the pause comes: done; item 3, claimed and not begun, given back
    step = runner.run_chunk(run.id, [0, 1, 2, 3], "worker-a", on_item=lambda s: None)

    assert step == runner.ChunkStep("paused")
    assert _states(run.id) == [("done", 1), ("done", 1), ("done", 1), ("pending", 0)]
    with get_runtime().store.read() as session:
        held = session.scalar(select(RunItem.claimed_by).where(RunItem.run_id == run.id,
                                                               RunItem.seq == 3))  # fmt: skip
    assert held is None
    assert _run("Chunk Paused").finished_items == 3
    _set_run(run.id, paused=False)()
    assert runner.run_chunk(run.id, [3], "worker-b", on_item=lambda s: None).status == "done"
    assert _run("Chunk Paused").finished_items == 4


def test_a_chunk_sent_to_a_paused_run_claims_nothing_and_to_a_stopped_one_cancels(
    private_queue: Queue,
) -> None:
    """The chunk's items are claimed with the run's read, before its flags are known: a paused
    or stopped run's claims are rolled back, and the chunk then does what it did when it read
    the run first (nothing for a pause, its items cancelled for a stop)."""
    run, _ = _started("Chunk Came Paused", 3)
    _set_run(run.id, paused=True)()

    assert runner.run_chunk(run.id, [0, 1, 2], "worker-a", on_item=lambda s: None) == (
        runner.ChunkStep("paused")
    )
    assert _states(run.id) == [("pending", 0)] * 3  # no claim left behind, no attempt counted
    assert _items(run.id, RunItem.claimed_by) == [(None,)] * 3

    _set_run(run.id, paused=False, stop_requested=True)()
    steps: list[runner.ItemStep] = []
    step = runner.run_chunk(run.id, [0, 1, 2], "worker-a", on_item=steps.append)
    assert step.status == "cancelled"
    assert [(s.status, s.finished) for s in steps] == [("cancelled", n) for n in (1, 2, 3)]
    assert _states(run.id) == [("cancelled", 0)] * 3
    assert _outcome_rows(run.id) == []


def test_a_chunk_out_of_time_hands_back_the_items_it_has_not_begun(private_queue: Queue) -> None:
    run, _ = _started("Chunk Late", 4)

    step = runner.run_chunk(run.id, [0, 1, 2, 3], "worker-a", on_item=lambda s: None, until=0)

    assert step == runner.ChunkStep("done", left=(1, 2, 3))  # the first item is always done
    assert _states(run.id) == [("done", 1)] + [("pending", 0)] * 3


def test_an_item_taken_over_while_its_chunk_worked_is_left_to_its_new_holder(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk's items end in one statement unless one of them is no longer its own: then
    that transaction is rolled back and each item ends by itself, the one taken over left
    uncounted and unlogged for its new holder."""
    run, assets = _started("Chunk Taken Over", 4)

    def take_over() -> None:  # as a delivery would once the chunk's lease of item 1 lapsed
        with get_runtime().store.write() as session:
            session.execute(
                update(RunItem)
                .where(RunItem.run_id == run.id, RunItem.seq == 1)
                .values(claimed_by="new-holder")
            )

    _while_doing(monkeypatch, assets[2], take_over)

    step = runner.run_chunk(run.id, [0, 1, 2, 3], "worker-a", on_item=lambda s: None)

    assert step == runner.ChunkStep("done")
    assert _states(run.id) == [("done", 1), ("running", 1), ("done", 1), ("done", 1)]
    assert _outcome_rows(run.id) == [("ReturnSuccess", a) for a in (assets[0], *assets[2:])]
    assert _run("Chunk Taken Over").finished_items == 3
    assert runner.run_chunk(run.id, [1], "new-holder", on_item=lambda s: None).status == "done"
    assert _outcome_rows(run.id)[-1] == ("ReturnSuccess", assets[1])
    assert _run("Chunk Taken Over").finished_items == 4


def test_a_chunk_counts_its_items_together_in_one_write_for_small_items(
    private_queue: Queue,
) -> None:
    """Small items: the chunk's items are claimed in one transaction and counted in one
    (each item's step is still told, as if counted one by one)."""
    run, assets = _started("Chunk Together", 6)
    seen: list[tuple[str, int]] = []

    def count(step: runner.ItemStep) -> None:
        seen.append((step.status, _run("Chunk Together").finished_items))

    step = runner.run_chunk(run.id, list(range(6)), "worker-a", on_item=count)

    assert step == runner.ChunkStep("done")
    assert seen == [("done", 6)] * 6  # told after the one commit that counted all six
    assert _states(run.id) == [("done", 1)] * 6
    assert _outcome_rows(run.id) == [("ReturnSuccess", a) for a in assets]
    assert _run("Chunk Together").finish_sent_at is not None


def test_a_stopped_runs_item_whose_holder_died_is_cancelled_when_sent_again(
    private_queue: Queue,
) -> None:
    """Nobody else would end an item a dead worker holds: once its claim lapsed, the stopped
    run's re-sent item cancels it, and the run can finish."""
    run, _ = _started("Stopped Dead Holder", 3)
    with get_runtime().store.write() as session:
        assert claim_item(session, run.id, 0, "dead-worker", 0.05).status == "owned"
        assert claim_item(session, run.id, 1, "live-worker", 30).status == "owned"
    time.sleep(0.1)
    _set_run(run.id, stop_requested=True)()

    step = runner.run_chunk(run.id, [0, 1, 2], "worker-a", on_item=lambda s: None)

    assert step.status == "cancelled"
    assert _states(run.id) == [("cancelled", 1), ("running", 1), ("cancelled", 0)]
    assert _run("Stopped Dead Holder").finished_items == 2
    assert runner.run_item(run.id, 0, "worker-b").status == "duplicate"  # ended once


# A chunk done in a process of its own, stopped dead (SIGKILL) as it begins its first item.
_DOOMED = """
import sys, time
from jobengine.engine import runner
from jobengine.kinds.export import ExportKind

def process(self, ctx, item):
    print("begun", item.key, flush=True)
    time.sleep(120)

ExportKind.process = process
runner.run_chunk(int(sys.argv[1]), [int(s) for s in sys.argv[2:]], "doomed", on_item=print)
"""


@pytest.mark.slow
def test_a_chunks_items_claimed_together_are_recovered_after_its_process_is_killed(
    private_queue: Queue,
) -> None:
    """SIGKILL of the process doing a chunk once it holds all the chunk's items and has begun
    the first: the claims lapse, the scheduler sends every one of them again (begun or not),
    and another delivery does each once: no item lost, none counted or logged twice."""
    env, queue = private_queue
    run, assets = _started("Chunk Killed", 6)
    client: redis.Redis = redis_client(get_settings())
    client.delete(queue)  # the start's messages: this test sends the chunk itself
    argv = [sys.executable, "-c", _DOOMED, str(run.id), *map(str, range(6))]
    doomed = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE)
    try:
        assert doomed.stdout is not None
        assert doomed.stdout.readline().split() == [b"begun", assets[0].encode()]
        assert [claim for claim, _ in _claims(run.id)] == ["doomed"] * 6  # all held, together
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        if doomed.stdout is not None:
            doomed.stdout.close()
    assert _states(run.id) == [("running", 1)] * 6  # as the killed process left them
    lapsed = max(until for _, until in _claims(run.id))  # no heartbeat extends them now
    time.sleep(max(0.0, lapsed - time.time()) + float(env["JOBENGINE_OUTBOX_GRACE"]) + 0.1)
    chunks: list[list[int]] = []
    try:
        deadline = time.monotonic() + 10
        while not chunks and time.monotonic() < deadline:
            tick()  # as the beat does: the lapsed claims' items are sent again
            chunks = [  # other tests' runs in this store may have steps sent again too
                kwargs.get("seqs", [kwargs["seq"]])
                for task, _, kwargs in _messages(client, queue)
                if task == "jobengine.export.item" and kwargs["run_id"] == run.id
            ]
            time.sleep(0.2)
    finally:
        client.delete(queue)
    assert sorted(s for seqs in chunks for s in seqs) == list(range(6))

    for seqs in chunks:
        assert runner.run_chunk(run.id, seqs, "survivor", on_item=lambda s: None).status == "done"

    assert _states(run.id) == [("done", 2)] * 6  # the killed claim, then the survivor's
    assert _outcome_rows(run.id) == [("ReturnSuccess", a) for a in assets]  # each once
    done = _run("Chunk Killed")
    assert done.finished_items == 6 and done.success_count == 6
    assert runner.finish(run.id, "finisher") == "done"


def _claims(run_id: int) -> list[tuple[str | None, float]]:
    """Each item's holder and when its lease lapses (epoch seconds), in order."""
    rows = _items(run_id, RunItem.claimed_by, RunItem.lease_until)
    return [(claim, until.timestamp() if until else 0.0) for claim, until in rows]
