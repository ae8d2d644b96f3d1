"""LocalStorage: keys that would escape its root, atomic writes, safe file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobengine.storage import LocalStorage, StorageError, safe_name


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a\\b", "a\x00b", "", "a//b"])
def test_storage_refuses_keys_that_escape(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError):
        LocalStorage(tmp_path).path(key)


def test_storage_writes_are_atomic(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with storage.writer("a/b.bin") as out:
        out.write(b"old")
    with pytest.raises(RuntimeError), storage.writer("a/b.bin") as out:
        out.write(b"half")
        raise RuntimeError("crash mid-write")
    assert storage.path("a/b.bin").read_bytes() == b"old"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.bin"]  # no temp file left


def test_safe_name() -> None:
    assert safe_name("My Test Job_2026-11-23-08:30:00") == "My Test Job_2026-11-23-08_30_00"
    assert safe_name("../..") == "_"
    assert safe_name("...") == "file"
    assert safe_name("c|47") == "c_47"
