"""A real S3 endpoint for the tests: moto's server (``moto[server]``) as a subprocess.

It listens on 127.0.0.1 on a free port and is stopped by its PID. Every client reaches it through
fsspec storage options (``endpoint_url``, ``key``, ``secret``), the same way a deployment reaches
its S3-compatible store through ``JOBENGINE_STORAGE_OPTIONS``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoS3:
    """``python -m moto.server`` on 127.0.0.1, with one bucket made for the tests."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = f"jobengine-{uuid.uuid4().hex[:10]}"
        self.log = log_dir / f"moto-{self.port}.log"
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
            self.fs().mkdir(self.bucket)
        except BaseException:
            self.stop()
            raise

    @property
    def options(self) -> dict[str, Any]:
        """fsspec storage options for this server (moto accepts any credentials)."""
        return {"endpoint_url": self.endpoint, "key": "testing", "secret": "testing"}

    def fs(self, **extra: Any) -> Any:
        """A fresh s3fs client of this server (not shared with the code under test)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options, **extra)

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"moto server not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
