"""What the wheel installs: everything under the ``jobengine`` name, nothing else.

``tasks/`` and ``config/`` stay at the top of the repository but install as ``jobengine.tasks`` and
``jobengine.config`` (pyproject.toml maps them): a user's site-packages must not get generic
top-level ``tasks`` or ``config`` packages.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> set[str]:
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(setup["packages"])


def _in_tree() -> set[str]:
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "jobengine").rglob("__init__.py")
    }
    return found | {"jobengine.tasks", "jobengine.config"}


def test_every_package_of_the_tree_is_declared() -> None:
    assert _declared() == _in_tree()


def test_the_wheel_holds_only_jobengine(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("jobengine-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    } == {"jobengine"}
    assert "jobengine/tasks/export.py" in names
    assert "jobengine/config/policy.xml" in names
    assert "jobengine/config/locale/de/LC_MESSAGES/jobengine.mo" in names
    assert "jobengine/store/migrations/script.py.mako" in names
