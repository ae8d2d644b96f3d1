"""The fault suite's fleet: a Redis server and a PostgreSQL cluster of a scenario's own, its
workers and beats started through the project's CLI (each in a process group of its own) and
stopped or killed by PID, and the figures each scenario records (``tests/faults/conftest.py``
prints them)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.procs import Service, free_port
from tests.support.stack import unavailable

FIGURES: list[dict[str, Any]] = []


JOBENGINE = str(Path(sys.executable).parent / "jobengine")


@dataclass
class Figures:
    """What one scenario measured (a row of RELIABILITY.md's table)."""

    scenario: str
    accepted: int = 0
    done: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_seconds: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def count(self, accepted: int, logs: Sequence[Any]) -> None:
        """The accepted jobs' ends from their logs (``wait_for_runs``): done (without a failed
        file), failed (or with failed files), lost (no finished run)."""
        self.accepted = accepted
        self.done = sum(log.state == "Done" and log.file_error_count == 0 for log in logs)
        self.failed = sum(log.state == "Failed" or log.file_error_count > 0 for log in logs)
        self.lost = accepted - len(logs)

    def record(self) -> None:
        FIGURES.append(asdict(self))


class RedisServer(Service):
    """A ``redis-server`` of the scenario's own on a free loopback port; ``persistent`` keeps
    an append-only file written on every command (so a kill loses nothing)."""

    what = "redis-server"

    def __init__(self, home: Path, *, persistent: bool = False) -> None:
        if shutil.which("redis-server") is None:
            unavailable("redis-server", "not installed (make setup installs Debian's package)")
        self.port, self.persistent = free_port(), persistent
        self.dir = home / f"redis-{self.port}"
        self.dir.mkdir(parents=True)
        self.start_server()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start_server(self) -> None:
        keep = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else []
        argv = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", *keep, "--dir", str(self.dir), "--daemonize", "no",
        ]  # fmt: skip
        self.start(argv, self.dir / "redis.log")
        self.wait_ready()

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies with what it holds in memory."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PostgresCluster:
    """A PostgreSQL cluster of the scenario's own (``initdb``), started and stopped with
    ``pg_ctl`` on a free loopback port. PostgreSQL refuses to run as root: as root the cluster
    belongs to, and runs as, the ``postgres`` user (``runuser``)."""

    def __init__(self) -> None:
        bindir = _pg_bin()
        if bindir is None:
            unavailable("PostgreSQL server binaries", "initdb/pg_ctl not found")
        assert bindir is not None
        self.bin = bindir
        self.as_user: list[str] = []
        self.home = Path(tempfile.mkdtemp(prefix="jobengine-pg-"))
        self.home.chmod(0o755)
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("PostgreSQL", "running as root and there is no postgres user")
            os.chown(self.home, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data, self.port = self.home / "data", free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.running = False
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        out = subprocess.run(
            [*self.as_user, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{tool} failed: {out.stdout}{out.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.home}"
        log = str(self.home / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self.running = True

    def stop(self) -> None:
        """A fast shutdown: connections are cut, the server is gone until :meth:`start`."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def crash(self) -> None:
        """An immediate shutdown, as a crash: the server processes quit at once, without
        writing out what they hold (commits not yet flushed are lost), and the next
        :meth:`start` recovers from the log."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.running = False

    def destroy(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False
        shutil.rmtree(self.home, ignore_errors=True)


class Proc(Service):
    """``jobengine worker`` or ``jobengine beat`` in a process group of its own."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str], ready: bytes) -> None:
        self.what, self._ready = argv[1], ready
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a kill takes the pool children too
            )
        self.wait_ready(timeout=60)

    def ready(self) -> bool:
        return self._ready in self.log.read_bytes()

    def kill(self) -> None:
        """SIGKILL the whole process (main and children), as a machine losing it would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Fleet:
    """One scenario's environment and the processes it started."""

    env: dict[str, str]
    home: Path
    procs: list[Proc] = field(default_factory=list)

    def worker(self, concurrency: int = 2) -> Proc:
        name = f"w{uuid.uuid4().hex[:6]}"
        argv = [JOBENGINE, "worker", "--concurrency", str(concurrency), "--name", name]
        proc = Proc(argv, self.home / f"{name}.log", self.env, b" ready.")
        self.procs.append(proc)
        return proc

    def beat(self) -> Proc:
        name = f"beat-{uuid.uuid4().hex[:6]}"
        proc = Proc([JOBENGINE, "beat"], self.home / f"{name}.log", self.env, b"beat: Starting")
        self.procs.append(proc)
        return proc

    def replace(self, victim: Proc) -> Proc:
        """SIGKILL the worker ``victim`` (main process and children) and start another."""
        victim.kill()
        return self.worker()

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def tails(self, lines: int = 30) -> str:
        """The last lines of each process's log: what a failed wait shows of the fleet."""
        parts = []
        for proc in self.procs:
            text = proc.log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {proc.log.name} ({proc.what}) ---\n" + "\n".join(text))
        return "\n".join(parts)


@contextmanager
def scenario(env: dict[str, str]) -> Iterator[None]:
    """This process submits and reads through ``env``; the session's settings come back after."""
    from jobengine.engine.app import configure
    from jobengine.runtime import reset_runtime

    saved = dict(os.environ)
    for name in ("REDIS_URL", "DATABASE_URL", "JOBENGINE_BROKER_URL", "JOBENGINE_QUEUES"):
        os.environ.pop(name, None)
    os.environ.update(env)
    reset_runtime()
    configure()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_runtime()
        configure()


# The timings of the worker-kill scenarios: a dead worker's claims lapse in 3 s, a run whose
# message could not be sent is relayed after 1 s, and one whose message went with the worker is
# sent again once its queues have been idle 2 s.
KILL_TIMINGS = {
    "JOBENGINE_LEASE_SECONDS": "3",
    "JOBENGINE_OUTBOX_GRACE": "1",
    "JOBENGINE_IDLE_SECONDS": "2",
}


def fleet_env(home: Path, redis: RedisServer, database_url: str, **settings: str) -> dict[str, str]:
    """A scenario's settings: shipped timings unless ``settings`` override them."""
    return {
        "JOBENGINE_HOME": str(home),
        "REDIS_URL": redis.url,
        "DATABASE_URL": database_url,
        "JOBENGINE_STORAGE": str(home / "storage"),
        "JOBENGINE_TIMEZONE": "UTC",
        **settings,
    }


def postgres_fleet(
    home: Path, parts: list[object], **settings: str
) -> tuple[PostgresCluster, Fleet]:
    """A scenario's own PostgreSQL cluster and Redis server, and a fleet on them with the kill
    timings (``settings`` added), each added to ``parts`` to be stopped at its end."""
    database = PostgresCluster()
    parts.append(database)
    redis = RedisServer(home)
    parts.append(redis)
    env = fleet_env(home, redis, database.url, JOBENGINE_DB_UPGRADE="auto", **KILL_TIMINGS,
                    **settings)  # fmt: skip
    fleet = Fleet(env, home)
    parts.append(fleet)
    return database, fleet


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    poll: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> float:
    """Seconds until ``check()`` held; AssertionError naming ``what`` after ``timeout`` (with
    ``explain()``, e.g. the fleet's log tails, so a failure in CI can be read afterwards)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"{what}: not within {timeout} s{detail}")
        time.sleep(poll)
    return time.monotonic() - start
