"""``FsspecStorage``: any fsspec file system (``s3://``, ``gs://``, ``az://``, ``memory://``...).

Atomic writes come in two ways:

* **Object stores** (S3, GCS, Azure) make an object visible only when its upload completes: a
  write streams into the store (multipart above the block size) and is completed only when the
  block ends without an error; otherwise the upload is aborted and nothing appears.
* **Other file systems** (SFTP, memory, ...) get a temporary key next to the target
  (``.tmp-<random>-<name>``), moved onto the target once complete and removed on failure.

fsspec is imported only when such a storage is used, so a local root never loads it. The file
system object is made again in a forked child (Celery's prefork workers): fsspec's async clients
(s3fs, ...) do not survive a fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from jobengine.errors import ConfigurationError
from jobengine.storage.base import (
    StorageError,
    StoredFile,
    check_inside,
    check_key,
    reporting_full,
)

__all__ = ["OBJECT_STORE_PROTOCOLS", "FsspecStorage"]

logger = logging.getLogger(__name__)

# fsspec protocols whose writes become visible only when the upload completes.
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"})


def _discard(out: Any) -> None:
    """Abandon an fsspec write without completing it (aborts a multipart upload)."""
    with contextlib.suppress(Exception):
        out.discard()
    # AbstractBufferedFile: marking it closed keeps close() (and __del__) from committing.
    out.closed = True


def _mtime(info: Mapping[str, Any]) -> float | None:
    """The modification time in an fsspec info dict (s3fs ``LastModified``, SFTP ``mtime``,
    memory ``created``...) as POSIX seconds; None when it has none."""
    for name in ("LastModified", "last_modified", "mtime", "modified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


class FsspecStorage:
    """Files under an fsspec URL (``s3://bucket/prefix``), addressed by the same keys as local."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self._url = url
        self._options = dict(options or {})
        self._state: tuple[int, Any, str] | None = None
        fs, _ = self._connect()
        protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
        self.object_store = bool(OBJECT_STORE_PROTOCOLS.intersection(protocols))

    def __repr__(self) -> str:
        return f"FsspecStorage({self._url!r})"  # never the options: they may hold secrets

    @property
    def url(self) -> str:
        return self._url

    def _connect(self) -> tuple[Any, str]:
        """This process's file system and the root path inside it."""
        pid = os.getpid()
        if self._state is None or self._state[0] != pid:
            import fsspec

            try:
                fs, root = fsspec.core.url_to_fs(self._url, **self._options)
            except (ImportError, ValueError, TypeError) as exc:
                raise ConfigurationError(f"cannot use storage {self._url!r}: {exc}") from exc
            self._state = (pid, fs, str(root).rstrip("/"))
        return self._state[1], self._state[2]

    def _target(self, key: str) -> tuple[Any, str]:
        """The file system and the full path of a (validated) key."""
        fs, root = self._connect()
        joined = "/".join(check_key(key))
        return fs, f"{root}/{joined}" if root else joined

    @staticmethod
    def _temp_path(path: str) -> str:
        parent, _, name = path.rpartition("/")
        temp = f".tmp-{secrets.token_hex(8)}-{name}"
        return f"{parent}/{temp}" if parent else temp

    @staticmethod
    def _make_parent(fs: Any, path: str) -> None:
        parent = path.rpartition("/")[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)

    @staticmethod
    def _remove_quietly(fs: Any, path: str) -> None:
        with contextlib.suppress(OSError):
            fs.rm_file(path)

    def _via_temp(self, fs: Any, target: str, write: Any) -> None:
        """``write(temp_path)``, then move the temporary key onto ``target``; clean up on error."""
        self._make_parent(fs, target)
        temp = self._temp_path(target)
        try:
            write(temp)
            fs.mv(temp, target)
        except BaseException:
            self._remove_quietly(fs, temp)
            raise

    def exists(self, key: str) -> bool:
        fs, path = self._target(key)
        return bool(fs.isfile(path))

    def size(self, key: str) -> int:
        fs, path = self._target(key)
        return int(fs.size(path))

    def modified(self, key: str) -> float | None:
        fs, path = self._target(key)
        with contextlib.suppress(Exception):
            fs.invalidate_cache(path)
        return _mtime(fs.info(path))  # FileNotFoundError when missing

    def open(self, key: str) -> BinaryIO:
        """Open a stored file for reading."""
        fs, path = self._target(key)
        return cast(BinaryIO, fs.open(path, "rb"))

    @contextmanager
    def writer(self, key: str, *, within: str | None = None) -> Iterator[BinaryIO]:
        """Write ``key`` atomically: nothing appears under it unless the block completes."""
        if within is not None:  # no symlinks here: the key's text decides
            check_inside(within, key)
        fs, target = self._target(key)
        with reporting_full(key):
            yield from self._writing(fs, target)

    def _writing(self, fs: Any, target: str) -> Iterator[BinaryIO]:
        if self.object_store:
            out = fs.open(target, "wb")
            try:
                yield cast(BinaryIO, out)
                out.close()  # completes the upload: the object appears now, whole
            except BaseException:
                _discard(out)
                raise
            return
        self._make_parent(fs, target)
        temp = self._temp_path(target)
        try:
            with fs.open(temp, "wb") as out:
                yield cast(BinaryIO, out)
            fs.mv(temp, target)
        except BaseException:
            self._remove_quietly(fs, temp)
            raise

    def put_file(self, source: Path, key: str, *, within: str | None = None) -> int:
        """Upload a local file atomically; returns its size."""
        if within is not None:
            check_inside(within, key)
        fs, target = self._target(key)
        size = source.stat().st_size
        with reporting_full(key):
            if self.object_store:
                fs.put_file(str(source), target)  # s3fs aborts its multipart upload on failure
            else:
                self._via_temp(fs, target, lambda temp: fs.put_file(str(source), temp))
        return size

    def copy(
        self, src_key: str, dst_key: str, *, within: str | None = None, durable: bool = True
    ) -> int:
        """Copy one stored file to another key atomically (server-side); returns its size."""
        if within is not None:
            check_inside(within, dst_key)
        fs, src = self._target(src_key)
        _, dst = self._target(dst_key)
        with reporting_full(dst_key):
            if self.object_store:
                fs.cp_file(src, dst)
            else:
                self._via_temp(fs, dst, lambda temp: fs.cp_file(src, temp))
        return int(fs.size(dst))

    def delete(self, key: str) -> None:
        fs, path = self._target(key)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)

    def delete_tree(self, key: str) -> None:
        """Remove everything under the folder ``key`` (staging areas); failures are logged."""
        fs, path = self._target(key)
        try:
            fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not remove %s from %s: %s", key, self._url, exc)

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        """A temporary local copy of the file under ``key``, removed after the block."""
        fs, path = self._target(key)
        with tempfile.TemporaryDirectory(prefix="jobengine-") as tmp:
            local = Path(tmp) / path.rpartition("/")[2]
            fs.get_file(path, str(local))
            yield local

    def list_files(
        self, key: str, *, recursive: bool = False, root: str | None = None
    ) -> list[str]:
        """The files under the folder ``key`` as sorted keys (listed afresh: no cached listing);
        object names that are not valid keys (``a//b``, ``..``) are left out."""
        if root is not None:
            check_inside(root, key, allow_same=True)
        fs, path = self._target(key)
        prefix = "/".join(check_key(key))
        with contextlib.suppress(Exception):
            fs.invalidate_cache(path)
        try:
            if recursive:
                names = [str(n) for n in fs.find(path, withdirs=False)]
            else:
                entries = fs.ls(path, detail=True)
                names = [str(e["name"]) for e in entries if e.get("type") == "file"]
        except (FileNotFoundError, NotADirectoryError):
            return []
        keys: list[str] = []
        base = path.strip("/") + "/"
        for name in names:
            relative = name.strip("/")
            if not relative.startswith(base) or name.endswith("/"):
                continue
            candidate = f"{prefix}/{relative.removeprefix(base)}"
            try:
                check_key(candidate)
            except StorageError:
                continue
            keys.append(candidate)
        return sorted(set(keys))

    def list_folders(self, key: str) -> list[str]:
        """The folders (prefixes that hold files, on an object store) directly in ``key``."""
        fs, path = self._target(key)
        with contextlib.suppress(Exception):
            fs.invalidate_cache(path)
        try:
            entries = fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = {str(e["name"]).rstrip("/").rpartition("/")[2] for e in entries
                 if e.get("type") == "directory"}  # fmt: skip
        return sorted(n for n in names if n not in ("", ".", ".."))

    def iter_files(self, key: str) -> Iterator[StoredFile]:
        """The files under the folder ``key``, listed afresh one folder at a time (``fs.walk``)."""
        fs, path = self._target(key)
        prefix = "/".join(check_key(key))
        base = path.strip("/") + "/"
        with contextlib.suppress(Exception):
            fs.invalidate_cache(path)
        try:
            for _, _, files in fs.walk(path, detail=True):
                for info in files.values():
                    name = str(info.get("name", ""))
                    relative = name.strip("/")
                    if not relative.startswith(base) or name.endswith("/"):
                        continue
                    candidate = f"{prefix}/{relative.removeprefix(base)}"
                    try:
                        check_key(candidate)
                    except StorageError:
                        continue
                    yield StoredFile(candidate, _mtime(info))
        except (FileNotFoundError, NotADirectoryError):
            return

    def open_within(self, folder: str, key: str, *, root: str | None = None) -> BinaryIO:
        """Open ``key`` if it is inside ``folder`` (object stores have no symlinks)."""
        if root is not None:
            check_inside(root, folder, allow_same=True)
        check_inside(folder, key)
        return self.open(key)

    @contextmanager
    def local_dir(self, key: str) -> Iterator[Path]:
        """A temporary local folder; its files are uploaded under ``key/`` when the block ends
        without an error (each atomically), and the folder is removed either way."""
        check_key(key)
        with tempfile.TemporaryDirectory(prefix="jobengine-") as tmp:
            folder = Path(tmp)
            yield folder
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                self.put_file(file, f"{key}/{file.relative_to(folder).as_posix()}")
