"""Round trips to PostgreSQL of a submission, counted in libpq's protocol trace (not timed):
across a network each costs its latency (bench/netem.py, BENCHMARKS.md).

* ``submit()``: two, its read and its write (the job and its run, committed by the statement);
* ``submit_many()``: six (:func:`jobengine.engine.bulk.record_pipelined`): its reads with the
  BEGIN, the jobs' ``COPY`` and the runs' (two each), the COMMIT;
* a worker's one-asset run: seven. Its two write transactions send their BEGIN with their
  first batch (:meth:`jobengine.store.db.Store.write_pipelined`): psycopg's own BEGIN is a round
  trip of its own, even in a pipeline, and they were nine.
"""

from __future__ import annotations

from typing import Any

import pytest

from jobengine import submit, submit_many
from jobengine.engine import runner
from jobengine.runtime import get_runtime
from tests.support.helpers import export_request, make_company
from tests.support.helpers import run_named as _run
from tests.support.round_trips import traced

Queue = tuple[dict[str, str], str]


def _engine() -> Any:
    store = get_runtime().store
    if store.is_sqlite:
        pytest.skip("SQLite is in the process: no round trips")
    return store.engine


def test_submit_takes_two_round_trips(private_queue: Queue) -> None:
    company, assets = make_company(3)
    submit(export_request(company, assets, "Warm"))  # the pool's connection, prepared statements
    with traced(_engine()) as trace:
        submit(export_request(company, assets, "Traced"))
    assert trace.round_trips == 2, trace.messages


@pytest.mark.parametrize("size", [2, 100])
def test_submit_many_takes_six_round_trips(private_queue: Queue, size: int) -> None:
    """Whatever the batch's size, and its assets' count (past 32 handles, one array)."""
    company, assets = make_company(40)
    submit_many([export_request(company, assets[:3], f"Warm {n}") for n in range(2)])
    batch = [export_request(company, [assets[n % 40]], f"Traced {n}") for n in range(size)]
    with traced(_engine()) as trace:
        handles = submit_many(batch)
    assert handles == [f"{company}|Traced {n}|" for n in range(size)]
    assert trace.round_trips == 6, trace.messages


def test_a_one_asset_run_takes_seven_round_trips_in_its_worker(private_queue: Queue) -> None:
    """The worker's side of a one-asset export (``runner.start``): its start (the BEGIN, the
    run's read and its claim sent together; its writes and the asset's read sent together;
    the COMMIT), the stop flag's read, and its end (the BEGIN, the job's lock, the item's move,
    count and the run's end sent together; the trigger and the log rows; the COMMIT). Nine
    while psycopg sent each BEGIN and waited for it; nineteen one statement at a time."""
    company, [asset] = make_company(1)
    submit_many([export_request(company, [asset], f"Worker Trips {n}") for n in range(8)])
    runs = [_run(f"Worker Trips {n}").id for n in range(8)]
    for run_id in runs[:6]:  # the pool's connection; psycopg prepares a query run five times
        assert runner.start(run_id, "warm") == "done"
    trips = []
    for run_id in runs[6:]:
        with traced(_engine()) as trace:
            assert runner.start(run_id, "traced") == "done"
        trips.append(trace.round_trips)
    assert trips == [7, 7], trace.messages


def test_a_chunk_of_three_items_takes_fourteen_round_trips_in_its_worker(
    private_queue: Queue,
) -> None:
    """A chunk of a fanned-out run (``runner.run_chunk``, three one-asset items): its claim, two
    (the BEGIN, the run's read, the items' claim and the commit's setting sent together; the
    COMMIT); each item's asset read, three; the stop and pause flags read before the second and
    the third item, two; and the count, seven (psycopg's BEGIN, the job's lock, the items' end,
    the run's count, the items' log rows, the finish marked, the COMMIT). Its claim one statement
    at a time, with psycopg's own BEGIN, made seventeen."""
    company, assets = make_company(21)
    submit(export_request(company, assets[:18], "Chunk Trips Warm"))
    submit(export_request(company, assets[18:], "Chunk Trips"))
    warm, traced_run = _run("Chunk Trips Warm"), _run("Chunk Trips")
    for run in (warm, traced_run):
        assert runner.start(run.id, "starter") == "started"  # its items sent as messages
    for first in range(0, 18, 3):  # psycopg prepares a statement run five times, on its sixth
        step = runner.run_chunk(warm.id, [first, first + 1, first + 2], "warm", on_item=print)
        assert step.status == "done"
    with traced(_engine()) as trace:
        step = runner.run_chunk(traced_run.id, [0, 1, 2], "traced", on_item=lambda step: None)
    assert step.status == "done"
    assert trace.round_trips == 14, trace.messages
