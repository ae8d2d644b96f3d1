"""Storage shared between workers: one contract for local, ``memory://`` and ``s3://`` storage,
and real jobs on S3.

S3 is moto's real server (``tests/support/moto_s3.py``) on 127.0.0.1, a subprocess stopped by its
PID. The end-to-end tests run a real Celery worker with ``JOBENGINE_STORAGE=s3://bucket/prefix`` and
the endpoint and credentials in ``JOBENGINE_STORAGE_OPTIONS``, on a broker (an embedded Redis) and
a SQLite store of their own, so no other test's worker can take their messages.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from jobengine.storage import FsspecStorage, LocalStorage, Storage, StorageError, open_storage
from tests.support.moto_s3 import MotoS3

MiB = 1024 * 1024


def _s3_storage(server: MotoS3, **extra: Any) -> FsspecStorage:
    url = f"s3://{server.bucket}/contract-{uuid.uuid4().hex[:8]}"
    storage = open_storage(url, {**server.options, **extra})
    assert isinstance(storage, FsspecStorage)
    return storage


@pytest.fixture(params=["local", "memory", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A fresh, empty storage of each kind, made as the runtime makes it (``open_storage``)."""
    if request.param == "local":
        made = open_storage(str(tmp_path / "root"))
        assert isinstance(made, LocalStorage)
        return made
    if request.param == "memory":
        made = open_storage(f"memory://contract-{uuid.uuid4().hex[:8]}")
        assert isinstance(made, FsspecStorage) and not made.object_store
        return made
    s3 = _s3_storage(request.getfixturevalue("moto_s3"))
    assert s3.object_store
    return s3


def _read(storage: Storage, key: str) -> bytes:
    with storage.open(key) as fh:
        return fh.read()


def _put(storage: Storage, key: str, data: bytes) -> None:
    with storage.writer(key) as out:
        out.write(data)


def _listing(storage: Storage) -> list[str]:
    """Every file in the storage, as keys (to show that no temporary file was left)."""
    if isinstance(storage, LocalStorage):
        return sorted(p.relative_to(storage.root).as_posix() for p in storage.root.rglob("*"))
    assert isinstance(storage, FsspecStorage)
    fs, root = storage._connect()
    found = [str(p) for p in fs.find(root)]
    return sorted(p.removeprefix(root.rstrip("/")).lstrip("/") for p in found)


def test_every_storage_is_a_storage(storage: Storage) -> None:
    assert isinstance(storage, Storage)
    assert storage.url


def test_write_read_size_and_overwrite(storage: Storage) -> None:
    assert not storage.exists("a/b/c.bin")
    _put(storage, "a/b/c.bin", b"first version")
    assert storage.exists("a/b/c.bin")
    assert storage.size("a/b/c.bin") == 13
    assert _read(storage, "a/b/c.bin") == b"first version"
    _put(storage, "a/b/c.bin", b"second")
    assert _read(storage, "a/b/c.bin") == b"second"
    assert not storage.exists("a/b")  # a folder is not a file
    assert [k for k in _listing(storage) if "." in k.rpartition("/")[2]] == ["a/b/c.bin"]


def test_a_failing_write_leaves_nothing_and_keeps_the_old_file(storage: Storage) -> None:
    with pytest.raises(RuntimeError), storage.writer("new/file.bin") as out:
        out.write(b"x" * 1000)
        raise RuntimeError("crash mid-write")
    assert not storage.exists("new/file.bin")
    _put(storage, "old.bin", b"old")
    with pytest.raises(KeyboardInterrupt), storage.writer("old.bin") as out:
        out.write(b"half")
        raise KeyboardInterrupt
    assert _read(storage, "old.bin") == b"old"
    assert [k for k in _listing(storage) if k.endswith(".bin")] == ["old.bin"]  # no temp files


def test_missing_files(storage: Storage) -> None:
    assert not storage.exists("nope.txt")
    with pytest.raises(FileNotFoundError):
        storage.size("nope.txt")
    with pytest.raises(FileNotFoundError):
        storage.open("nope.txt")
    with pytest.raises(FileNotFoundError), storage.local_file("nope.txt") as path:
        path.read_bytes()  # local storage gives the (missing) path itself: reading it fails
    with pytest.raises(FileNotFoundError):
        storage.copy("nope.txt", "dst.txt")
    assert not storage.exists("dst.txt")
    storage.delete("nope.txt")  # nothing to delete is no error
    storage.delete_tree("no/such/folder")


