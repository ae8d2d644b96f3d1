"""The submission benchmarks and the worker's runner against a PostgreSQL store across a slow
link: a delay each way.

    .venv/bin/python bench/netem.py [--delays 0,0.5,2] [--bulk-n 3000] [--submit-n 300]
                                    [--runner-n 200] [--rounds 3] [--only bulk|submit|runner]

Starts a PostgreSQL cluster of its own (``initdb`` and ``postgres`` from
/usr/lib/postgresql/*/bin, in a temporary directory, on a free loopback port; as root it runs
as the ``postgres`` user, which PostgreSQL requires) and, for each delay, a proxy in front of it
that holds every byte ``delay`` milliseconds each way (one-way delay: a round trip takes twice
it). Then, for each delay in turn, runs ``bench/bulk.py --paths both`` (submit_many() x100 and
x1000 by both record paths beside bare ``apply_async``), ``bench/submit.py`` and
``bench/runner_profile.py`` (one-asset runs one after the other, as a worker child runs them:
its wall time a job is the store's round trips times the link's latency, plus the work) with
``BENCH_DATABASE_URL`` on a fresh database reached through that delay's proxy. Redis stays on
loopback (the benchmarks' embedded one): only the store is across the link.

Why a proxy and not ``tc qdisc ... netem`` in a network namespace: this machine's kernel has
no netem (nor fq, tbf...; ``tc qdisc add ... netem`` answers "Specified qdisc kind is
unknown"), and the proxy needs no root. It delays at the byte stream, not per packet, and
costs a little CPU of its own (a process, one ``select`` loop: about 20-40 us a round trip on
this machine); the delay 0 runs go through it too, so that only the delay differs.

Everything it starts is stopped by its PID (the proxies, the postmaster with a fast shutdown)
and its directory removed, also on Ctrl-C or SIGTERM. Prints each benchmark's output as it
comes, then a table of the medians per delay.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pwd
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 65536


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the proxy: one process, one select() loop (microsecond timeouts: epoll's are milliseconds)


class _Pipe:
    """One direction of one proxied connection: bytes read, each with when it may go on."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.pending = b""  # due, partly written (the destination's buffer full)
        self.eof_at: float | None = None


class _Proxy:
    """127.0.0.1:listen_port forwarded to 127.0.0.1:target_port, each byte ``delay`` seconds
    late in each direction."""

    def __init__(self, listen_port: int, target_port: int, delay: float) -> None:
        self.target, self.delay = target_port, delay
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", listen_port))
        self.listener.listen(64)
        self.pipes: list[_Pipe] = []

    def serve(self) -> None:
        """Until killed."""
        while True:
            readable, writable, _ = select.select(
                [self.listener] + [p.src for p in self.pipes if p.eof_at is None],
                [p.dst for p in self.pipes if p.pending],
                [],
                self._timeout(),
            )
            now = time.monotonic()
            for sock in readable:
                if sock is self.listener:
                    self._accept()
                else:
                    self._read(sock, now)
            for pipe in self.pipes:
                if not pipe.pending or pipe.dst in writable:
                    self._write(pipe, now)
            self._end(now)

    def _timeout(self) -> float | None:
        """Until the next bytes (or end of stream) are due."""
        due = [p.queue[0][0] for p in self.pipes if p.queue and not p.pending]
        due += [p.eof_at for p in self.pipes if p.eof_at is not None and not p.queue]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target))
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
        self.pipes += [_Pipe(client, server), _Pipe(server, client)]

    def _read(self, sock: socket.socket, now: float) -> None:
        pipe = next(p for p in self.pipes if p.src is sock and p.eof_at is None)
        try:
            data = sock.recv(CHUNK)
        except OSError:
            data = b""
        if data:
            pipe.queue.append((now + self.delay, data))
        else:
            pipe.eof_at = now + self.delay

    @staticmethod
    def _write(pipe: _Pipe, now: float) -> None:
        """What is due, as far as the destination takes it now."""
        while pipe.pending or (pipe.queue and pipe.queue[0][0] <= now):
            if not pipe.pending:
                pipe.pending = pipe.queue.popleft()[1]
            try:
                sent = pipe.dst.send(pipe.pending)
            except BlockingIOError:
                return
            except OSError:  # the other side went away: so does this direction
                pipe.pending, pipe.eof_at = b"", now
                pipe.queue.clear()
                return
            pipe.pending = pipe.pending[sent:]

    def _end(self, now: float) -> None:
        """Pass on each end of stream that is due."""
        ended = [p for p in self.pipes if p.eof_at is not None and p.eof_at <= now
                 and not p.queue and not p.pending]  # fmt: skip
        for pipe in ended:
            with contextlib.suppress(OSError):
                pipe.dst.shutdown(socket.SHUT_WR)
        self.pipes = [p for p in self.pipes if p not in ended]


# -- the cluster and the processes, each stopped by its PID


class Started(contextlib.ExitStack):
    """What this run started, undone in reverse order on the way out (also on Ctrl-C)."""

    def process(self, argv: list[str], log: Path, stop: int = signal.SIGTERM
                ) -> subprocess.Popen[bytes]:  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        self.callback(_stop, proc, stop)
        return proc


