"""Files named on this machine (``jobengine submit FILE``, ``jobengine assets import PATH...``,
:func:`jobengine.assets.catalog.import_files`): read as hostile input, like an upload.

* Regular files only: a FIFO, socket or device (``/dev/zero``) is refused when opened, without
  blocking (``O_NONBLOCK``, then ``fstat``), never read.
* A cap on what is read: a document at most its parser's limit, a file at most the upload limit
  (``JOBENGINE_UPLOAD_MAX_BYTES``); a file that grows while it is read is cut off and refused.
* A folder is walked without following symlinked folders; a symlinked file counts only when it
  resolves to a regular file inside the folder named (``ln -s /etc/passwd x.png`` is skipped, so
  is a link to ``/proc/self/environ``). What is skipped is reported with the reason.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from jobengine.errors import InvalidParameter, IpsFault, LimitExceeded

__all__ = ["LocalFile", "Skipped", "copy_capped", "open_regular", "plan_files", "read_capped"]

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    """A file to import: the path to read (a symlink inside a folder: its target), its name,
    and its folder relative to the folder named (``""``: that folder, or a file named alone)."""

    path: Path
    name: str
    subfolder: str = ""


@dataclass(frozen=True)
class Skipped:
    """An entry of a folder that is not imported, and why."""

    path: Path
    reason: str


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file; InvalidParameter otherwise (a FIFO
    with no writer, a device, a socket: none of them blocks the open or is read)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise InvalidParameter(f"{path} is a folder, not a file") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidParameter(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_capped(path: Path, limit: int, *, too_large: type[IpsFault] = LimitExceeded) -> bytes:
    """The bytes of the regular file ``path``; ``too_large`` beyond ``limit`` bytes (never more
    than ``limit + 1`` are read)."""
    with open_regular(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise too_large(f"{path} is larger than {limit} bytes")
    return data


def copy_capped(src: BinaryIO, out: BinaryIO, limit: int, name: str) -> int:
    """Copy ``src`` to ``out``; LimitExceeded (after at most ``limit`` + one chunk) when it holds
    more than ``limit`` bytes. Returns the bytes copied."""
    copied = 0
    while chunk := src.read(CHUNK):
        copied += len(chunk)
        if copied > limit:
            raise LimitExceeded(f"{name} is larger than {limit} bytes (JOBENGINE_UPLOAD_MAX_BYTES)")
        out.write(chunk)
    return copied


def plan_files(paths: Iterable[Path], limit: int) -> tuple[list[LocalFile], list[Skipped]]:
    """The files to import from ``paths`` (files, or folders walked) in a stable order, and the
    entries of folders that are skipped. A path named on its own that cannot be imported (gone,
    not a regular file, over ``limit``) raises InvalidParameter/LimitExceeded before anything is
    imported: it was asked for by name."""
    files: list[LocalFile] = []
    skipped: list[Skipped] = []
    for path in paths:
        if path.is_dir():
            for entry in _walk(path, limit):
                if isinstance(entry, Skipped):
                    skipped.append(entry)
                else:
                    files.append(entry)
            continue
        refusal = _refusal(path, limit)
        if refusal is not None:
            error = LimitExceeded if "larger than" in refusal else InvalidParameter
            raise error(f"{path} {refusal}")
        files.append(LocalFile(path, path.name))
    return files, skipped


def _refusal(path: Path, limit: int) -> str | None:
    """Why a file (symlinks followed) cannot be imported, or None."""
    try:
        info = path.stat()
    except (OSError, RuntimeError):
        return "cannot be read (missing, a broken link or a link loop)"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_size > limit:
        return f"is larger than {limit} bytes (JOBENGINE_UPLOAD_MAX_BYTES)"
    return None


def _walk(root: Path, limit: int) -> Iterator[LocalFile | Skipped]:
    """The files under the folder ``root`` (symlinked folders not entered), sorted per folder."""
    real_root = root.resolve(strict=True)
    for here, folders, names in os.walk(root, followlinks=False):
        folders.sort()
        base = Path(here)
        for name in sorted(folders):
            if (base / name).is_symlink():
                yield Skipped(base / name, "is a symlinked folder (not followed)")
        relative = base.relative_to(root).as_posix()
        subfolder = "" if relative == "." else relative
        for name in sorted(names):
            yield _entry(base / name, subfolder, real_root, limit)


def _entry(path: Path, subfolder: str, real_root: Path, limit: int) -> LocalFile | Skipped:
    if path.is_symlink():
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return Skipped(path, "is a broken symlink or a symlink loop")
        if not real.is_relative_to(real_root):
            return Skipped(path, "is a symlink that leads out of the folder")
        path_to_read = real
    else:
        path_to_read = path
    refusal = _refusal(path_to_read, limit)
    if refusal is not None:
        return Skipped(path, refusal)
    return LocalFile(path_to_read, path.name, subfolder)
