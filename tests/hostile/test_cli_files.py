"""Files named on the command line are hostile input too: ``jobengine submit`` and ``jobengine
assets import`` read regular files only, up to the same caps as the web service and uploads,
never block on a FIFO, follow a folder's symlinks only inside it, and leave no temporary file."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from jobengine.assets.localfiles import plan_files, read_capped
from jobengine.cli.app import _signals_end_cleanly
from jobengine.errors import InvalidParameter, LimitExceeded
from jobengine.runtime import get_runtime
from jobengine.store.schema import Asset, Company
from tests.support.helpers import make_company

JOBENGINE = [sys.executable, "-m", "jobengine.cli"]


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, "JPEG")
    return out.getvalue()


def _cli(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [*JOBENGINE, *args],
        env={**os.environ, **env, "COLUMNS": "400"},  # rich: no wrapped lines
        capture_output=True,
        text=True,
        timeout=timeout,  # a FIFO that blocked would fail the test here
        check=False,
    )
    assert time.monotonic() - started < timeout
    return done


def _temp_files(env: dict[str, str]) -> list[Path]:
    return list(Path(env["JOBENGINE_STORAGE"]).rglob(".tmp-*"))


def _names(company: str) -> list[str]:
    with get_runtime().store.read() as session:
        return sorted(
            session.scalars(
                select(Asset.name).join(Company, Company.id == Asset.company_id)
                .where(Company.handle == company)
            )
        )  # fmt: skip


def test_special_files_are_refused_without_reading_or_blocking(
    store_only: dict[str, str], tmp_path: Path
) -> None:
    company, _ = make_company(0)
    fifo = tmp_path / "pipe.xml"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        imported = _cli(["assets", "import", "-c", company, path], store_only)
        assert imported.returncode == 2 and "is not a regular file" in imported.stdout
        submitted = _cli(["submit", path], store_only)
        assert submitted.returncode == 2 and "not a regular file" in submitted.stdout
    assert _names(company) == []
    assert _temp_files(store_only) == []


def test_oversized_files_are_refused(store_only: dict[str, str], tmp_path: Path) -> None:
    company, _ = make_company(0)
    big = tmp_path / "big.jpg"  # over JOBENGINE_UPLOAD_MAX_BYTES (1 MiB in the tests)
    big.write_bytes(_jpeg() + b"\0" * (2 * 1024 * 1024))
    imported = _cli(["assets", "import", "-c", company, str(big)], store_only)
    assert imported.returncode == 2 and "larger than 1048576 bytes" in imported.stdout
    huge = tmp_path / "huge.xml"  # over the XML reader's 5 MiB
    with huge.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: read only up to the cap
    submitted = _cli(["submit", str(huge)], store_only)
    assert submitted.returncode == 2 and "larger than" in submitted.stdout
    bad_json = tmp_path / "job.json"
    bad_json.write_text("[" * 100_000)
    submitted = _cli(["submit", str(bad_json)], store_only)
    assert submitted.returncode == 2 and "30003" in submitted.stdout
    assert _names(company) == [] and _temp_files(store_only) == []


def test_a_folder_import_follows_links_only_inside_it(
    store_only: dict[str, str], tmp_path: Path
) -> None:
    company, _ = make_company(0)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(_jpeg())
    (folder / "sub" / "b.jpg").write_bytes(_jpeg())
    secret = tmp_path / "secret.txt"
    secret.write_text("PASSWORD=hunter2")
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "env.txt").symlink_to("/proc/self/environ")
    (folder / "secret.png").symlink_to(secret)
    (folder / "alias.jpg").symlink_to(folder / "sub" / "b.jpg")  # inside: imported
    (folder / "outdir").symlink_to(tmp_path)
    (folder / "loop").symlink_to("loop")
    (folder / "zero").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.jpg")
    (folder / "big.jpg").write_bytes(b"\0" * (2 * 1024 * 1024))
    out = _cli(["assets", "import", "-c", company, str(folder), "--folder", "/in"], store_only)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _names(company) == ["a.jpg", "alias.jpg", "b.jpg"]
    flat = " ".join(out.stdout.split())
    for name, why in (
        ("passwd.png", "leads out of the folder"),
        ("env.txt", "leads out of the folder"),
        ("secret.png", "leads out of the folder"),
        ("outdir", "symlinked folder"),
        ("loop", "symlink loop"),
        ("zero", "leads out of the folder"),
        ("fifo.jpg", "not a regular file"),
        ("big.jpg", "larger than 1048576 bytes"),
    ):
        assert f"{name}: " in flat and why in flat, (name, flat)
    stored = get_runtime().storage
    with get_runtime().store.read() as session:
        keys = session.scalars(
            select(Asset.file_key).join(Company, Company.id == Asset.company_id)
            .where(Company.handle == company)
        ).all()  # fmt: skip
    assert all(b"hunter2" not in stored.open(k).read() for k in keys if k)
    assert _temp_files(store_only) == []


def test_the_file_rules_in_process(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InvalidParameter, match="not a regular file"):
        read_capped(tmp_path / "fifo", 100)
    with pytest.raises(InvalidParameter, match="not a regular file"):
        read_capped(Path("/dev/zero"), 100)
    (tmp_path / "f").write_bytes(b"x" * 101)
    with pytest.raises(LimitExceeded):
        read_capped(tmp_path / "f", 100)
    assert read_capped(tmp_path / "f", 101) == b"x" * 101
    with pytest.raises(InvalidParameter, match="is not a regular file"):
        plan_files([Path("/dev/null")], 100)
    with pytest.raises(InvalidParameter, match="cannot be read"):
        plan_files([tmp_path / "missing"], 100)
    with pytest.raises(LimitExceeded):
        plan_files([tmp_path / "f"], 100)


def test_sigterm_while_storing_leaves_no_temporary_file(
    store_only: dict[str, str],
) -> None:
    storage = get_runtime().storage
    before = signal.getsignal(signal.SIGTERM)
    with (
        pytest.raises(SystemExit) as ended,
        _signals_end_cleanly(),
        storage.writer("interrupted/file.bin") as out,
    ):
        out.write(b"half")
        os.kill(os.getpid(), signal.SIGTERM)  # as a kill during a long copy
        time.sleep(5)  # never reached: the handler raises first
    assert ended.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
    assert _temp_files(store_only) == [] and not storage.exists("interrupted/file.bin")
