"""The janitor: deletes stored files no asset refers to, left behind by killed workers.

Three kinds write a file before the store transaction that records it, so that nothing
half-written is ever visible: uploads (:mod:`jobengine.assets.ingest`,
``<company>/uploads/<random>/<name>``), RipPdfsJob pages (:mod:`jobengine.kinds.rip_pdfs`,
``<company>/pages/<pdf id>/<token>/...``) and OptimizeImagesJob pyramids
(:mod:`jobengine.kinds.optimize_images`, ``<company>/optimized/<asset id>.ptif``). A worker
killed between the write and the commit, or between the commit and the deletion of the file an
asset held before, leaves a file no row points at. :func:`sweep` deletes such files when

* they are under one of those three prefixes of a company in the store (``<company>`` is
  ``safe_name(handle)``), never anywhere else: not the imported assets (``<company>/assets``),
  export ZIPs (``<company>/exports``), publish trees (``_publish``, ``_serverdir``), the FTP
  upload root (``ftp``) or the staging of running runs (``_staging``); a company whose key is one
  of those top-level names is not swept, since its prefixes would be another feature's folders;
* no asset row refers to them (``Asset.file_key``, ``Asset.optimized_key``), checked in batches
  right before each batch is deleted;
* they are older than ``JOBENGINE_ORPHAN_GRACE`` (24 h): a file a live worker is writing, or
  has just written and is about to record, is never touched. The age is checked again per file
  right before its deletion (a pyramid is rewritten in place).

It also removes what interrupted writes and finishes leave, wherever they are:

* temporary files of atomic writes (``.tmp-*``: :meth:`~jobengine.storage.Storage.writer`
  writes beside the target, then renames) under a company's ``exports`` and ``assets`` and
  under ``_publish`` and ``_serverdir``, once they were last written more than the task time
  limit (plus a minute) ago: no live writer can be that old, since its task would have been
  killed (the uploads, pages and pyramids folders get theirs removed by the rule above);
* the staging folders of ended runs (``_staging/run-<id>``, the inputs of a finishing step):
  a finish removes them once the end of its run is committed, so only a worker killed between
  that commit and the removal leaves one (or a run deleted from the store).

The listing is streamed and at most ``limit`` files (1000) go per sweep; the next sweep goes on
from there (the files already deleted are no longer listed). Beat runs it at most once an hour
on the leader, in a thread of its own (:func:`sweep_in_background`); ``jobengine janitor
[--dry-run]`` runs it by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from sqlalchemy import select

from jobengine.runtime import Runtime, get_runtime
from jobengine.storage import Storage, safe_name
from jobengine.store.schema import Asset, Company, Run
from jobengine.store.states import ACTIVE_RUNS

__all__ = [
    "BATCH",
    "MAX_DELETIONS",
    "RESERVED_TOP",
    "SWEPT_FOLDERS",
    "SweepReport",
    "old_files",
    "remove_orphans",
    "stale_temp_files",
    "sweep",
    "sweep_in_background",
    "swept_prefixes",
    "unreferenced",
    "unused_staging",
]

logger = logging.getLogger(__name__)

SWEPT_FOLDERS = ("uploads", "pages", "optimized")  # under <company>/
RESERVED_TOP = frozenset({"ftp", "_publish", "_serverdir", "_staging"})  # other features' roots
MAX_DELETIONS = 1000  # files deleted per sweep at most
BATCH = 500  # keys looked up in one query
TEMP_PREFIX = ".tmp-"  # the storages' temporary files of atomic writes
TEMP_FOLDERS = ("exports", "assets")  # under <company>/, besides the swept folders
STAGING = "_staging"


@dataclass
class SweepReport:
    """What one sweep did: the keys deleted (or, in a dry run, that would be), how many files
    it looked at, and whether it stopped at the cap (more may be left for the next sweep)."""

    dry_run: bool = False
    deleted: list[str] = field(default_factory=list)
    scanned: int = 0
    capped: bool = False
    temp_files: list[str] = field(default_factory=list)  # stale .tmp-* files removed
    staging: list[str] = field(default_factory=list)  # staging folders of ended runs removed


def swept_prefixes(runtime: Runtime) -> list[str]:
    """The storage folders the janitor sweeps: ``<company>/{uploads,pages,optimized}`` of every
    company in the store whose key is no other feature's top-level folder."""
    with runtime.store.read() as session:
        handles = session.scalars(select(Company.handle)).all()
    keys = sorted({safe_name(str(h)) for h in handles})
    for key in keys:
        if key in RESERVED_TOP:
            logger.warning("janitor: company folder %r is also a reserved root: not swept", key)
    return [f"{key}/{sub}" for key in keys if key not in RESERVED_TOP for sub in SWEPT_FOLDERS]


def old_files(storage: Storage, prefixes: Iterable[str], cutoff: float) -> Iterator[str]:
    """The keys of the files under ``prefixes`` last written before ``cutoff`` (POSIX seconds),
    streamed; a file whose time the storage does not tell is never old."""
    for prefix in prefixes:
        for found in storage.iter_files(prefix):
            if found.modified is not None and found.modified < cutoff:
                yield found.key


def unreferenced(runtime: Runtime, keys: list[str]) -> list[str]:
    """Those of ``keys`` (one batch) that no asset row refers to, in their order."""
    if not keys:
        return []
    with runtime.store.read() as session:
        used = set(session.scalars(select(Asset.file_key).where(Asset.file_key.in_(keys))))
        used |= set(
            session.scalars(select(Asset.optimized_key).where(Asset.optimized_key.in_(keys)))
        )
    return [k for k in keys if k not in used]


def _still_old(storage: Storage, key: str, cutoff: float) -> bool:
    try:
        modified = storage.modified(key)
    except FileNotFoundError:
        return False
    return modified is not None and modified < cutoff


