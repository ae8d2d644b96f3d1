"""``python -m jobengine.cli`` as a real process, the way an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys

JOBENGINE = [sys.executable, "-m", "jobengine.cli"]


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        JOBENGINE + args,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
