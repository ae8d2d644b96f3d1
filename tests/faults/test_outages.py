"""Services that go away under running work, with the shipped timings: PostgreSQL stopped for
10 s, Redis killed and restarted with and without persistence. Nothing is dropped or failed,
and everything is done soon after the service is back.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from jobengine import errors, submit
from jobengine.cli.devstack import wait_for_runs
from jobengine.runtime import get_runtime
from jobengine.store.schema import Run
from tests.support.fleet import (
    Figures,
    Fleet,
    PostgresCluster,
    RedisServer,
    fleet_env,
    scenario,
    wait_until,
)
from tests.support.helpers import duplicated_successes, export_request, make_company

pytestmark = pytest.mark.slow

BIG = 40  # assets of the export that runs through the outage
SMALL = 10  # one-asset jobs besides it


def _convert(company: str, assets: list[str], name: str) -> dict[str, Any]:
    request = export_request(company, assets, name)
    request["exportJob"].update(fmt="convert", is_modifier="fmt=png&wid=1600")
    return request


def _done_items() -> int:
    with get_runtime().store.read() as session:
        return sum(session.scalars(select(Run.finished_items)))


def _submit_work(tag: str) -> tuple[list[tuple[str, str]], int]:
    """A big conversion and small jobs; ((company, handle) of each, items in all)."""
    big, assets = make_company(BIG, size=(2400, 1800))
    small, [asset] = make_company(1)
    jobs = [(big, submit(_convert(big, assets, f"{tag} Big")))]
    jobs += [(small, submit(export_request(small, [asset], f"{tag} Small {n}"))) for n in
             range(SMALL)]  # fmt: skip
    return jobs, BIG + SMALL


def _wait_all(jobs: list[tuple[str, str]], timeout: float) -> list[Any]:
    logs: list[Any] = []
    for company in dict.fromkeys(c for c, _ in jobs):
        logs += wait_for_runs(company, [h for c, h in jobs if c == company], timeout=timeout)
    return logs


def _figures(name: str, jobs: list[tuple[str, str]], logs: list[Any], recovery: float) -> Figures:
    figures = Figures(name, recovery_seconds=recovery)
    figures.count(len(jobs), logs)
    figures.duplicated = duplicated_successes()
    return figures


def test_a_database_outage_of_10_s_drops_nothing_and_is_done_within_60_s_of_its_return(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    database = PostgresCluster()
    fleet_parts.append(database)
    redis = RedisServer(fault_home)
    fleet_parts.append(redis)
    env = fleet_env(fault_home, redis, database.url)  # the shipped timings
    fleet = Fleet(env, fault_home)
    fleet_parts.append(fleet)
    with scenario(env):
        fleet.worker()
        fleet.beat()
        jobs, items = _submit_work("Outage")
        wait_until(lambda: _done_items() >= 5, 120, "five items done")
        database.stop()
        stopped = time.monotonic()
        with pytest.raises(errors.ServerError, match="the job store is unreachable"):
            submit(export_request("47", ["a|1"], "During The Outage"))
        time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
        database.start()
        back = time.monotonic()
        before = _done_items()
        resumed = wait_until(
            lambda: _done_items() > before, 60, "progress after the outage", explain=fleet.tails
        )
        logs = _wait_all(jobs, timeout=120)
        recovery = time.monotonic() - back
        figures = _figures("PostgreSQL stopped 10 s, shipped timings", jobs, logs, recovery)
        figures.notes = {"items": items, "first_item_after_s": round(resumed, 2)}
    figures.record()
    assert figures.failed == 0 and figures.lost == 0 and figures.duplicated == 0
    assert figures.done == len(jobs)
    assert recovery <= 60, f"done {recovery:.1f} s after the database came back"


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "no-persistence"])
def test_a_redis_restart_loses_no_job(
    persistent: bool, fault_home: Path, fleet_parts: list[object]
) -> None:
    redis = RedisServer(fault_home, persistent=persistent)
    fleet_parts.append(redis)
    env = fleet_env(fault_home, redis, f"sqlite:///{fault_home / 'store.db'}")  # shipped timings
    fleet = Fleet(env, fault_home)
    fleet_parts.append(fleet)
    with scenario(env):
        fleet.worker()
        fleet.beat()
        jobs, items = _submit_work("Restart")
        wait_until(lambda: _done_items() >= 5, 120, "five items done")
        redis.kill()
        time.sleep(2)
        redis.start_server()
        back = time.monotonic()
        before = _done_items()
        resumed = wait_until(
            lambda: _done_items() > before, 60, "progress after the restart", explain=fleet.tails
        )
        logs = _wait_all(jobs, timeout=180)
        recovery = time.monotonic() - back
        kind = "with" if persistent else "without"
        figures = _figures(
            f"Redis SIGKILLed and restarted {kind} persistence", jobs, logs, recovery
        )
        figures.notes = {"items": items, "first_item_after_s": round(resumed, 2)}
    figures.record()
    assert figures.failed == 0 and figures.lost == 0 and figures.duplicated == 0
    assert figures.done == len(jobs)
    assert recovery <= 60, f"done {recovery:.1f} s after Redis came back"


def _running_runs() -> int:
    with get_runtime().store.read() as session:
        return len(session.scalars(select(Run.id).where(Run.state == "Running")).all())


def test_a_worker_outlives_redis_restarts_while_it_holds_a_running_task(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    """Each time: one child converting (its message unacknowledged), the consumer waiting in a
    ``BRPOP`` for the other, Redis SIGKILLed and started again. Celery's consumer had the
    worker exit ("Unrecoverable error", an AttributeError inside kombu) when the connection's
    collect left its channel open with the transport's client gone: then nothing ran until a
    worker was started again. The worker must reconnect every time and finish every job once."""
    redis = RedisServer(fault_home, persistent=True)
    fleet_parts.append(redis)
    env = fleet_env(fault_home, redis, f"sqlite:///{fault_home / 'store.db'}")
    fleet = Fleet(env, fault_home)
    fleet_parts.append(fleet)
    jobs: list[tuple[str, str]] = []
    with scenario(env):
        worker = fleet.worker(concurrency=2)
        for n in range(4):
            company, assets = make_company(1, size=(4000, 3000))
            jobs.append((company, submit(_convert(company, assets, f"Held {n}"))))
            wait_until(
                lambda: _running_runs() == 1, 60, "a conversion running", explain=fleet.tails
            )
            redis.kill()
            time.sleep(1)
            redis.start_server()
            assert worker.proc.poll() is None, fleet.tails()
            wait_until(
                lambda: _running_runs() == 0, 120, "the conversion ended", explain=fleet.tails
            )
        logs = _wait_all(jobs, timeout=120)
    log_text = worker.log.read_text(errors="replace")
    assert worker.proc.poll() is None and "Unrecoverable error" not in log_text, fleet.tails()
    assert [log.state for log in logs] == ["Done"] * len(jobs)
    assert duplicated_successes() == 0