def test_put_file_copy_and_delete(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(70_000))
    assert storage.put_file(source, "in/source.bin") == 70_000
    assert _read(storage, "in/source.bin") == source.read_bytes()
    assert storage.copy("in/source.bin", "out/copy.bin") == 70_000
    assert _read(storage, "out/copy.bin") == source.read_bytes()
    with pytest.raises(FileNotFoundError):
        storage.put_file(tmp_path / "missing.bin", "in/missing.bin")
    assert not storage.exists("in/missing.bin")
    storage.delete("in/source.bin")
    assert not storage.exists("in/source.bin") and storage.exists("out/copy.bin")


def test_delete_tree_removes_one_folder_only(storage: Storage) -> None:
    for key in ("run/a/x.bin", "run/a/deep/y.bin", "run/ab.bin", "run/abc/z.bin"):
        _put(storage, key, b"1")
    storage.delete_tree("run/a")
    assert not storage.exists("run/a/x.bin") and not storage.exists("run/a/deep/y.bin")
    assert storage.exists("run/ab.bin") and storage.exists("run/abc/z.bin")


def test_local_file_gives_a_readable_path(storage: Storage) -> None:
    _put(storage, "pics/photo.jpg", b"jpeg bytes")
    with storage.local_file("pics/photo.jpg") as path:
        assert path.read_bytes() == b"jpeg bytes"
        assert path.name == "photo.jpg"
        if isinstance(storage, LocalStorage):
            assert path == storage.path("pics/photo.jpg")  # the stored file itself: no copy
    if isinstance(storage, LocalStorage):
        assert path.exists()
    else:
        assert not path.exists() and not path.parent.exists()  # the download is removed


def test_local_dir_stores_what_is_written_in_it(storage: Storage) -> None:
    with storage.local_dir("_staging/run-1/item") as folder:
        (folder / "one.png").write_bytes(b"1")
        (folder / "two.png").write_bytes(b"22")
    assert _read(storage, "_staging/run-1/item/one.png") == b"1"
    assert storage.size("_staging/run-1/item/two.png") == 2
    if not isinstance(storage, LocalStorage):
        assert not folder.exists()
        with pytest.raises(RuntimeError), storage.local_dir("_staging/run-2") as failed:
            (failed / "partial.png").write_bytes(b"half")
            raise RuntimeError("conversion failed")
        assert not storage.exists("_staging/run-2/partial.png") and not failed.exists()


def test_a_zip_streamed_into_a_writer_reads_back(storage: Storage) -> None:
    payload = {f"pics/img{i}.bin": os.urandom(20_000 + i) for i in range(3)}
    with storage.writer("exports/run.zip") as out, zipfile.ZipFile(out, "w") as zf:
        for name, data in payload.items():
            zf.writestr(name, data)
    with storage.open("exports/run.zip") as fh, zipfile.ZipFile(fh) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == payload


ESCAPES = ["../x", "/etc/passwd", "a/../../b", "a\\b", "a\x00b", "", "a//b", "a/./b", "a/"]

OPERATIONS: dict[str, Callable[[Storage, str, Path], object]] = {
    "exists": lambda s, k, _: s.exists(k),
    "size": lambda s, k, _: s.size(k),
    "open": lambda s, k, _: s.open(k),
    "writer": lambda s, k, _: s.writer(k).__enter__(),
    "put_file": lambda s, k, src: s.put_file(src, k),
    "copy_from": lambda s, k, _: s.copy(k, "ok.txt"),
    "copy_to": lambda s, k, _: s.copy("ok.txt", k),
    "delete": lambda s, k, _: s.delete(k),
    "delete_tree": lambda s, k, _: s.delete_tree(k),
    "local_file": lambda s, k, _: s.local_file(k).__enter__(),
    "local_dir": lambda s, k, _: s.local_dir(k).__enter__(),
}


