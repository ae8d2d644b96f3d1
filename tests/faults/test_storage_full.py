"""A full storage: files that cannot be written fail as failed writes, with the asset's name,
the run ends (no job waits forever or is lost), no partial file stays, the worker lives on,
and once there is room again the same export succeeds.

The storage is a small tmpfs of the test's own (``mount`` needs root; elsewhere the test says
why it cannot run), the store is a SQLite file on the ordinary disk.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobengine import submit
from jobengine.cli.devstack import wait_for_runs
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from tests.support.fleet import Figures, Fleet, RedisServer, fleet_env, scenario
from tests.support.helpers import export_request, make_company
from tests.support.stack import unavailable

pytestmark = pytest.mark.slow

MOUNT_MB = 40
ASSETS, ASSET_BYTES = 6, 1_500_000


@pytest.fixture
def small_disk(fault_home: Path) -> Iterator[Path]:
    """A tmpfs of MOUNT_MB MiB mounted for this test only."""
    target = fault_home / "storage"
    target.mkdir()
    if os.geteuid() != 0:
        unavailable("a tmpfs for the storage", "mounting one needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={MOUNT_MB}m", "tmpfs", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        unavailable("a tmpfs for the storage", done.stderr.strip())
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the disk but for ``leave`` bytes (roughly: a filler file)."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler = disk / "filler.bin"
    with filler.open("wb") as out:
        out.truncate(0)
        remaining = max(0, free - leave)
        block = b"\0" * (1 << 20)
        while remaining > 0:
            out.write(block[: min(len(block), remaining)])
            remaining -= min(len(block), remaining)
    return filler


def _temporaries(disk: Path) -> list[Path]:
    return [p for p in disk.rglob("*") if p.name.startswith(".tmp-")]


def test_a_full_storage_fails_writes_clearly_and_leaves_nothing_half_written(
    fault_home: Path, fleet_parts: list[object], small_disk: Path
) -> None:
    redis = RedisServer(fault_home)
    fleet_parts.append(redis)
    env = fleet_env(fault_home, redis, f"sqlite:///{fault_home / 'store.db'}")
    fleet = Fleet(env, fault_home)
    fleet_parts.append(fleet)
    with scenario(env):
        storage = get_runtime().storage
        assert isinstance(storage, LocalStorage) and storage.root == small_disk
        company, assets = make_company(ASSETS, pad=ASSET_BYTES)
        fleet.worker()

        # no room for the staged copies: every item fails as a write, the run ends
        filler = _fill(small_disk, leave=200_000)
        [items_failed] = wait_for_runs(
            company, [submit(export_request(company, assets, "No Room"))], timeout=120
        )
        messages = {d.log_message for d in items_failed.details if d.log_type == "GetFailure"}
        left_after_items = _temporaries(small_disk)

        # room for the copies, not for the ZIP: the finish fails as a write, named
        filler.unlink()
        filler = _fill(small_disk, leave=ASSETS * ASSET_BYTES + 3_000_000)
        [zip_failed] = wait_for_runs(
            company, [submit(export_request(company, assets, "No Room For The Zip"))], timeout=120
        )
        fatal = [d.log_message for d in zip_failed.details if d.log_type == "FatalError"]
        left_after_zip = _temporaries(small_disk)
        staged = list((small_disk / "_staging").glob("*"))

        # room again: the same export goes through on the same worker
        filler.unlink()
        [works] = wait_for_runs(
            company, [submit(export_request(company, assets, "Room Again"))], timeout=120
        )
    figures = Figures("storage full (tmpfs) under exports", accepted=3)
    figures.done = int(works.state == "Done")
    figures.failed = int(zip_failed.state == "Failed") + int(items_failed.file_error_count > 0)
    figures.notes = {"item_error": sorted(messages)[0] if messages else None, "finish": fatal}
    figures.record()
    assert items_failed.state == "Done" and items_failed.file_error_count == ASSETS
    assert all(m.startswith("no space left on device writing img") for m in messages), messages
    assert zip_failed.state == "Failed" and zip_failed.file_success_count == ASSETS
    assert fatal and "no space left on device writing" in fatal[0] and ".zip" in fatal[0]
    assert left_after_items == [] and left_after_zip == [] and staged == []
    assert works.state == "Done" and works.file_success_count == ASSETS
