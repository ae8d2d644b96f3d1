"""A real compose (the ``docker compose`` plugin or ``docker-compose``): which one answers."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass


def probe(argv: list[str]) -> tuple[bool, str]:
    """Whether ``<argv> version`` exits 0; the version it prints, or the first line of why not."""
    try:
        done = subprocess.run(
            [*argv, "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    out = done.stdout.strip() or done.stderr.strip()
    version = re.search(r"\bv?(\d+\.\d+\.\d+)", out)
    if done.returncode == 0 and version is not None:
        return True, version.group(1)
    return False, " ".join(out.splitlines()[:1])[:200]


@dataclass(frozen=True)
class Compose:
    """A compose that answers: the plugin (``docker compose``) or ``docker-compose``."""

    argv: tuple[str, ...]
    version: str

    @property
    def v1(self) -> bool:
        """Compose 1.x (Debian bookworm's ``docker-compose`` 1.29): no top-level ``name``."""
        return self.version.startswith("1.")
