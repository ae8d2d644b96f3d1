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

from jobengine.storage.base import (
    LeadsOut,
    StorageError,
    StoredFile,
    check_inside,
    check_key,
    reporting_full,
)

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
    def writer(
        self, key: str, *, within: str | None = None, durable: bool = True
    ) -> Iterator[BinaryIO]:
        """Write ``key`` atomically: readers see the old file or the whole new one, never a part.

        The temporary file (``.tmp-*`` beside the target) goes on any error; one a killed
        process leaves is swept by the janitor. A full disk raises StorageFull naming ``key``.
        With ``within``, the file must land inside that folder after resolving symlinks: a
        symlinked folder on the way that leads out of it is refused (LeadsOut) before any folder
        is made, and again before the file is moved into place.
        """
        target = self.path(key)
        if within is not None:
            check_inside(within, key)
            self._landing(within, target.parent)
        with reporting_full(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
            try:
                with os.fdopen(fd, "wb") as out:
                    yield out
                    out.flush()
                    if durable:
                        _flush_to_disk(out.fileno())
                if within is not None:  # a folder on the way may have been swapped for a link
                    self._landing(within, Path(tmp).parent)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def put_file(
        self, source: Path, key: str, *, within: str | None = None, durable: bool = True
    ) -> int:
        """Copy a local file in atomically; returns its size."""
        with source.open("rb") as src, self.writer(key, within=within, durable=durable) as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        return self.size(key)

    def copy(
        self, src_key: str, dst_key: str, *, within: str | None = None, durable: bool = True
    ) -> int:
        """Copy one stored file to another key atomically; returns its size."""
        return self.put_file(self.path(src_key), dst_key, within=within, durable=durable)

    def _landing(self, within: str, folder: Path) -> None:
        """LeadsOut unless ``folder`` (its existing part, symlinks resolved) lies inside
        the folder ``within`` (resolved the same way; it need not exist yet)."""
        try:
            base = self.path(within).resolve()
            real = folder.resolve()
        except RuntimeError:  # a symlink loop (pathlib's error before 3.13)
            raise PermissionError(f"{within!r} holds a symlink loop") from None
        if not real.is_relative_to(base):
            raise LeadsOut(f"a symlinked folder leads out of {within!r}")

    def _real_folder(self, folder: str, root: str | None) -> Path:
        """The resolved path of an existing ``folder``; with ``root`` (a folder holding it),
        LeadsOut when the folder or a folder on its way is a symlink that leads out of
        ``root`` (into another company's files, or out of the storage). OSError when missing."""
        if root is not None:
            check_inside(root, folder, allow_same=True)
        try:
            base = self.path(folder).resolve(strict=True)
            outer = self.path(root).resolve(strict=True) if root is not None else base
        except RuntimeError:  # a symlink loop (pathlib's error before 3.13)
            raise PermissionError(f"{folder!r} is a symlink loop") from None
        if not base.is_relative_to(outer):
            raise LeadsOut(f"{folder!r} leads out of {root!r}")
        return base

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

    def list_files(
        self, key: str, *, recursive: bool = False, root: str | None = None
    ) -> list[str]:
        """The regular files in the folder ``key``, as sorted keys; symlinks only when they
        resolve to a regular file inside that folder, symlinked folders below it never. With
        ``root``, LeadsOut when ``key`` itself leads out of ``root`` through a symlink."""
        folder = self.path(key)
        try:
            base = self._real_folder(key, root)
        except LeadsOut:
            raise
        except OSError:  # missing, unreadable, a loop
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

    def open_within(self, folder: str, key: str, *, root: str | None = None) -> BinaryIO:
        """Open ``key`` if it resolves to a regular file inside ``folder`` (and ``folder`` inside
        ``root``): no FIFO can block the open, and a symlink swapped in after the check (for the
        file or any folder on its way) fails it."""
        check_inside(folder, key)
        base = self._real_folder(folder, root)
        try:
            real = self.path(key).resolve(strict=True)
        except RuntimeError:  # a symlink loop (pathlib's error before 3.13)
            raise PermissionError(f"{key!r} is a symlink loop") from None
        if not real.is_relative_to(base):
            raise LeadsOut(f"{key!r} leads out of {folder!r}")
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(real, flags | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PermissionError(f"{key!r} is not a regular file")
            if not _opened_path(fd, real).is_relative_to(base):
                raise LeadsOut(f"{key!r} leads out of {folder!r}")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise


def _opened_path(fd: int, fallback: Path) -> Path:
    """Where an open file really is (Linux: ``/proc/self/fd``), so that a folder swapped for a
    symlink between the check and the open is caught; ``fallback`` where /proc is missing."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return fallback


def _regular_inside(link: Path, base: Path) -> bool:
    """Whether a symlink resolves to a regular file inside ``base``."""
    try:
        real = link.resolve(strict=True)
        return real.is_relative_to(base) and stat.S_ISREG(real.stat().st_mode)
    except (OSError, RuntimeError):  # dangling, a loop, unreadable
        return False


def _flush_to_disk(fd: int) -> None:
    """The file's data on disk before it is renamed into place: ``fdatasync`` (the data and
    what reading it back needs, its size among them; not its times), else ``fsync``."""
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)
