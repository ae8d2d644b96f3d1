"""Two beats on every-second schedules for a minute, the leader SIGKILLed half way: every fire
time fires, once. The beat that takes over fires the times the dead leader left (they are late
by less than the misfire threshold), and a healthy leader misses none however its ticks drift.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from jobengine import submit
from jobengine.runtime import get_runtime
from jobengine.store.schema import Job, Run
from tests.support.fleet import Figures, Fleet, RedisServer, fleet_env, scenario, wait_until
from tests.support.helpers import export_request, make_company

pytestmark = pytest.mark.slow

SCHEDULES = 2
FIRST_HALF, SECOND_HALF = 30.0, 30.0


def _fires() -> dict[str, list[tuple[datetime, datetime]]]:
    """Per schedule: (fire time, when its run was made), in fire order."""
    out: dict[str, list[tuple[datetime, datetime]]] = {}
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(Job.name, Run.fire_key, Run.created_at)
            .join(Job, Job.id == Run.job_id)
            .where(Run.state != "Staged")  # written ahead of a fire time the beats did not reach
            .order_by(Run.fire_key)
        ).all()
    for name, key, created in rows:
        fired = datetime.fromisoformat(str(key).split(":", 1)[1])
        made = created.replace(tzinfo=UTC) if created.tzinfo is None else created
        out.setdefault(str(name), []).append((fired, made))
    return out


def test_two_beats_fire_every_time_once_through_a_leader_kill(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    redis = RedisServer(fault_home)
    fleet_parts.append(redis)
    env = fleet_env(fault_home, redis, f"sqlite:///{fault_home / 'store.db'}")
    fleet = Fleet(env, fault_home)
    fleet_parts.append(fleet)
    with scenario(env):
        company, [asset] = make_company(1)
        for n in range(SCHEDULES):  # no worker: the runs only need to be made, once each
            every_second = export_request(
                company, [asset], f"Every Second {n}", execSchedule="* * * * * ?"
            )
            submit(every_second)
        leader = fleet.beat()
        wait_until(lambda: bool(_fires()), 30, "the first fire")
        fleet.beat()
        time.sleep(FIRST_HALF)
        leader.kill()
        killed = datetime.now(UTC)
        time.sleep(SECOND_HALF)
        fleet.stop()
        stopped = datetime.now(UTC)
        fires = _fires()

    figures = Figures("two beats, 1 s schedules, 60 s, leader SIGKILLed")
    missed = doubled = 0
    late_after_kill: list[float] = []
    late_healthy: list[float] = []
    for name in (f"Every Second {n}" for n in range(SCHEDULES)):
        times = [fired for fired, _ in fires[name]]
        doubled += len(times) - len(set(times))
        expected = int((times[-1] - times[0]).total_seconds()) + 1
        missed += expected - len(set(times))
        settled = times[0] + timedelta(seconds=5)  # the fires a starting beat caught up
        for fired, made in fires[name]:
            late = (made - fired).total_seconds()
            if killed <= fired <= killed + timedelta(seconds=10):
                late_after_kill.append(late)
            elif settled < fired < killed - timedelta(seconds=1):
                late_healthy.append(late)
        assert times[-1] >= stopped - timedelta(seconds=3)  # fired to the end
    late_healthy.sort()
    figures.accepted = sum(len(v) for v in fires.values())
    figures.done = figures.accepted
    figures.lost, figures.duplicated = missed, doubled
    figures.recovery_seconds = max(late_after_kill, default=0.0)
    figures.notes = {
        "fires": figures.accepted,
        "healthy_p99_late_s": round(late_healthy[int(len(late_healthy) * 0.99) - 1], 3),
        "takeover_s": round(figures.recovery_seconds, 2),
    }
    figures.record()
    assert missed == 0 and doubled == 0
    assert figures.recovery_seconds < 10  # the leader lock lapses in 5 s
