"""Processes the tests start: a free loopback port, a log file, a readiness wait, a stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """One process started by a test, its output in ``log``; subclasses say when it is ready."""

    what = "process"
    proc: subprocess.Popen[bytes]
    log: Path

    def start(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        """Start ``argv`` with ``env`` over this process's environment, output to ``log``."""
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                list(argv),
                env={**os.environ, **env} if env is not None else None,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        """Whether the process serves yet (asked until it does, or exits, or time is up)."""
        raise NotImplementedError

    def wait_ready(self, timeout: float = 30, interval: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited: {self.log.read_text()[-3000:]}")
            if self.ready():
                return
            time.sleep(interval)
        raise RuntimeError(f"{self.what} not ready: {self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Signal the process (only ours, by its PID); kill it if it outlives ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
