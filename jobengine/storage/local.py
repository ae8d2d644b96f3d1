"""``LocalStorage``: files under one local (or shared, e.g. NFS) directory, with atomic renames."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from jobengine.storage.base import StorageError, StoredFile, check_key, reporting_full

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

    def modified(self, key: str) -> float | None:
        return self.path(key).stat().st_mtime

    def open(self, key: str) -> BinaryIO:
        """Open a stored file for reading."""
        return self.path(key).open("rb")

    @contextmanager
    def writer(self, key: str, *, durable: bool = True) -> Iterator[BinaryIO]:
        """Write ``key`` atomically: readers see the old file or the whole new one, never a part.

        The temporary file (``.tmp-*`` beside the target) goes on any error; one a killed
        process leaves is swept by the janitor. A full disk raises StorageFull naming ``key``.
        """
        target = self.path(key)
        with reporting_full(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
            try:
                with os.fdopen(fd, "wb") as out:
                    yield out
                    out.flush()
                    if durable:
                        os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def put_file(self, source: Path, key: str, *, durable: bool = True) -> int:
        """Copy a local file in atomically; returns its size."""
        with source.open("rb") as src, self.writer(key, durable=durable) as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        return self.size(key)

    def copy(self, src_key: str, dst_key: str, *, durable: bool = True) -> int:
        """Copy one stored file to another key atomically; returns its size."""
        return self.put_file(self.path(src_key), dst_key, durable=durable)

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

    def list_files(self, key: str, *, recursive: bool = False) -> list[str]:
        """The regular files in the folder ``key``, as sorted keys; symlinks only when they
        resolve to a regular file inside that folder, symlinked folders never."""
        folder = self.path(key)
        try:
            base = folder.resolve(strict=True)
        except (OSError, RuntimeError):
            return []
        if not base.is_dir():
            return []
        found: list[str] = []
        self._walk(folder, base, "/".join(check_key(key)), recursive, found)
        return sorted(found)

    def _walk(self, here: Path, base: Path, prefix: str, recursive: bool, found: list[str]) -> None:
        try:
            with os.scandir(here) as scan:
                entries = list(scan)
        except OSError:
            return
        for entry in entries:
            key = f"{prefix}/{entry.name}"
            try:
                check_key(key)
            except StorageError:
                continue
            if entry.is_symlink():
                if _regular_inside(Path(entry.path), base):
                    found.append(key)
            elif entry.is_dir(follow_symlinks=False):
                if recursive:
                    self._walk(Path(entry.path), base, key, recursive, found)
            elif entry.is_file(follow_symlinks=False):  # regular files only: no FIFOs, devices
                found.append(key)

    def list_folders(self, key: str) -> list[str]:
        """The real folders (empty ones too, no symlinks) directly in the folder ``key``."""
        try:
            with os.scandir(self.path(key)) as scan:
                return sorted(e.name for e in scan if e.is_dir(follow_symlinks=False))
        except OSError:  # missing, not a folder, unreadable
            return []

    def iter_files(self, key: str) -> Iterator[StoredFile]:
        """The regular files under the folder ``key``, one folder read at a time; symlinks
        (to files or folders) are neither yielded nor followed."""
        pending = ["/".join(check_key(key))]
        while pending:
            prefix = pending.pop()
            try:
                with os.scandir(self.path(prefix)) as scan:
                    entries = list(scan)
            except OSError:  # missing, not a folder, unreadable
                continue
            for entry in entries:
                child = f"{prefix}/{entry.name}"
                try:
                    check_key(child)
                    if entry.is_symlink():
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(child)
                    elif entry.is_file(follow_symlinks=False):
                        yield StoredFile(child, entry.stat(follow_symlinks=False).st_mtime)
                except (StorageError, OSError):  # a bad name, or gone meanwhile
                    continue

    def open_within(self, folder: str, key: str) -> BinaryIO:
        """Open ``key`` if it resolves to a regular file inside ``folder`` (no FIFO can block
        the open, and a symlink swapped in after the check fails it)."""
        if not key.startswith(folder.rstrip("/") + "/"):
            raise PermissionError(f"{key!r} is not inside {folder!r}")
        try:
            base = self.path(folder).resolve(strict=True)
            real = self.path(key).resolve(strict=True)
        except RuntimeError:  # a symlink loop (pathlib's error before 3.13)
            raise PermissionError(f"{key!r} is a symlink loop") from None
        if not real.is_relative_to(base):
            raise PermissionError(f"{key!r} leads out of {folder!r}")
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(real, flags | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PermissionError(f"{key!r} is not a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise


def _regular_inside(link: Path, base: Path) -> bool:
    """Whether a symlink resolves to a regular file inside ``base``."""
    try:
        real = link.resolve(strict=True)
        return real.is_relative_to(base) and stat.S_ISREG(real.stat().st_mode)
    except (OSError, RuntimeError):  # dangling, a loop, unreadable
        return False
