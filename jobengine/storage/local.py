"""``LocalStorage``: files under one local (or shared, e.g. NFS) directory, with atomic renames."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from jobengine.storage.base import check_key

__all__ = ["LocalStorage"]


class LocalStorage:
    """Files under one root directory, addressed by POSIX-style relative keys."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def url(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        """The local path of ``key``; keys with ``..``, absolute paths or NULs are refused."""
        return self.root.joinpath(*check_key(key))

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def open(self, key: str) -> BinaryIO:
        """Open a stored file for reading."""
        return self.path(key).open("rb")

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """Write ``key`` atomically: readers see the old file or the whole new one, never a part."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, source: Path, key: str) -> int:
        """Copy a local file in atomically; returns its size."""
        with source.open("rb") as src, self.writer(key) as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        return self.size(key)

    def copy(self, src_key: str, dst_key: str) -> int:
        """Copy one stored file to another key atomically; returns its size."""
        return self.put_file(self.path(src_key), dst_key)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_tree(self, key: str) -> None:
        """Remove a folder of temporary files (staging areas)."""
        shutil.rmtree(self.path(key), ignore_errors=True)

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        """The stored file's own path (no copy)."""
        yield self.path(key)

    @contextmanager
    def local_dir(self, key: str) -> Iterator[Path]:
        """The folder ``key`` itself, created if missing: files written there are stored."""
        folder = self.path(key)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
