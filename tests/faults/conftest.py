"""The fault suite's fixtures. Its real parts (``tests/support/fleet.py``): a Redis server, a
PostgreSQL cluster, workers and beats of each scenario's own, started through the project's CLI
and stopped (or killed) by PID.

Every scenario gets its own ``redis-server`` (so it can kill or restart it), its own storage
and store (a SQLite file, or a PostgreSQL cluster made with Debian's ``initdb``/``pg_ctl`` where
it stops the database), and its own workers and beat, started as ``jobengine worker`` and
``jobengine beat`` would be in production, each in a process group of its own so that a
SIGKILL takes a whole worker (main process and pool children) and nothing else. This process
submits and watches through the same settings (:func:`scenario`), and gives the session's own
back afterwards.

Each scenario records its figures (:class:`Figures`); they are printed at the end of the run
and, when ``JOBENGINE_FAULT_FIGURES`` names a file, written there as JSON (RELIABILITY.md
quotes them).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    write = terminalreporter.write_line
    write("")
    write("fault scenarios: accepted / done / failed / lost / duplicated / recovery s / notes")
    for row in FIGURES:
        recovery = row["recovery_seconds"]
        write(
            f"  {row['scenario']}: {row['accepted']} / {row['done']} / {row['failed']} / "
            f"{row['lost']} / {row['duplicated']} / "
            f"{'-' if recovery is None else f'{recovery:.1f}'} / {json.dumps(row['notes'])}"
        )
    target = os.environ.get("JOBENGINE_FAULT_FIGURES")
    if target:
        Path(target).write_text(json.dumps(FIGURES, indent=2))


@pytest.fixture
def fault_home() -> Iterator[Path]:
    """A home of the scenario's own under /tmp (kept, for its logs, when
    ``JOBENGINE_KEEP_FAULT_HOMES`` is set)."""
    home = Path(tempfile.mkdtemp(prefix="jobengine-fault-"))
    yield home
    if not os.environ.get("JOBENGINE_KEEP_FAULT_HOMES"):
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def fleet_parts(fault_home: Path) -> Iterator[list[Any]]:
    """What a scenario starts (servers, clusters, fleets), stopped at its end in reverse."""
    parts: list[Any] = []
    yield parts
    for part in reversed(parts):
        stop: Callable[[], None] = getattr(part, "destroy", None) or part.stop
        try:
            stop()
        except Exception as exc:  # one failed stop must not keep the others running
            print(f"could not stop {part!r}: {exc}")
