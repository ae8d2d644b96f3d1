"""The command line and ``jobengine dev`` (what ``make run`` runs), as real processes; presets and
``submit --wait`` on the test stack."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobengine import get_image_formats
from tests.support.cli import JOBENGINE, run_cli
from tests.support.helpers import export_request
from tests.support.stack import Stack


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

    from jobengine.assets.catalog import create_company
    from jobengine.store import migrate
    from jobengine.store.db import Store

    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(db)
    migrate.prepare(store)
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


# -- presets and submit --wait, on the test stack -----------------------------------------------


def run_wide(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(args, {**env, "COLUMNS": "200"}, timeout=90)  # rich: no wrapped table cells


def test_presets_save_list_update_delete(stack: Stack) -> None:
    company, _ = stack.company(0)
    saved = run_wide(
        ["presets", "save", "-c", company, "thumb", "wid=120&hei=90&fmt=jpeg"], stack.env
    )
    assert saved.returncode == 0, saved.stdout + saved.stderr
    handle = saved.stdout.strip()
    assert handle.endswith(f"|{handle.rsplit('|', 1)[1]}") and handle.rsplit("|", 1)[1].isdigit()

    listed = run_wide(["presets", "list", "-c", company], stack.env)
    assert listed.returncode == 0, listed.stderr
    assert handle in listed.stdout and "thumb" in listed.stdout and "wid=120" in listed.stdout

    renamed = run_wide(
        ["presets", "save", "-c", company, "small", "wid=60", "--handle", handle], stack.env
    )
    assert renamed.returncode == 0 and renamed.stdout.strip() == handle, renamed.stdout
    assert [(p.name, p.url_modifier) for p in get_image_formats(company)] == [("small", "wid=60")]

    deleted = run_wide(["presets", "delete", "-c", company, handle], stack.env)
    assert deleted.returncode == 0 and "ok" in deleted.stdout, deleted.stdout
    assert get_image_formats(company) == []
    assert "thumb" not in run_wide(["presets", "list", "-c", company], stack.env).stdout


def test_presets_save_takes_adobes_example_name_and_modifier(stack: Stack) -> None:
    company, _ = stack.company(0)
    modifier = "wid=400&hei=400&fmt=jpeg&qlt=750&op_sharpen=0&\n   resMode=bicub&iccEmbed=0\n"
    saved = run_wide(
        ["presets", "save", "-c", company, "My Image Format Name", modifier], stack.env
    )
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert [(p.name, p.url_modifier) for p in get_image_formats(company)] == [
        ("My Image Format Name", modifier)
    ]


def test_presets_faults_exit_2_with_the_reason(stack: Stack) -> None:
    company, _ = stack.company(0)
    bad_name = run_wide(["presets", "save", "-c", company, "no\nbreaks", "wid=1"], stack.env)
    assert bad_name.returncode == 2 and "control character" in bad_name.stdout
    bad_cmd = run_wide(["presets", "save", "-c", company, "ok", "bogus=1"], stack.env)
    assert bad_cmd.returncode == 2 and "bogus" in bad_cmd.stdout
    unknown = run_wide(["presets", "delete", "-c", company, f"{company}|999999"], stack.env)
    assert unknown.returncode == 2, unknown.stdout
    no_company = run_wide(["presets", "list", "-c", "no-such-company"], stack.env)
    assert no_company.returncode == 2 and no_company.stdout.strip()


def test_submit_wait_shows_progress_then_the_job_log(stack: Stack, tmp_path: Path) -> None:
    company, assets = stack.company(3)
    request = tmp_path / "job.json"
    # Due in 3 s (an ETA message): the first poll surely sees the run, queued.
    at = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    request.write_text(json.dumps(export_request(company, assets, "Waited", execTime=at)))
    out = run_wide(["submit", str(request), "--wait"], stack.env)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{company}|Waited|")
    # The progress bar's last frame: the run, ended, at 100%; then the job log summary.
    bar = next(i for i, line in enumerate(lines) if "(ended)" in line)
    assert "Waited_" in lines[bar] and "100%" in lines[bar]
    summary = next(i for i, line in enumerate(lines) if "Done: 3 ok, 0 errors" in line)
    assert summary > bar


def test_submit_wait_exits_1_when_the_job_log_has_errors(stack: Stack, tmp_path: Path) -> None:
    from sqlalchemy import select

    from jobengine.runtime import get_runtime
    from jobengine.store.schema import Asset

    company, assets = stack.company(2)
    runtime = get_runtime()
    with runtime.store.read() as session:
        key = session.scalar(select(Asset.file_key).where(Asset.handle == assets[0]))
    assert key
    runtime.storage.delete(key)  # the export of this asset fails, the other one succeeds
    request = tmp_path / "job.json"
    request.write_text(json.dumps(export_request(company, assets, "Partly")))
    out = run_wide(["submit", str(request), "--wait"], stack.env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert ": 1 ok, 1 errors" in out.stdout


def test_submit_rejected_exits_2_without_waiting(stack: Stack, tmp_path: Path) -> None:
    company, assets = stack.company(1)
    request = tmp_path / "job.json"
    missing = f"{company}|a|999999"
    request.write_text(json.dumps(export_request(company, [*assets, missing], "Rejected")))
    out = run_wide(["submit", str(request), "--wait"], stack.env)
    assert out.returncode == 2 and "unknown assetHandle" in out.stdout, out.stdout
