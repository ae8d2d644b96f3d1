"""Asset files: keys relative to a storage root, atomic writes, no path escapes.

``JOBENGINE_STORAGE`` names the storage. A local directory (or a ``file://`` URL) is a
:class:`LocalStorage`; any other fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://``)
is an :class:`FsspecStorage`, with ``JOBENGINE_STORAGE_OPTIONS`` (a JSON object) as its fsspec
storage options (fsspec is imported only then). Both implement the :class:`Storage` protocol.
A fleet points every worker at the same storage: a shared directory (NFS) or an object store.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobengine.storage.base import (
    LeadsOut,
    Storage,
    StorageError,
    StorageFull,
    StoredFile,
    check_inside,
    check_key,
    safe_name,
)
from jobengine.storage.local import LocalStorage
from jobengine.storage.remote import FsspecStorage

__all__ = [
    "FsspecStorage",
    "LeadsOut",
    "LocalStorage",
    "Storage",
    "StorageError",
    "StorageFull",
    "StoredFile",
    "check_inside",
    "check_key",
    "local_root",
    "open_storage",
    "safe_name",
]

_LOCAL_SCHEMES = ("file://", "local://")


def local_root(url: str) -> Path | None:
    """The directory of a local storage URL (a path, ``file://`` or ``local://``), else None."""
    for scheme in _LOCAL_SCHEMES:
        if url.startswith(scheme):
            return Path(url.removeprefix(scheme) or ".").absolute()
    if "://" in url or "::" in url:  # any other protocol, or an fsspec chain
        return None
    return Path(url).absolute()


def open_storage(url: str, options: Mapping[str, Any] | None = None) -> Storage:
    """The storage named by ``url``: LocalStorage for a local root, else FsspecStorage."""
    root = local_root(url)
    if root is not None:
        return LocalStorage(root)
    return FsspecStorage(url, options)
