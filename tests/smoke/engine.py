"""Whether the container tests can run here: a Docker engine that answers and pytest-celery
(``tests/smoke/conftest.py`` loads its fixtures only then)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.support.stack import IN_CI

ROOT = Path(__file__).resolve().parents[2]
MACHINE_SAID = ROOT / "var" / "docker" / "unavailable"  # written by docker/local/engine.sh


def _skip_reason() -> str | None:
    """Why the container tests cannot run here, or None."""
    if find_spec("pytest_celery") is None:
        return "pytest-celery is not installed (pip install 'pytest-celery[redis]')"
    import docker

    try:
        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        why = f"no Docker engine answers: {type(exc).__name__}: {exc}"
        if MACHINE_SAID.is_file():
            why += f" (make docker-engine: {MACHINE_SAID.read_text().strip()})"
        else:
            why += " (run `make docker-engine`)"
        return why
    return None


SKIP_REASON = _skip_reason()
# Under CI the tests run unless this machine cannot have Docker (engine.sh said why).
MUST_RUN = IN_CI and not MACHINE_SAID.is_file()


def skip_or_fail_module() -> None:
    """At the top of each container test module: skip it with the reason, or fail under CI."""
    if SKIP_REASON is None:
        return
    if MUST_RUN:
        pytest.fail(f"the container tests must run under CI: {SKIP_REASON}", pytrace=False)
    pytest.skip(SKIP_REASON, allow_module_level=True)