def remove_orphans(
    runtime: Runtime, keys: list[str], cutoff: float, *, dry_run: bool = False, limit: int = BATCH
) -> list[str]:
    """Delete those of ``keys`` (one batch, listed earlier) that no row refers to now and that
    are still older than ``cutoff``; at most ``limit``. Returns the keys deleted (or that would
    be, in a dry run); a file that cannot be deleted is logged and left for the next sweep."""
    storage = runtime.storage
    done: list[str] = []
    for key in unreferenced(runtime, keys):  # looked up again: a row may have come meanwhile
        if len(done) >= limit:
            break
        try:
            if not _still_old(storage, key, cutoff):
                continue
            if not dry_run:
                storage.delete(key)
        except Exception:
            logger.warning("janitor: could not delete %s", key, exc_info=True)
            continue
        logger.info("janitor: %s %s", "would delete" if dry_run else "deleted", key)
        done.append(key)
    return done


def sweep(
    runtime: Runtime | None = None,
    *,
    dry_run: bool = False,
    limit: int = MAX_DELETIONS,
    grace: float | None = None,
    now: float | None = None,
    temp_grace: float | None = None,
) -> SweepReport:
    """One pass: delete at most ``limit`` unreferenced files older than ``grace`` seconds
    (default ``JOBENGINE_ORPHAN_GRACE``) from the swept prefixes; then the ``.tmp-*`` files
    older than ``temp_grace`` (default: the task time limit and a minute) and the staging of
    ended runs."""
    runtime = runtime or get_runtime()
    grace = runtime.settings.orphan_grace if grace is None else grace
    now = time.time() if now is None else now
    cutoff = now - grace
    report = SweepReport(dry_run=dry_run)
    _remove_leftovers(runtime, report, now, limit, temp_grace)
    listing = old_files(runtime.storage, swept_prefixes(runtime), cutoff)
    while len(report.deleted) < limit:
        batch = list(islice(listing, BATCH))
        if not batch:
            return report
        report.scanned += len(batch)
        left = limit - len(report.deleted)
        report.deleted += remove_orphans(runtime, batch, cutoff, dry_run=dry_run, limit=left)
    report.capped = True
    return report


def _company_keys(runtime: Runtime) -> list[str]:
    with runtime.store.read() as session:
        handles = session.scalars(select(Company.handle)).all()
    return sorted({safe_name(str(h)) for h in handles} - RESERVED_TOP)


def stale_temp_files(runtime: Runtime, cutoff: float) -> Iterator[str]:
    """The ``.tmp-*`` files last written before ``cutoff`` under the folders of writes that the
    orphan rule does not sweep (exports, imported assets, publish trees), streamed."""
    prefixes = [f"{c}/{sub}" for c in _company_keys(runtime) for sub in TEMP_FOLDERS]
    for found in old_files(runtime.storage, [*prefixes, "_publish", "_serverdir"], cutoff):
        if found.rpartition("/")[2].startswith(TEMP_PREFIX):
            yield found


def unused_staging(runtime: Runtime) -> list[str]:
    """The staging folders (``_staging/run-<id>``) of runs that have ended or are gone (empty
    ones too: a removal killed half way leaves its folders)."""
    folders = [
        name
        for name in runtime.storage.list_folders(STAGING)
        if name.startswith("run-") and name[4:].isdigit()
    ]
    if not folders:
        return []
    ids = {int(f[4:]): f for f in folders}
    with runtime.store.read() as session:
        active = set(
            session.scalars(select(Run.id).where(Run.id.in_(list(ids)), Run.state.in_(ACTIVE_RUNS)))
        )
    return sorted(f"{STAGING}/{name}" for run_id, name in ids.items() if run_id not in active)


def _remove_leftovers(
    runtime: Runtime, report: SweepReport, now: float, limit: int, temp_grace: float | None
) -> None:
    """Remove stale temporary files and the staging of ended runs (up to ``limit`` each)."""
    storage = runtime.storage
    grace = runtime.settings.task_time_limit + 60.0 if temp_grace is None else temp_grace
    for key in islice(stale_temp_files(runtime, now - grace), limit):
        try:
            if _still_old(storage, key, now - grace):
                if not report.dry_run:
                    storage.delete(key)
                report.temp_files.append(key)
        except Exception:
            logger.warning("janitor: could not delete %s", key, exc_info=True)
    for folder in unused_staging(runtime)[:limit]:
        if not report.dry_run:
            storage.delete_tree(folder)
        report.staging.append(folder)
    for key in [*report.temp_files, *report.staging]:
        logger.info("janitor: %s %s", "would delete" if report.dry_run else "deleted", key)


def _sweep_quietly() -> None:
    try:
        report = sweep()
    except Exception:  # the next sweep tries again
        logger.exception("janitor sweep failed")
        return
    if report.deleted or report.temp_files or report.staging:
        logger.info(
            "janitor deleted %d unreferenced file(s), %d temporary file(s), %d staging folder(s)",
            len(report.deleted),
            len(report.temp_files),
            len(report.staging),
        )


_SWEEPER: list[threading.Thread] = []  # the last sweep's thread
_SWEEPER_LOCK = threading.Lock()


def sweep_in_background() -> bool:
    """Run :func:`sweep` in a daemon thread, unless the last one still runs (beat calls it: a
    long listing must not hold up its schedules). True when one started; never raises."""
    try:
        with _SWEEPER_LOCK:
            if _SWEEPER and _SWEEPER[-1].is_alive():
                return False
            thread = threading.Thread(target=_sweep_quietly, name="jobengine janitor", daemon=True)
            _SWEEPER[:] = [thread]
            thread.start()
            return True
    except Exception:
        logger.exception("could not start the janitor")
        return False