@pytest.mark.parametrize("key", ESCAPES)
def test_keys_that_escape_are_refused_everywhere(
    storage: Storage, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "src.txt"
    source.write_bytes(b"x")
    _put(storage, "ok.txt", b"fine")
    for name, operation in OPERATIONS.items():
        with pytest.raises(StorageError):
            operation(storage, key, source)
            pytest.fail(f"{name}({key!r}) was accepted")
    assert _listing(storage) == ["ok.txt"]


# S3 specifics ------------------------------------------------------------------------------


def _pending_uploads(server: MotoS3) -> list[Any]:
    reply = server.fs().call_s3("list_multipart_uploads", Bucket=server.bucket)
    return list(reply.get("Uploads", []))


def test_a_failed_multipart_write_is_aborted_and_leaves_no_object(moto_s3: MotoS3) -> None:
    """Above the block size parts are uploaded while writing: a failure aborts the upload."""
    storage = _s3_storage(moto_s3, default_block_size=5 * MiB)
    with pytest.raises(RuntimeError), storage.writer("big.bin") as out:
        out.write(os.urandom(11 * MiB))  # two parts are on the server already
        raise RuntimeError("crash after the first parts")
    assert not storage.exists("big.bin")
    assert _pending_uploads(moto_s3) == []
    data = os.urandom(11 * MiB)
    with storage.writer("big.bin") as out:
        out.write(data)
    assert storage.size("big.bin") == len(data) and _read(storage, "big.bin") == data


def test_s3_objects_are_plain_keys_under_the_prefix(moto_s3: MotoS3) -> None:
    storage = _s3_storage(moto_s3)
    _put(storage, "47/assets/pics/a.jpg", b"abc")
    prefix = storage.url.removeprefix("s3://")
    assert moto_s3.fs().cat_file(f"{prefix}/47/assets/pics/a.jpg") == b"abc"


def test_options_from_the_environment_reach_s3(moto_s3: MotoS3, monkeypatch) -> None:
    """``JOBENGINE_STORAGE_OPTIONS`` for the endpoint, s3fs's own AWS_* variables for the keys."""
    from jobengine.settings import Settings

    url = f"s3://{moto_s3.bucket}/env-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = Settings.from_env(
        {
            "JOBENGINE_STORAGE": url,
            "JOBENGINE_STORAGE_OPTIONS": json.dumps({"endpoint_url": moto_s3.endpoint}),
            "JOBENGINE_TIMEZONE": "UTC",
        }
    )
    assert settings.storage_url == url
    assert "endpoint_url" not in repr(settings)  # options may hold secrets: never printed
    storage = open_storage(settings.storage_url, settings.storage_options)
    _put(storage, "k.txt", b"via env")
    assert moto_s3.fs().cat_file(f"{url.removeprefix('s3://')}/k.txt") == b"via env"


# Jobs on S3 through a real worker ----------------------------------------------------------


class S3Stack:
    """A worker, a store and an embedded Redis of their own, with the storage on moto's S3."""

    def __init__(self, home: Path, server: MotoS3) -> None:
        from jobengine.embedded import start_redis
        from jobengine.settings import Settings
        from tests.support.stack import TEST_ENV

        self.server = server
        self.prefix = f"{server.bucket}/fleet-{uuid.uuid4().hex[:6]}"
        self.env = {
            **TEST_ENV,
            "JOBENGINE_HOME": str(home),
            "REDIS_URL": "",  # the embedded Redis of this home: no other worker listens there
            "JOBENGINE_BROKER_URL": "",
            "DATABASE_URL": f"sqlite:///{home / 'store.db'}",
            "JOBENGINE_STORAGE": f"s3://{self.prefix}",
            "JOBENGINE_STORAGE_OPTIONS": json.dumps(server.options),
        }
        self.settings = Settings.from_env(self.env)
        self.started_redis = start_redis(self.settings)
        self.workers: list[Any] = []

    def start_worker(self) -> None:
        from tests.support.stack import Worker

        self.workers.append(Worker(self.env, concurrency=2))

    def s3(self) -> Any:
        return self.server.fs()

    def stop(self) -> None:
        from jobengine.embedded import stop_redis

        for worker in self.workers:
            worker.stop()
        if self.started_redis:
            stop_redis(self.settings)


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoS3) -> Iterator[S3Stack]:
    from tests.support.stack import apply_env

    saved = dict(os.environ)
    running = S3Stack(tmp_path_factory.mktemp("s3stack"), moto_s3)
    try:
        apply_env(running.env)
        running.start_worker()
        yield running
    finally:
        running.stop()
        os.environ.clear()
        os.environ.update(saved)
        from jobengine.engine.app import configure
        from jobengine.runtime import reset_runtime

        reset_runtime()
        configure()


