"""``jobengine dev``: the embedded stack (Redis, a worker, beat) and the demo, in one command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobengine.embedded import start_redis, stop_redis
from jobengine.operations import JobLog, get_job_log_details
from jobengine.settings import Settings, get_settings
from jobengine.store.states import FINAL_RUNS

__all__ = ["DevStack", "wait_for_runs"]


def celery_command(*args: str) -> list[str]:
    """argv for the celery CLI of this interpreter, on our app."""
    return [sys.executable, "-m", "celery", "-A", "jobengine.celery_app", *args]


def worker_command(
    concurrency: int = 2,
    loglevel: str = "info",
    queues: Sequence[str] | None = None,
    name: str | None = None,
    prefetch: int = 1,
) -> list[str]:
    """The worker's command line; ``queues`` by default: every queue (see worker_queues);
    ``name`` its node name (Celery's ``-n``, e.g. ``w1@%h``); ``prefetch`` messages reserved
    per pool process (Celery's prefetch multiplier; 1 unless given)."""
    from jobengine.engine.celery_config import worker_queues

    extra = ["-n", name if "@" in name else f"{name}@%h"] if name else []
    if prefetch != 1:
        extra += ["--prefetch-multiplier", str(prefetch)]
    return celery_command(
        "worker",
        "-E",
        "-Q",
        ",".join(queues or worker_queues(get_settings())),
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--without-mingle",
        "--without-gossip",
        *extra,
    )


def beat_command(settings: Settings, loglevel: str = "info") -> list[str]:
    return celery_command(
        "beat", "-S", "jobengine.engine.scheduling:StoreScheduler", "--loglevel", loglevel
    )


@dataclass
class DevStack:
    """Processes this command started, and only those, stopped again by PID."""

    settings: Settings
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_redis: bool = False

    def start(self, *, worker: bool = True, beat: bool = True) -> None:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        if not self.settings.redis_url and not self.settings.broker_url:
            self.started_redis = start_redis(self.settings)
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if worker:
            self._spawn(worker_command(), logs / "worker.log")
        if beat:
            self._spawn(beat_command(self.settings), logs / "beat.log")

    def _spawn(self, argv: list[str], log: Path) -> None:
        with log.open("ab") as out:
            self.procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))  # noqa: S603

    def stop(self, timeout: float = 20.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.started_redis:
            stop_redis(self.settings)
            self.started_redis = False

    def wait_forever(self) -> None:
        """Block until Ctrl-C or until a child dies."""
        while all(p.poll() is None for p in self.procs):
            time.sleep(0.5)


def wait_for_runs(
    company: str,
    handles: list[str],
    timeout: float = 120.0,
    on_poll: Callable[[list[JobLog]], None] | None = None,
) -> list[JobLog]:
    """Poll until every job has a finished run; returns their logs with details."""
    deadline = time.monotonic() + timeout
    while True:
        logs = [log for h in handles for log in get_job_log_details(company, job_handle=h)]
        if on_poll is not None:
            on_poll(logs)
        finished = {log.original_job_name for log in logs if log.state in FINAL_RUNS}
        if len(logs) >= len(handles) and all(log.state in FINAL_RUNS for log in logs):
            return logs
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs not finished after {timeout:.0f}s: {sorted(finished)}")
        time.sleep(0.3)
