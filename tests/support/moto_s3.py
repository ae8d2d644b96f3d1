"""A real S3 endpoint for the tests: moto's server (``moto[server]``) as a subprocess.

It listens on 127.0.0.1 on a free port and is stopped by its PID. Every client reaches it through
fsspec storage options (``endpoint_url``, ``key``, ``secret``), the same way a deployment reaches
its S3-compatible store through ``JOBENGINE_STORAGE_OPTIONS``.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.support.procs import Service, free_port


class MotoS3(Service):
    """``python -m moto.server`` on 127.0.0.1, with one bucket made for the tests."""

    what = "moto server"

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = f"jobengine-{uuid.uuid4().hex[:10]}"
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.start(argv, log_dir / f"moto-{self.port}.log")
        try:
            self.wait_ready()
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

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False
