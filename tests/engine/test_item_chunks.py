"""A fan-out's items in chunks: several items a message, each still done once.

``dispatch.send_items`` cuts a run's items into chunks (at most ``JOBENGINE_ITEM_CHUNK`` a
message, fewer while that would make under ``ITEM_SPREAD`` messages); the item task does a
chunk with ``runner.run_chunk``: in order, each item behind its own guard, an item counted in
the transaction that claims the next. Here the chunks run in this process on both stores,
against items held elsewhere, a dead holder, a stop and a pause asked for mid-chunk, and a
chunk out of time; their messages go to a queue of the test's own that no worker reads.
"""

from __future__ import annotations

import time

import pytest
import redis
from sqlalchemy import select, update

from jobengine import submit
from jobengine.embedded import redis_client
from jobengine.engine import dispatch, runner
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


def _states(run_id: int) -> list[tuple[str, int]]:
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(RunItem.state, RunItem.attempts)
            .where(RunItem.run_id == run_id)
            .order_by(RunItem.seq)
        ).all()
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


def test_a_stop_asked_for_mid_chunk_cancels_the_items_left_and_sends_the_finish(
    private_queue: Queue,
) -> None:
    run, _ = _started("Chunk Stopped", 4)

    def stop_after_first(step: runner.ItemStep) -> None:
        if step.finished == 1:
            with get_runtime().store.write() as session:
                session.execute(update(Run).where(Run.id == run.id).values(stop_requested=True))

    # told after the commit that counted item 0 and claimed item 1: item 1 is at work when the
    # stop comes, as with a message an item (its conversion would be ended in flight)
    step = runner.run_chunk(run.id, [0, 1, 2, 3], "worker-a", on_item=stop_after_first)

    assert step.status == "cancelled"
    assert _states(run.id) == [("done", 1), ("done", 1), ("cancelled", 0), ("cancelled", 0)]
    stopped = _run("Chunk Stopped")
    assert stopped.finished_items == 4 and stopped.success_count == 2
    assert stopped.finish_sent_at is not None
    assert runner.finish(run.id, "finisher") == "stopped"


def test_a_pause_mid_chunk_leaves_the_items_left_pending(private_queue: Queue) -> None:
    run, _ = _started("Chunk Paused", 4)

    def pause_after_second(step: runner.ItemStep) -> None:
        if step.finished == 2:
            with get_runtime().store.write() as session:
                session.execute(update(Run).where(Run.id == run.id).values(paused=True))

    # item 2, claimed with the count of item 1, is at work when the pause comes: done
    step = runner.run_chunk(run.id, [0, 1, 2, 3], "worker-a", on_item=pause_after_second)

    assert step == runner.ChunkStep("paused")
    assert _states(run.id) == [("done", 1), ("done", 1), ("done", 1), ("pending", 0)]
    assert _run("Chunk Paused").finished_items == 3


def test_a_chunk_out_of_time_hands_back_the_items_it_has_not_begun(private_queue: Queue) -> None:
    run, _ = _started("Chunk Late", 4)

    step = runner.run_chunk(run.id, [0, 1, 2, 3], "worker-a", on_item=lambda s: None, until=0)

    assert step == runner.ChunkStep("done", left=(1, 2, 3))  # the first item is always done
    assert _states(run.id) == [("done", 1)] + [("pending", 0)] * 3