def _stop(proc: subprocess.Popen[Any], sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: p.parts[-3])
    if not found:
        raise SystemExit("skipped: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    return found[-1].parent


def start_cluster(started: Started) -> int:
    """A cluster of this run's own on a free loopback port (its port)."""
    bindir = _pg_bin()
    home = Path(tempfile.mkdtemp(prefix="jobengine-netem-"))
    started.callback(shutil.rmtree, home, True)
    home.chmod(0o755)
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        owner = pwd.getpwnam("postgres")
        os.chown(home, owner.pw_uid, owner.pw_gid)
        as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    data, port = home / "data", free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
    # setpriv execs: the PID is the postmaster's; SIGINT is its fast shutdown
    proc = started.process(
        [*as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-k", str(home)],
        home / "postgres.log", signal.SIGINT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not _accepts(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("postgres did not start: " + (home / "postgres.log").read_text())
        time.sleep(0.1)
    return port


def _accepts(port: int) -> bool:
    import psycopg

    try:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres").close()
    except psycopg.OperationalError:
        return False
    return True


def start_proxy(started: Started, target: int, delay_ms: float, home: Path) -> int:
    port = free_port()
    started.process(
        [sys.executable, __file__, "--proxy", str(port), str(target), str(delay_ms)],
        home / f"proxy-{delay_ms}.log",
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return port
        if time.monotonic() > deadline:
            raise SystemExit(f"the proxy for {delay_ms} ms did not start")
        time.sleep(0.05)


def _round_trip_ms(port: int, count: int = 200) -> float:
    """The median of ``count`` ``SELECT 1`` through the proxy: what a round trip costs."""
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                         autocommit=True) as conn:  # fmt: skip
        took = []
        for _ in range(count):
            t0 = time.perf_counter()
            conn.execute("SELECT 1").fetchall()
            took.append(time.perf_counter() - t0)
    return statistics.median(took) * 1000


def _fresh_database(port: int, name: str) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                         autocommit=True) as conn:  # fmt: skip
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


_SCRIPTS = {"runner": "runner_profile.py"}  # the benchmarks not named for their side


def _bench(script: str, args: list[str], url: str) -> str:
    """Run a benchmark to its end; interrupted, it is interrupted too (SIGINT, by its PID) and
    waited for, so that it stops what it started (its embedded Redis) before this run goes on
    to stop the rest."""
    env = {**os.environ, "BENCH_DATABASE_URL": url}
    env.pop("DATABASE_URL", None)
    env["JOBENGINE_DB_UPGRADE"] = "auto"  # a fresh database, migrated by the benchmark
    env.pop("REDIS_URL", None)
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / script), *args], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)  # fmt: skip
        try:
            out, _ = proc.communicate()
        except BaseException:
            _stop(proc, signal.SIGINT)
            raise
        err.seek(0)
        print(out, end="", flush=True)
        if proc.returncode != 0:
            raise SystemExit(f"{script} failed:\n{err.read()[-3000:]}")
    return out


def _medians(output: str) -> dict[str, str]:
    """The benchmark's median lines, by side (``runner_profile``'s: its rate and its wall time
    and CPU time a job)."""
    found: dict[str, str] = {}
    per_job = re.search(r"CPU a job ([\d.]+) ms, wall a job ([\d.]+) ms", output)
    rate = re.search(r"runs, ([\d.]+) jobs/s", output)
    if per_job and rate:
        found["one-asset runs"] = (
            f"{rate.group(1)} jobs/s, wall a job {per_job.group(2)} ms, "
            f"CPU a job {per_job.group(1)} ms"
        )
        return found
    tail = output.split("median of", 1)[-1]
    for line in tail.splitlines()[1:]:
        match = re.match(r"\s+(\S.*?)\s{2,}(\S.*)$", line)
        if match and not line.strip().startswith("("):
            found[match.group(1)] = match.group(2)
    return found


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP as Ctrl-C: the clean-up runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--proxy":
        _Proxy(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000).serve()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--delays", default="0,0.5,2", help="one-way delays, ms")
    parser.add_argument("--bulk-n", type=int, default=3000)
    parser.add_argument("--submit-n", type=int, default=300)
    parser.add_argument("--runner-n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["bulk", "submit", "runner"])
    args = parser.parse_args()
    delays = [float(d) for d in args.delays.split(",")]
    summary: dict[float, dict[str, str]] = {}
    with _signals_raise(), Started() as started:
        pg_port = start_cluster(started)
        home = Path(tempfile.mkdtemp(prefix="jobengine-netem-proxy-"))
        started.callback(shutil.rmtree, home, True)
        for delay in delays:
            port = start_proxy(started, pg_port, delay, home)
            summary[delay] = {"SELECT 1 round trip, median": f"{_round_trip_ms(port):.2f} ms"}
            tag = str(delay).replace(".", "_")
            runs = {
                "bulk": ["--n", str(args.bulk_n), "--rounds", str(args.rounds), "--paths", "both"],
                "submit": ["--n", str(args.submit_n), "--rounds", str(args.rounds)],
                "runner": ["--n", str(args.runner_n)],
            }
            for bench, bench_args in runs.items():
                if args.only not in (None, bench):
                    continue
                database = f"{bench}_{tag}"
                _fresh_database(pg_port, database)
                print(f"\n== bench/{bench}.py, one-way delay {delay} ms", flush=True)
                url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
                out = _bench(_SCRIPTS.get(bench, f"{bench}.py"), bench_args, url)
                summary[delay].update((f"{bench}: {k}", v) for k, v in _medians(out).items())
    print("\nmedians per one-way delay")
    for delay, sides in summary.items():
        print(f"  {delay} ms")
        for side, figures in sides.items():
            print(f"    {side:<36} {figures}")


if __name__ == "__main__":
    main()
