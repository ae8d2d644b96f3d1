"""The command line and ``jobengine dev`` (what ``make run`` runs), as real processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import JOBENGINE, run_cli


def test_cron_preview_prints_quartz_fire_times(tmp_path: Path) -> None:
    env = {"JOBENGINE_HOME": str(tmp_path), "JOBENGINE_TIMEZONE": "UTC"}
    out = run_cli(["cron", "preview", "0 15 10 ? * 6L", "--count", "3"], env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert len(lines) == 3 and all(line.endswith("10:15:00+00:00") for line in lines)
    bad = run_cli(["cron", "preview", "0 0 12 * * *"], env)
    assert bad.returncode == 2 and "day-of-week" in bad.stdout.lower()


@pytest.mark.slow
def test_dev_runs_the_seed_example_end_to_end(tmp_path: Path) -> None:
    """What `make run` does: embedded Redis, worker, beat, the demo jobs, their logs, clean stop."""
    env = {"JOBENGINE_HOME": str(tmp_path / "var"), "JOBENGINE_DEMO_USER": "ops@example.com"}
    env.pop("REDIS_URL", None)
    keep = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    full_env = {k: v for k, v in keep.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    full_env.update(env)
    proc = subprocess.run(
        [*JOBENGINE, "dev", "--exit-after-demo"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "jobHandle 47|My Test Job|" in out
    assert "ops@example.com" in out
    assert "My Test Job_" in out and "Done" in out
    assert "EndImageServingPublish" in out and "ReturnSuccess" in out
    assert "converted samples/ocean.tif" in out  # the macro's format wins over is_modifier's
    assert not (tmp_path / "var" / "redis" / "redis.sock").exists() or not _alive(tmp_path)


def _alive(tmp_path: Path) -> bool:
    pidfile = tmp_path / "var" / "redis" / "redis.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def test_assets_import_adds_files_as_assets(tmp_path: Path) -> None:
    from PIL import Image

    from jobengine.catalog import create_company
    from jobengine.store.db import Store

    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(db)
    store.prepare_schema()
    with store.write() as session:
        create_company(session, "c9", "Nine")
    store.dispose()
    photos = tmp_path / "photos" / "summer"
    photos.mkdir(parents=True)
    Image.new("RGB", (8, 8), "blue").save(photos / "a.jpg")
    (tmp_path / "photos" / "notes.txt").write_text("hello")
    storage = tmp_path / "var" / "storage"
    env = {
        "JOBENGINE_HOME": str(tmp_path / "var"),
        "DATABASE_URL": db,
        "JOBENGINE_STORAGE": str(storage),
    }
    out = run_cli(
        ["assets", "import", "-c", "c9", str(tmp_path / "photos"), "--ready-for-publish"], env
    )
    assert out.returncode == 0, out.stderr
    assert "a.jpg" in out.stdout and "Image" in out.stdout and "notes.txt" in out.stdout
    assert (storage / "c9" / "assets" / "summer" / "a.jpg").is_file()
    missing = run_cli(["assets", "import", "-c", "nope", str(photos)], env)
    assert missing.returncode == 2 and "20000" in missing.stdout
