"""What an interrupted run of the container tests left on the engine, removed by the next run.

A test session killed halfway (a timeout, a stopped machine) cannot take its containers down;
compose's services even come back with the engine (``restart: unless-stopped``). Every container,
network and volume the tests make carries the test process's PID (a label, or the compose
project's name); those of a process that no longer runs are removed when the next session starts.
"""

from __future__ import annotations

import os
import re
from typing import Any

RUN_LABEL = "org.jobengine.test-run"  # its value: the PID of the pytest process
PROJECT_PREFIX = "jobengine-test-"  # compose projects: jobengine-test-<pid>-<hex>
_PROJECT = re.compile(rf"^{PROJECT_PREFIX}(\d+)-")


def run_labels() -> dict[str, str]:
    """The labels of whatever this test process creates."""
    return {RUN_LABEL: str(os.getpid())}


def project_name(suffix: str) -> str:
    return f"{PROJECT_PREFIX}{os.getpid()}-{suffix}"


def _dead(pid: str | None) -> bool:
    if not pid or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return not os.path.exists(f"/proc/{pid}")


def _owner(labels: dict[str, str] | None) -> str | None:
    labels = labels or {}
    if RUN_LABEL in labels:
        return labels[RUN_LABEL]
    match = _PROJECT.match(labels.get("com.docker.compose.project", ""))
    return match.group(1) if match else None


def sweep(engine: Any) -> list[str]:
    """Remove the containers, then networks and volumes, of test processes that are gone."""
    removed = []
    for container in engine.containers.list(all=True):
        if _dead(_owner(container.labels)):
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
    for kind in (engine.networks, engine.volumes):
        for item in kind.list():
            if _dead(_owner(item.attrs.get("Labels"))):
                item.remove()
                removed.append(f"{item.name}")
    return removed
