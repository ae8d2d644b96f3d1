"""What every storage is: the ``Storage`` protocol, key rules and errors.

Keys are POSIX-style paths relative to the storage root (``47/assets/pics/a.jpg``). The same key
rules hold for every backend, so a key that a local root refuses is refused by S3 too.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "LeadsOut",
    "Storage",
    "StorageError",
    "StorageFull",
    "StoredFile",
    "check_inside",
    "check_key",
    "reporting_full",
    "safe_name",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class StorageError(ValueError):
    """Raised for a key that would leave the storage root or is otherwise unusable."""


# a full disk, a full quota, a file past the file system's size limit
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class StorageFull(OSError):
    """Raised when a write finds the storage full: says so, and names the key being written."""

    def __init__(self, key: str) -> None:
        super().__init__(errno.ENOSPC, f"no space left on device writing {key}")
        self.key = key

    def __str__(self) -> str:
        return str(self.strerror)


@contextmanager
def reporting_full(key: str) -> Iterator[None]:
    """Raise :class:`StorageFull` for ``key`` when a write in the block runs out of space."""
    try:
        yield
    except StorageFull:
        raise
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise StorageFull(key) from exc
        raise


class LeadsOut(PermissionError):
    """Raised for a key or folder that leads out of the folder it must stay in (by its text, or
    through a symlink on local storage)."""


def safe_name(name: str, *, fallback: str = "file") -> str:
    """A file-system-safe version of ``name`` (for company folders and ZIP members)."""
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    return cleaned[:200] or fallback


def check_key(key: str) -> list[str]:
    """The parts of a valid key: ``..``, absolute paths, NULs and backslashes are refused."""
    if not key or "\x00" in key or "\\" in key:
        raise StorageError(f"invalid storage key {key!r}")
    parts = key.split("/")
    if any(part in ("..", ".", "") for part in parts):
        raise StorageError(f"storage key escapes the root: {key!r}")
    return parts


def check_inside(folder: str, key: str, *, allow_same: bool = False) -> None:
    """PermissionError unless ``key`` names something under the folder ``folder`` (by its
    text: symlinks are the local storage's own check)."""
    inner = "/".join(check_key(key))
    outer = "/".join(check_key(folder))
    if not (inner.startswith(f"{outer}/") or (allow_same and inner == outer)):
        raise LeadsOut(f"{key!r} is not inside {folder!r}")


class StoredFile(NamedTuple):
    """A file found by :meth:`Storage.iter_files`: its key and modification time (POSIX
    seconds; ``None`` when the storage does not tell)."""

    key: str
    modified: float | None


@runtime_checkable
class Storage(Protocol):
    """Files addressed by keys, with atomic writes: a local directory or any fsspec file system.

    Every method validates its keys with :func:`check_key`. Reading a missing key raises
    ``FileNotFoundError``; other I/O failures raise ``OSError`` subclasses.
    """

    @property
    def url(self) -> str:
        """Where the files are: the root directory or the fsspec URL (never credentials)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        ...

    def size(self, key: str) -> int:
        """The size in bytes of the file under ``key``."""
        ...

    def modified(self, key: str) -> float | None:
        """When the file under ``key`` was last written (POSIX seconds), ``None`` when the
        storage does not tell; FileNotFoundError if there is none."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open a stored file for reading."""
        ...

    def writer(self, key: str, *, within: str | None = None) -> AbstractContextManager[BinaryIO]:
        """Write ``key`` atomically: readers see the old file or the whole new one, never a part;
        a block that raises leaves nothing new under ``key``.

        ``within`` names a folder the file must land in (a company's folder of a shared
        directory): LeadsOut when ``key`` is not under it, or (local storage) when a folder on
        its way is a symlink leading out of it."""
        ...

    def put_file(self, source: Path, key: str, *, within: str | None = None) -> int:
        """Store a local file under ``key`` atomically; returns its size. ``within``: as for
        :meth:`writer`."""
        ...

    def copy(
        self, src_key: str, dst_key: str, *, within: str | None = None, durable: bool = True
    ) -> int:
        """Copy one stored file to another key atomically; returns its size. ``within``: as for
        :meth:`writer`, for ``dst_key``. ``durable=False`` for scratch copies (a run's
        staging): atomic still, but not flushed to the disk first (local storage skips its
        fsync; a crash loses at most a copy that is made again)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the file under ``key`` (nothing happens if there is none)."""
        ...

    def delete_tree(self, key: str) -> None:
        """Remove everything under the folder ``key`` (staging areas); best effort."""
        ...

    def local_file(self, key: str) -> AbstractContextManager[Path]:
        """A local path holding the file under ``key`` for the block (for tools that need a path).

        The path is only to be read. Local storage gives the stored file's own path, without a
        copy (a missing file fails when read); others download it (FileNotFoundError at once)."""
        ...

    def local_dir(self, key: str) -> AbstractContextManager[Path]:
        """A local directory whose files are stored under the folder ``key`` when the block ends
        without an error (for tools that write files). Local storage gives the folder itself."""
        ...

    def list_files(
        self, key: str, *, recursive: bool = False, root: str | None = None
    ) -> list[str]:
        """The keys of the files in the folder ``key`` (and its subfolders when ``recursive``),
        sorted; a missing folder holds none. Names that are not valid keys are left out.

        Local storage lists regular files only: special files (FIFOs, sockets, devices),
        symlinked folders and symlinks that lead out of the folder ``key`` are left out. With
        ``root`` (a folder holding ``key``: a company's upload root), LeadsOut when ``key`` is
        not under it or, on local storage, is reached through a symlink leading out of it."""
        ...

    def list_folders(self, key: str) -> list[str]:
        """The names of the folders directly in the folder ``key``, sorted; a missing folder
        holds none (an object store has folders only where files are). Local storage lists
        real folders only, empty ones too, never symlinks."""
        ...

    def open_within(self, folder: str, key: str, *, root: str | None = None) -> BinaryIO:
        """Open ``key`` for reading only if it is a regular file inside the folder ``folder``
        (local storage: after resolving symlinks), and ``folder`` inside ``root`` when given;
        LeadsOut (a PermissionError) if it leads elsewhere, PermissionError if it is not a
        regular file, FileNotFoundError if missing."""
        ...

    def iter_files(self, key: str) -> Iterator[StoredFile]:
        """The files under the folder ``key`` and its subfolders with their modification times,
        streamed folder by folder in no set order (for sweeps over many files); a missing folder
        holds none. Names that are not valid keys are left out; local storage yields regular
        files only (no symlinks, FIFOs or devices) and never enters symlinked folders."""
        ...
