"""The janitor (jobengine/engine/janitor.py): unreferenced uploads, PDF pages and pyramids older
than the grace are deleted; everything else is kept.

Every test runs on a real store (``store_only``: SQLite and PostgreSQL) and on a storage of its
own, local and moto's real S3 server (``tests/support/moto_s3.py``). Local files are aged with
``os.utime``; S3 objects cannot be, so there the sweep is told a later ``now``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update

from jobengine.assets.catalog import create_company, ensure_folder, record_file
from jobengine.engine import janitor
from jobengine.errors import ConfigurationError
from jobengine.runtime import Runtime, get_runtime
from jobengine.settings import Settings
from jobengine.storage import LocalStorage, Storage, open_storage
from jobengine.store.jobs import create_run
from jobengine.store.schema import Asset, Company, Job, Run
from tests.support.moto_s3 import MotoS3

DAY = 86400.0


@pytest.fixture(params=["local", "s3"])
def runtime(request: pytest.FixtureRequest, store_only: dict[str, str], tmp_path: Path) -> Runtime:
    """The test store with a fresh, empty storage of each kind."""
    if request.param == "local":
        storage: Storage = open_storage(str(tmp_path / "storage"))
    else:
        server: MotoS3 = request.getfixturevalue("moto_s3")
        url = f"s3://{server.bucket}/janitor-{uuid.uuid4().hex[:8]}"
        storage = open_storage(url, server.options)
    shared = get_runtime()
    return Runtime(shared.settings, shared.store, storage)


def _put(storage: Storage, key: str, age: float = 2 * DAY) -> str:
    with storage.writer(key) as out:
        out.write(b"x")
    if isinstance(storage, LocalStorage):
        past = time.time() - age
        os.utime(storage.path(key), (past, past))
    return key


def _sweep(runtime: Runtime, **kwargs: Any) -> janitor.SweepReport:
    """A sweep that sees the files written now as two days old on S3 (local files are aged)."""
    if not isinstance(runtime.storage, LocalStorage):
        kwargs.setdefault("now", time.time() + 2 * DAY)
    return janitor.sweep(runtime, **kwargs)


def _company(runtime: Runtime, handle: str | None = None) -> tuple[int, str]:
    handle = handle or f"j{uuid.uuid4().hex[:8]}"
    with runtime.store.write() as session:
        company = create_company(session, handle, f"Janitor {handle}")
        return company.id, handle


def _refer(runtime: Runtime, company_id: int, key: str, *, pyramid: bool = False) -> None:
    """An asset row whose file (or pyramid) is ``key``."""
    with runtime.store.write() as session:
        company = session.get(Company, company_id)
        assert company is not None
        folder = ensure_folder(session, company, "/pics")
        name = f"a{uuid.uuid4().hex[:8]}.jpg"
        if pyramid:
            asset, _, _ = record_file(session, folder, name, "Image", key=f"{key}.src", size=1)
            asset.optimized_key = key
        else:
            record_file(session, folder, name, "Image", key=key, size=1)


def _exists(storage: Storage, keys: list[str]) -> list[bool]:
    return [storage.exists(k) for k in keys]


def test_sweeps_old_unreferenced_files_of_the_three_prefixes_only(runtime: Runtime) -> None:
    storage = runtime.storage
    company_id, handle = _company(runtime)
    ftp_company, _ = _company(runtime, "ftp")  # its prefixes are other companies' FTP roots
    orphans = [
        _put(storage, f"{handle}/uploads/0a1b/photo.jpg"),
        _put(storage, f"{handle}/uploads/0a1c/.tmp-k1.jpg"),  # a write cut off by a kill
        _put(storage, f"{handle}/pages/12/9f9f/page-1.jpg"),
        _put(storage, f"{handle}/optimized/77.ptif"),
    ]
    referenced = [
        _put(storage, f"{handle}/uploads/0a1d/kept.jpg"),
        _put(storage, f"{handle}/pages/13/8e8e/page-1.jpg"),
        _put(storage, f"{handle}/optimized/78.ptif"),
    ]
    _refer(runtime, company_id, referenced[0])
    _refer(runtime, company_id, referenced[1])
    _refer(runtime, company_id, referenced[2], pyramid=True)
    elsewhere = [
        _put(storage, f"{handle}/assets/pics/imported.jpg"),
        _put(storage, f"{handle}/exports/Export.zip"),
        _put(storage, f"_publish/{handle}/images/pics/a.jpg"),
        _put(storage, f"ftp/{handle}/incoming/a.jpg"),
        _put(storage, "ftp/uploads/0a1e/a.jpg"),  # company "uploads"'s FTP root, not "ftp"'s
        _put(storage, f"_staging/run-{_active_run(runtime)}/a.jpg"),
        _put(storage, "_serverdir/a.jpg"),
    ]
    young = (
        []
        if not isinstance(storage, LocalStorage)
        else [_put(storage, f"{handle}/uploads/0a1f/new.jpg", age=60)]
    )

    report = _sweep(runtime)

    assert set(orphans) <= set(report.deleted)
    assert not any(k.startswith(("ftp/", "_")) for k in report.deleted)
    assert _exists(storage, orphans) == [False] * len(orphans)
    assert all(_exists(storage, referenced + elsewhere + young))
    assert ftp_company and "ftp/uploads" not in janitor.swept_prefixes(runtime)


def _job(runtime: Runtime, name: str) -> Job:
    """A scheduled job (it fires in 2099) of a fresh company of the shared store."""
    from jobengine import submit
    from tests.support.helpers import export_request, make_company

    company, assets = make_company(1)
    submit(export_request(company, assets, name, execSchedule="0 0 0 1 1 ? 2099"))
    with runtime.store.read() as session:
        job = session.scalar(select(Job).join(Company).where(Company.handle == company))
    assert job is not None
    return job


def _active_run(runtime: Runtime, state: str = "Running") -> int:
    """The id of a new run in ``state`` (never sent to a worker)."""
    job = _job(runtime, f"Staged {uuid.uuid4().hex[:6]}")
    with runtime.store.write() as session:
        run = create_run(session, job, f"manual:{uuid.uuid4().hex}", local_now=datetime.now(UTC))
        assert run is not None
        session.execute(update(Run).where(Run.id == run.id).values(state=state))
        return run.id


def test_the_staging_of_ended_runs_and_stale_temporary_files_go(runtime: Runtime) -> None:
    """What a finish killed after its commit leaves (the staging of an ended run) and what a
    write killed mid-way leaves (a .tmp- file beside its target) go; the rest stays."""
    storage = runtime.storage
    _, handle = _company(runtime)
    running, ended = _active_run(runtime), _active_run(runtime, "Done")
    gone = [
        _put(storage, f"_staging/run-{ended}/x/a.jpg"),
        _put(storage, "_staging/run-999999999/a.jpg"),  # a run no longer in the store
        _put(storage, f"{handle}/exports/.tmp-k2f9.zip"),
        _put(storage, f"{handle}/assets/pics/.tmp-77a.jpg"),
        _put(storage, f"_publish/{handle}/images/.tmp-3c1.jpg"),
    ]
    kept = [
        _put(storage, f"_staging/run-{running}/x/a.jpg"),
        _put(storage, f"{handle}/exports/Export.zip"),
        _put(storage, "_staging/notes/a.txt"),  # not a run's folder
    ]
    emptied = None
    if isinstance(storage, LocalStorage):  # a live write (S3 objects cannot be aged)
        kept.append(_put(storage, f"{handle}/exports/.tmp-live.zip", age=10))
        emptied = f"_staging/run-{_active_run(runtime, 'Stopped')}"  # a removal cut short
        storage.path(f"{emptied}/x/y").mkdir(parents=True)

    report = _sweep(runtime)

    assert _exists(storage, gone) == [False] * len(gone)
    assert all(_exists(storage, kept))
    assert f"_staging/run-{ended}" in report.staging
    assert f"_staging/run-{running}" not in report.staging
    assert {k for k in gone if ".tmp-" in k} <= set(report.temp_files)
    assert storage.list_folders("_staging") == sorted([f"run-{running}", "notes"])
    if emptied is not None:
        assert emptied in report.staging


def test_files_inside_the_grace_are_kept(runtime: Runtime) -> None:
    _, handle = _company(runtime)
    key = _put(runtime.storage, f"{handle}/uploads/00aa/fresh.jpg", age=60)
    assert janitor.sweep(runtime, grace=3600).deleted == []  # the real now: an hour's grace
    assert runtime.storage.exists(key)
    settings = runtime.settings.with_changes(orphan_grace=0.0)
    zero = Runtime(settings, runtime.store, runtime.storage)
    assert key in janitor.sweep(zero, now=time.time() + 5).deleted
    assert not runtime.storage.exists(key)


def test_a_dry_run_deletes_nothing(runtime: Runtime) -> None:
    _, handle = _company(runtime)
    key = _put(runtime.storage, f"{handle}/optimized/5.ptif")
    report = _sweep(runtime, dry_run=True)
    assert key in report.deleted and report.dry_run
    assert runtime.storage.exists(key)
    assert key in _sweep(runtime).deleted and not runtime.storage.exists(key)


def test_the_cap_per_sweep_and_the_next_sweep_goes_on(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(janitor, "BATCH", 2)  # several lookup batches per sweep
    company_id, handle = _company(runtime)
    keys = [_put(runtime.storage, f"{handle}/uploads/{n:04x}/f.jpg") for n in range(5)]
    kept = _put(runtime.storage, f"{handle}/uploads/ffff/kept.jpg")
    _refer(runtime, company_id, kept)
    first = _sweep(runtime, limit=3)
    assert len(first.deleted) == 3 and first.capped
    second = _sweep(runtime, limit=3)
    assert len(second.deleted) == 2 and not second.capped
    assert set(first.deleted) | set(second.deleted) == set(keys)
    assert _sweep(runtime).deleted == [] and runtime.storage.exists(kept)


def test_a_reference_made_after_the_listing_is_honoured(runtime: Runtime) -> None:
    company_id, handle = _company(runtime)
    storage = runtime.storage
    now = time.time() + (0 if isinstance(storage, LocalStorage) else 2 * DAY)
    cutoff = now - runtime.settings.orphan_grace
    _put(storage, f"{handle}/uploads/0001/a.jpg")
    _put(storage, f"{handle}/uploads/0002/b.jpg")
    mine = [p for p in janitor.swept_prefixes(runtime) if p.startswith(f"{handle}/")]
    listed = sorted(janitor.old_files(storage, mine, cutoff))
    assert listed == [f"{handle}/uploads/0001/a.jpg", f"{handle}/uploads/0002/b.jpg"]
    assert janitor.unreferenced(runtime, listed) == listed
    _refer(runtime, company_id, listed[0])  # a worker commits its upload meanwhile
    assert janitor.remove_orphans(runtime, listed, cutoff) == [listed[1]]
    assert _exists(storage, listed) == [True, False]


def test_a_file_rewritten_after_the_listing_is_kept(runtime: Runtime) -> None:
    if not isinstance(runtime.storage, LocalStorage):
        pytest.skip("S3 objects cannot be aged: the local run shows it")
    _, handle = _company(runtime)
    key = _put(runtime.storage, f"{handle}/optimized/9.ptif")
    cutoff = time.time() - DAY
    listed = list(janitor.old_files(runtime.storage, [f"{handle}/optimized"], cutoff))
    assert listed == [key]
    _put(runtime.storage, key, age=0)  # a pyramid written again in place
    assert janitor.remove_orphans(runtime, listed, cutoff) == []
    assert runtime.storage.exists(key)


def test_iter_files_and_modified(runtime: Runtime, tmp_path: Path) -> None:
    storage = runtime.storage
    before = time.time() - 60
    for key in ("f/a.txt", "f/b/c.txt", "f/b/d/e.txt", "g/x.txt"):
        _put(storage, key, age=0)
    found = {f.key: f.modified for f in storage.iter_files("f")}
    assert set(found) == {"f/a.txt", "f/b/c.txt", "f/b/d/e.txt"}
    assert all(m is not None and m > before for m in found.values())
    modified = storage.modified("f/a.txt")
    assert modified is not None and modified > before
    assert list(storage.iter_files("missing")) == []
    with pytest.raises(FileNotFoundError):
        storage.modified("f/missing.txt")
    if isinstance(storage, LocalStorage):  # symlinks are neither yielded nor followed
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret.txt").write_bytes(b"s")
        (storage.path("f") / "link").symlink_to(outside)
        (storage.path("f") / "flink.txt").symlink_to(outside / "secret.txt")
        assert {f.key for f in storage.iter_files("f")} == set(found)


def test_memory_storage_lists_with_times(tmp_path: Path) -> None:
    storage = open_storage(f"memory://janitor-{uuid.uuid4().hex[:8]}")
    _put(storage, "p/q/r.txt", age=0)
    [found] = list(storage.iter_files("p"))
    assert found.key == "p/q/r.txt" and found.modified is not None
    assert storage.modified("p/q/r.txt") is not None


def test_orphan_grace_setting(tmp_path: Path) -> None:
    home = {"JOBENGINE_HOME": str(tmp_path)}
    assert Settings.from_env(home).orphan_grace == DAY
    assert Settings.from_env({**home, "JOBENGINE_ORPHAN_GRACE": "0"}).orphan_grace == 0
    assert Settings.from_env({**home, "JOBENGINE_ORPHAN_GRACE": "604800"}).orphan_grace == 604800
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(ConfigurationError, match="JOBENGINE_ORPHAN_GRACE"):
            Settings.from_env({**home, "JOBENGINE_ORPHAN_GRACE": bad})


def test_the_background_sweep_never_raises(
    store_only: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> janitor.SweepReport:
        raise OSError("storage down")

    monkeypatch.setattr(janitor, "sweep", boom)
    assert janitor.sweep_in_background()
    janitor._SWEEPER[-1].join(10)
    assert not janitor._SWEEPER[-1].is_alive()


def test_beat_starts_the_janitor_at_most_once_an_hour(
    store_only: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobengine.embedded import redis_client
    from jobengine.engine.scheduling import JANITOR_KEY, LeaderLock, StoreScheduler

    started: list[bool] = []

    def start() -> bool:
        started.append(True)
        return True

    monkeypatch.setattr(janitor, "sweep_in_background", start)
    client = redis_client(get_runtime().settings)
    client.delete(JANITOR_KEY)
    lock = LeaderLock(client, ttl=5, key=f"test:janitor:{uuid.uuid4().hex}")
    beats: list[Any] = [SimpleNamespace(_janitor_tried=0.0, _lock=lock) for _ in range(2)]
    try:
        StoreScheduler._janitor(beats[0])
        StoreScheduler._janitor(beats[0])  # a minute has not passed: Redis is not even asked
        StoreScheduler._janitor(beats[1])  # another beat within the hour
        assert started == [True]
        ttl = client.ttl(JANITOR_KEY)
        assert 3500 < int(ttl) <= 3600
    finally:
        client.delete(JANITOR_KEY)


def test_the_cli_prints_what_it_removes(store_only: dict[str, str], tmp_path: Path) -> None:
    runtime = Runtime(get_runtime().settings, get_runtime().store, open_storage(str(tmp_path)))
    _, handle = _company(runtime)
    key = _put(runtime.storage, f"{handle}/uploads/abcd/orphan.jpg")
    env = {**os.environ, **store_only, "JOBENGINE_STORAGE": str(tmp_path)}

    def run(*args: str) -> str:
        argv = [sys.executable, "-m", "jobengine.cli", "janitor", *args]
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    assert f"would delete {key}" in run("--dry-run")
    assert runtime.storage.exists(key)
    assert f"deleted {key}" in run()
    assert not runtime.storage.exists(key)
    with runtime.store.read() as session:  # the store is untouched
        assert session.scalar(select(Asset.id).where(Asset.file_key == key)) is None
