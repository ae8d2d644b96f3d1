"""Stand-in conversion engines for the pool tests (loaded by the worker by name).

``engine`` picks a behaviour from the base name: ``abort`` (SIGABRT, as ImageMagick's failed
assertions do), ``exit`` (exit status 1, as its time limit does), ``memory`` (allocate past
RLIMIT_AS), ``hang`` (write one page and a partial file, then hang), ``report`` (write what the
worker's process looks like).
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def engine(
    src: Path,
    dst_dir: Path,
    req: Any,
    base_name: str,
    limits: Any,
    *,
    token: str = "",
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    if base_name == "abort":
        os.abort()
    if base_name == "exit":
        os._exit(1)
    if base_name == "memory":
        hog = bytearray(limits.memory_bytes)
        return [Path(str(len(hog)))]
    if base_name == "hang":
        page = dst_dir / "hang-1.png"
        page.write_bytes(b"page one")
        assert progress is not None
        progress(page)
        (dst_dir / f".jobengine-{token}-1.part").write_bytes(b"half")
        time.sleep(60)
    report = dst_dir / f"report-{os.getpid()}-{time.monotonic_ns()}.json"
    report.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "env": dict(os.environ),
                "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0],
                "rlimit_core": resource.getrlimit(resource.RLIMIT_CORE)[0],
                "cwd": os.getcwd(),
            }
        )
    )
    return [report]
