"""FsspecStorage on fsspec's ``memory://`` file system, and how a storage URL is chosen.

The shared contract (atomic writes, key checks, ...) runs over local, memory and S3 storage in
``tests/storage/test_storage_s3.py``; these are the parts particular to the fsspec backend and
settings.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path

import pytest

from jobengine.errors import ConfigurationError
from jobengine.settings import Settings
from jobengine.storage import FsspecStorage, LocalStorage, local_root, open_storage


def _memory() -> FsspecStorage:
    storage = open_storage(f"memory://unit-{uuid.uuid4().hex[:8]}/root")
    assert isinstance(storage, FsspecStorage)
    return storage


def _files(storage: FsspecStorage) -> list[str]:
    fs, root = storage._connect()
    return sorted(str(p).removeprefix(root + "/") for p in fs.find(root))


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("/srv/storage", "/srv/storage"),
        ("relative/dir", str(Path("relative/dir").absolute())),
        ("file:///srv/storage", "/srv/storage"),
        ("local:///srv/storage", "/srv/storage"),
        ("s3://bucket/prefix", None),
        ("memory://x", None),
        ("simplecache::s3://bucket", None),
    ],
)
def test_local_paths_and_file_urls_stay_local(url: str, local: str | None) -> None:
    root = local_root(url)
    assert (None if root is None else str(root)) == local
    if local is not None:
        storage = open_storage(url)
        assert isinstance(storage, LocalStorage) and str(storage.root) == local


def test_settings_read_the_storage_url_and_its_options() -> None:
    env = {"JOBENGINE_TIMEZONE": "UTC", "JOBENGINE_HOME": "/tmp/je-home"}
    assert Settings.from_env(env).storage_url == "/tmp/je-home/storage"
    assert Settings.from_env(env).storage_options == {}
    local = Settings.from_env({**env, "JOBENGINE_STORAGE": "file:///data/assets"})
    assert local.storage_url == "/data/assets"
    options = {"endpoint_url": "http://127.0.0.1:9000", "secret": "s3cret-value"}
    remote = Settings.from_env(
        {**env, "JOBENGINE_STORAGE": "s3://b/p", "JOBENGINE_STORAGE_OPTIONS": json.dumps(options)}
    )
    assert (remote.storage_url, remote.storage_options) == ("s3://b/p", options)
    assert "s3cret-value" not in repr(remote)
    hash(remote)  # settings stay hashable with the options dict


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"'])
def test_bad_storage_options_are_a_configuration_error(raw: str) -> None:
    env = {"JOBENGINE_TIMEZONE": "UTC", "JOBENGINE_STORAGE_OPTIONS": raw}
    with pytest.raises(ConfigurationError, match="JOBENGINE_STORAGE_OPTIONS"):
        Settings.from_env(env)


def test_an_unknown_protocol_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="nosuchproto"):
        open_storage("nosuchproto://bucket/x")


def test_options_never_show_in_repr() -> None:
    storage = FsspecStorage("memory://repr", {"secret": "hidden-value"})
    assert "hidden-value" not in repr(storage) and storage.url == "memory://repr"


def test_writes_go_through_a_temporary_key_and_leave_none_behind(tmp_path: Path) -> None:
    storage = _memory()
    assert not storage.object_store
    with storage.writer("a/b.txt") as out:
        out.write(b"one")
        assert _files(storage) and all(".tmp-" in f for f in _files(storage))  # not yet b.txt
    assert _files(storage) == ["a/b.txt"]
    source = tmp_path / "s.bin"
    source.write_bytes(b"12345")
    assert storage.put_file(source, "a/c.bin") == 5
    assert storage.copy("a/c.bin", "d/e.bin") == 5
    assert _files(storage) == ["a/b.txt", "a/c.bin", "d/e.bin"]


def test_the_file_system_is_made_again_after_a_fork() -> None:
    """Celery's prefork children must not use the parent's (async) file system object."""
    storage = _memory()
    storage.exists("x")
    first = storage._state
    assert first is not None and first[0] == os.getpid()
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: reconnects, and says whether it got a state of its own
        try:
            storage.exists("x")
            state = storage._state
            ok = state is not None and state[0] == os.getpid()
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert storage._state is first


def test_delete_tree_failures_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    storage = _memory()
    with storage.writer("keep/a.txt") as out:
        out.write(b"a")
    fs, _ = storage._connect()
    original = fs.rm

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("read-only bucket")

    fs.rm = refuse
    try:
        storage.delete_tree("keep")
    finally:
        fs.rm = original
    assert storage.exists("keep/a.txt")
    assert "read-only bucket" in caplog.text
