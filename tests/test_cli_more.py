"""``jobengine presets ...`` and ``jobengine submit --wait`` as real processes on the test stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobengine import get_image_formats
from tests.support.helpers import export_request
from tests.support.stack import Stack

JOBENGINE = [sys.executable, "-m", "jobengine.cli"]


def _run(
    args: list[str], env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        JOBENGINE + args,
        env={**os.environ, **env, "COLUMNS": "200"},  # rich: no wrapped table cells
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_presets_save_list_update_delete(stack: Stack) -> None:
    company, _ = stack.company(0)
    saved = _run(["presets", "save", "-c", company, "thumb", "wid=120&hei=90&fmt=jpeg"], stack.env)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    handle = saved.stdout.strip()
    assert handle.endswith(f"|{handle.rsplit('|', 1)[1]}") and handle.rsplit("|", 1)[1].isdigit()

    listed = _run(["presets", "list", "-c", company], stack.env)
    assert listed.returncode == 0, listed.stderr
    assert handle in listed.stdout and "thumb" in listed.stdout and "wid=120" in listed.stdout

    renamed = _run(
        ["presets", "save", "-c", company, "small", "wid=60", "--handle", handle], stack.env
    )
    assert renamed.returncode == 0 and renamed.stdout.strip() == handle, renamed.stdout
    assert [(p.name, p.url_modifier) for p in get_image_formats(company)] == [("small", "wid=60")]

    deleted = _run(["presets", "delete", "-c", company, handle], stack.env)
    assert deleted.returncode == 0 and "ok" in deleted.stdout, deleted.stdout
    assert get_image_formats(company) == []
    assert "thumb" not in _run(["presets", "list", "-c", company], stack.env).stdout


def test_presets_faults_exit_2_with_the_reason(stack: Stack) -> None:
    company, _ = stack.company(0)
    bad_name = _run(["presets", "save", "-c", company, "no spaces", "wid=1"], stack.env)
    assert bad_name.returncode == 2 and "may only use" in bad_name.stdout
    bad_cmd = _run(["presets", "save", "-c", company, "ok", "bogus=1"], stack.env)
    assert bad_cmd.returncode == 2 and "bogus" in bad_cmd.stdout
    unknown = _run(["presets", "delete", "-c", company, f"{company}|999999"], stack.env)
    assert unknown.returncode == 2, unknown.stdout
    no_company = _run(["presets", "list", "-c", "no-such-company"], stack.env)
    assert no_company.returncode == 2 and no_company.stdout.strip()


def test_submit_wait_shows_progress_then_the_job_log(stack: Stack, tmp_path: Path) -> None:
    company, assets = stack.company(3)
    request = tmp_path / "job.json"
    # Due in 3 s (an ETA message): the first poll surely sees the run, queued.
    at = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    request.write_text(json.dumps(export_request(company, assets, "Waited", execTime=at)))
    out = _run(["submit", str(request), "--wait"], stack.env)
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
    out = _run(["submit", str(request), "--wait"], stack.env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert ": 1 ok, 1 errors" in out.stdout


def test_submit_rejected_exits_2_without_waiting(stack: Stack, tmp_path: Path) -> None:
    company, assets = stack.company(1)
    request = tmp_path / "job.json"
    missing = f"{company}|a|999999"
    request.write_text(json.dumps(export_request(company, [*assets, missing], "Rejected")))
    out = _run(["submit", str(request), "--wait"], stack.env)
    assert out.returncode == 2 and "unknown assetHandle" in out.stdout, out.stdout