def _wait(company: str, handle: str) -> Any:
    from jobengine.cli.devstack import wait_for_runs

    return wait_for_runs(company, [handle], timeout=90)[-1]


def _zip_from_s3(stack: S3Stack, key: str) -> dict[str, bytes]:
    with stack.s3().open(f"{stack.prefix}/{key}", "rb") as fh, zipfile.ZipFile(fh) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _leftovers(stack: S3Stack) -> list[str]:
    """Staging files or temporary keys still in the bucket."""
    s3 = stack.s3()
    return [k for k in s3.find(stack.prefix) if "/_staging/" in k or "/.tmp-" in k]


def test_the_runtime_storage_is_s3(s3_stack: S3Stack) -> None:
    from jobengine.runtime import get_runtime

    storage = get_runtime().storage
    assert isinstance(storage, FsspecStorage) and storage.url == f"s3://{s3_stack.prefix}"


def test_export_originals_on_s3(s3_stack: S3Stack) -> None:
    from jobengine import submit
    from tests.support.helpers import export_request, make_company

    company, assets = make_company(3, sets=1)
    s3, assets_root = s3_stack.s3(), f"{s3_stack.prefix}/{company}/assets"
    originals = {
        f"pics/img{i:03d}.jpg": s3.cat_file(f"{assets_root}/pics/img{i:03d}.jpg") for i in range(3)
    }
    log = _wait(company, submit(export_request(company, assets, "S3 Originals")))
    assert log.state == "Done", log.details
    assert (log.file_success_count, log.file_warning_count, log.file_error_count) == (3, 1, 0)
    key = log.output["zip"]
    assert key.startswith(f"{company}/exports/") and key.endswith(".zip")
    assert _zip_from_s3(s3_stack, key) == originals
    assert log.output["bytes"] == s3.size(f"{s3_stack.prefix}/{key}")
    assert _leftovers(s3_stack) == []
    assert not (Path(s3_stack.env["JOBENGINE_HOME"]) / "storage").exists()  # nothing local


def test_export_converted_on_s3(s3_stack: S3Stack) -> None:
    from jobengine import submit
    from tests.support.helpers import export_request, make_company

    company, assets = make_company(2)
    request = export_request(company, assets, "S3 Convert")
    request["exportJob"].update(fmt="convert", is_modifier="&fmt=png&wid=32")
    log = _wait(company, submit(request))
    assert log.state == "Done" and log.file_success_count == 2, log.details
    members = _zip_from_s3(s3_stack, log.output["zip"])
    assert sorted(members) == ["pics/img000.png", "pics/img001.png"]
    for data in members.values():
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.width == 32
    assert _leftovers(s3_stack) == []


def test_image_serving_publish_on_s3(s3_stack: S3Stack) -> None:
    from jobengine import submit
    from tests.support.helpers import make_company, publish_request

    company, _ = make_company(3)
    log = _wait(company, submit(publish_request(company, "S3 Publish", "FullWithSearch")))
    assert log.state == "Done" and log.file_success_count == 3, log.details
    s3, root = s3_stack.s3(), f"{s3_stack.prefix}/_publish/{company}"
    catalog = json.loads(s3.cat_file(f"{root}/catalog.json"))
    assert sorted(entry["path"] for entry in catalog) == [f"/pics/img{i:03d}.jpg" for i in range(3)]
    for i in range(3):
        published = s3.cat_file(f"{root}/images/pics/img{i:03d}.jpg")
        assert published == s3.cat_file(f"{s3_stack.prefix}/{company}/assets/pics/img{i:03d}.jpg")
    assert json.loads(s3.cat_file(f"{root}/search.json")) == [f"img{i:03d}.jpg" for i in range(3)]
    assert s3.exists(f"{root}/presets.mac")
