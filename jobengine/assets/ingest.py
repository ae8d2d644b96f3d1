"""Turning a byte stream into an asset: how UploadUrlsJob and UploadDirectoryJob store files.

:func:`ingest` takes a destination (company, IPS folder path, file name), the upload rules of
the job (:class:`UploadRules`) and a source of bytes, and:

1. looks for a same-named asset in that folder first: with ``overwrite`` false it is skipped
   without reading the source at all;
2. streams the bytes into storage under a key of their own (``<company>/uploads/<random>/<name>``)
   through ``storage.writer``: nothing is visible before the last byte, and a source that fails
   or is cut off leaves nothing behind;
3. sniffs the asset type from the first bytes (:func:`jobengine.assets.catalog.asset_type_for`:
never
   the name, except for Image Rendering's vignette, cabinet and window covering files, whose
   formats are not public);
4. records the asset in one short store transaction (:func:`jobengine.assets.catalog.record_file`):
   created, or replaced in place (same handle, new file, ``updated_at`` bumped), with its publish
   state set by ``readyForPublish`` and ``preservePublishState``; the rules are checked again
   inside it, so a same-named asset created meanwhile is never overwritten against the rules;
   Its upload crop (:mod:`jobengine.assets.crops`) is set in that same transaction: an Image the job
   crops is measured in the conversion pool between steps 2 and 4 (a corrupt or oversized image
   then fails the upload and nothing is recorded), and ``preserveCrop`` decides what a replaced
   asset keeps;
5. deletes, once committed, the file a replaced asset held (or the new file, if the asset was
   skipped after all).

Every upload writes a new key, so a reader of the old file (a publish copying it) never sees a
mix, and ``overwrite`` false can never clobber an existing asset's file. An item run again after
its worker died is recognised by its ``ref`` (stored on the asset) and counts as done.

Names are hostile: :func:`clean_folder`, :func:`clean_name` and :func:`split_dest_path` refuse
``..``, absolute escapes (drive letters, ``//host``, backslashes), NUL and other control
characters and over-long names with :class:`BadPath`; asset names then go through
:func:`jobengine.storage.safe_name`, folders through
:func:`jobengine.assets.catalog.ensure_folder`'s rules, as imports do.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from jobengine.assets.catalog import asset_named, asset_type_for, ensure_folder, record_file
from jobengine.assets.crops import NO_CROP, CropOrder, Measured, measure
from jobengine.model.request import BIDI_CONTROLS, invisible
from jobengine.runtime import Runtime
from jobengine.storage import safe_name
from jobengine.store.schema import Asset, Company, Folder

__all__ = [
    "MAX_FOLDER_CHARS",
    "MAX_NAME_CHARS",
    "BadPath",
    "Ingested",
    "UploadRules",
    "clean_folder",
    "clean_name",
    "ingest",
    "ingest_ref",
    "join_folder",
    "split_dest_path",
]

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 200  # what safe_name keeps: a longer name is refused, never silently cut
MAX_FOLDER_CHARS = 1000  # folders.path holds 1024
HEAD_BYTES = 64  # what asset_type_of looks at
_DRIVE = re.compile(r"[A-Za-z]:(/|$)")
_ATTEMPTS = 3  # store transactions tried when a concurrent upload creates the same folder/name


class BadPath(ValueError):
    """A destination path or name that is refused; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise BadPath("holds a NUL character")
    control = next((c for c in text if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise BadPath(f"holds the control character {control!r}")
    if "\\" in text:
        raise BadPath("holds a backslash")
    bidi = BIDI_CONTROLS.search(text)
    if bidi is not None:
        raise BadPath(f"holds the bidi control {bidi[0]!r} (a name shown reordered)")


def _segments(path: str) -> list[str]:
    """The folder names of a path relative to the company root; ``.`` and empty parts drop."""
    _check_text(path)
    if path.startswith("//") or _DRIVE.match(path):
        raise BadPath("is an absolute path outside the company's folders")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise BadPath("leaves the company's folders with '..'")
        if invisible(part):
            raise BadPath(f"has a folder named {part!r}")
        if len(part) > MAX_NAME_CHARS:
            raise BadPath(f"has a folder name longer than {MAX_NAME_CHARS} characters")
    return parts


def clean_folder(path: str) -> str:
    """An IPS folder path as stored (``/a/b``; ``""`` and ``/`` are the company root)."""
    folder = "/" + "/".join(_segments(path))
    if len(folder) > MAX_FOLDER_CHARS:
        raise BadPath(f"is longer than {MAX_FOLDER_CHARS} characters")
    return folder


def join_folder(base: str, relative: str) -> str:
    """``relative`` (e.g. a subfolder of an upload directory) under the clean folder ``base``."""
    return clean_folder(f"{base.rstrip('/')}/{relative}")


def clean_name(name: str) -> str:
    """An asset name as stored: refused when hostile or over-long, then made safe."""
    _check_text(name)
    if "/" in name:
        raise BadPath("holds a '/'")
    if invisible(name):
        raise BadPath("names no file")
    if len(name) > MAX_NAME_CHARS:
        raise BadPath(f"has a name longer than {MAX_NAME_CHARS} characters")
    return safe_name(name)


def split_dest_path(dest_path: str) -> tuple[str, str]:
    """An UploadUrl's ``destPath`` (IPS path and file name, from the company root) as a clean
    folder and name: ``pics/2024/a.jpg`` -> (``/pics/2024``, ``a.jpg``)."""
    _check_text(dest_path)
    if dest_path.endswith("/"):
        raise BadPath("names a folder, not a file")
    folder, _, name = dest_path.rpartition("/")
    if name == "..":
        raise BadPath("leaves the company's folders with '..'")
    clean = clean_folder(folder) if folder else "/"
    return clean, clean_name(name)


def ingest_ref(run_id: int, item_key: str) -> str:
    """The mark an upload item leaves on the asset it wrote (fits ``assets.ingest_ref``)."""
    return hashlib.sha256(f"{run_id}\x00{item_key}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class UploadRules:
    """What a job says about the assets it uploads."""

    overwrite: bool
    ready_for_publish: bool
    preserve_publish_state: bool | None = None  # None: the company default, which is "keep"
    crop: CropOrder = NO_CROP  # the upload crop and preserveCrop (jobengine/assets/crops.py)

    def publish_state(self, existing: str | None) -> str:
        """The publish state of an asset created (``existing`` None) or replaced."""
        fresh = "MarkedForPublish" if self.ready_for_publish else "NotMarkedForPublish"
        if existing is None or self.preserve_publish_state is False:
            return fresh
        return existing


Outcome = Literal["created", "replaced", "skipped", "repeated"]


@dataclass(frozen=True)
class Ingested:
    """What an upload came to: ``created``, ``replaced``, ``skipped`` (a same-named asset exists
    and overwrite is false) or ``repeated`` (this item stored it before its worker died)."""

    outcome: Outcome
    path: str  # folder and name, e.g. /pics/a.jpg
    handle: str
    name: str
    type: str
    size: int
    crop: str | None = None  # the asset's crop once recorded
    crop_warning: str | None = None  # why the job's crop was not set


def _path(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}"


def _ingested(
    outcome: Outcome, folder: str, asset: Asset, crop_warning: str | None = None
) -> Ingested:
    path = _path(folder, asset.name)
    return Ingested(
        outcome, path, asset.handle, asset.name, asset.type, asset.size, asset.crop, crop_warning
    )


def _existing(runtime: Runtime, company_id: int, folder: str, name: str) -> Asset | None:
    with runtime.store.read() as session:
        return session.scalar(
            select(Asset)
            .join(Folder, Folder.id == Asset.folder_id)
            .where(Asset.company_id == company_id, Folder.path == folder, Asset.name == name)
        )


def _store(source: Iterable[bytes], runtime: Runtime, key: str) -> tuple[bytes, int]:
    """Stream ``source`` into ``key`` atomically; returns its first bytes and its size."""
    head = b""
    size = 0
    with runtime.storage.writer(key) as out:
        for chunk in source:
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            out.write(chunk)
            size += len(chunk)
    return head, size


def ingest(
    runtime: Runtime,
    company_id: int,
    folder: str,
    name: str,
    source: Callable[[], Iterable[bytes]],
    *,
    rules: UploadRules,
    ref: str,
) -> Ingested:
    """Store the bytes of ``source()`` as the asset ``name`` in the clean folder ``folder``.

    ``source`` is called only when the file is to be stored; whatever it raises (a failed
    fetch, an unreadable file) or storage raises propagates, and nothing is left behind.
    """
    found = _existing(runtime, company_id, folder, name)
    if found is not None and found.ingest_ref == ref:
        return _ingested("repeated", folder, found)
    if found is not None and not rules.overwrite:
        return _ingested("skipped", folder, found)
    with runtime.store.read() as session:
        company = session.get(Company, company_id)
        assert company is not None
        company_key = safe_name(company.handle)
    key = f"{company_key}/uploads/{secrets.token_hex(8)}/{name}"
    head, size = _store(source(), runtime, key)
    try:
        kind = asset_type_for(name, head)
        measured = None
        if kind == "Image" and rules.crop.decide(found.crop if found else None) == "compute":
            with runtime.storage.local_file(key) as local:
                measured = measure(rules.crop, local)  # in the conversion pool
        result, garbage = _record(
            runtime,
            company_id,
            folder,
            name,
            rules,
            ref=ref,
            kind=kind,
            key=key,
            size=size,
            measured=measured,
        )
    except BaseException:
        _delete_quietly(runtime, key)
        raise
    if garbage:
        _delete_quietly(runtime, garbage)
    return result


def _record(
    runtime: Runtime,
    company_id: int,
    folder: str,
    name: str,
    rules: UploadRules,
    *,
    ref: str,
    kind: str,
    key: str,
    size: int,
    measured: Measured | None = None,
) -> tuple[Ingested, str | None]:
    """The asset row, in one transaction (tried again when a concurrent upload created the same
    folder or name first); returns the result and a file key to delete once committed."""
    for attempt in range(_ATTEMPTS):
        try:
            with runtime.store.write() as session:
                company = session.get(Company, company_id)
                assert company is not None
                folder_row = ensure_folder(session, company, folder)
                existing = asset_named(session, folder_row, name)
                if existing is not None and existing.ingest_ref == ref:
                    return _ingested("repeated", folder, existing), key
                if existing is not None and not rules.overwrite:
                    return _ingested("skipped", folder, existing), key
                before = None if existing is None else existing.publish_state
                decision = rules.crop.decide(None if existing is None else existing.crop)
                asset, old_key, created = record_file(
                    session, folder_row, name, kind, key=key, size=size
                )
                asset.publish_state = rules.publish_state(before)
                asset.ingest_ref = ref
                warning = None
                if kind != "Image" or decision == "clear":
                    asset.crop = None
                elif decision == "compute" and measured is not None:
                    asset.crop, warning = measured.crop, measured.warning
                session.flush()
                outcome: Outcome = "created" if created else "replaced"
                return _ingested(outcome, folder, asset, warning), old_key
        except IntegrityError:
            if attempt + 1 == _ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _delete_quietly(runtime: Runtime, key: str) -> None:
    try:
        runtime.storage.delete(key)
    except Exception:  # a file left behind is garbage, not a failed upload
        logger.warning("could not delete %s from storage", key, exc_info=True)
