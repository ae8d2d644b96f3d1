"""What the publish kinds share: plan the assets marked for publish, copy one asset's file to a
published key atomically, mark it published, and write JSON catalogs.

A publish kind says which asset types it publishes (:attr:`PublishKind.file_types`, copied, and
:attr:`PublishKind.entry_types`, sets without files that are only listed), where their files go
(:meth:`PublishKind.destination`), whether a run is incremental and whether it marks what it
published ``Published``. The runner does the rest.

Every published key is ``<prefix>/<folder path>/<name>`` from the catalog, checked with the
storage key rules (no ``..``, ``.``, empty parts, NULs or backslashes; a name is one part): a
folder or name that breaks them fails its own asset with an error row. Copies are atomic
(:meth:`jobengine.storage.Storage.writer`): a worker killed mid-copy leaves the old file or none
at the published key, never a part, and a re-run copies the same bytes again.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import or_, select

from jobengine.errors import NotSupported
from jobengine.kinds.base import (
    AssetRef,
    ItemOutcome,
    JobKindHandler,
    PlannedItem,
    RunContext,
    SubmitReads,
    asset_gone,
)
from jobengine.model import (
    ImageRenderingPublishJob,
    ImageServingPublishJob,
    ServerDirectoryPublishJob,
    VideoPublishJob,
)
from jobengine.net.callback_url import check_completion_url
from jobengine.storage import LeadsOut, Storage, StorageError, check_key
from jobengine.store.schema import Asset, Folder, utcnow

__all__ = [
    "PUBLISHABLE",
    "PublishKind",
    "asset_path",
    "copy_between",
    "publish_failure",
    "published_catalog",
    "published_key",
    "write_json",
    "write_text",
]

logger = logging.getLogger(__name__)

Pub = TypeVar(
    "Pub",
    ImageServingPublishJob,
    ImageRenderingPublishJob,
    VideoPublishJob,
    ServerDirectoryPublishJob,
)

# The publish states of an asset a publish job takes (MarkedForPublish: never published yet).
PUBLISHABLE = ("MarkedForPublish", "Published")


def asset_path(folder: str, name: str) -> str:
    """An asset's path as publish logs and catalogs show it: ``/pics/a.jpg``."""
    return f"{folder.rstrip('/')}/{name}"


def published_key(prefix: str, folder: str, name: str) -> str:
    """The storage key of an asset published under ``prefix``; StorageError for a folder path
    or name that breaks the key rules (a name must be one path part)."""
    if not name or "/" in name:
        raise StorageError(f"asset name {name!r} is not a single path part")
    inner = folder.strip("/")
    key = f"{prefix}/{inner}/{name}" if inner else f"{prefix}/{name}"
    check_key(key)
    return key


def copy_between(
    source: Storage, src_key: str, target: Storage, dst_key: str, *, within: str | None = None
) -> int:
    """Copy a stored file to ``dst_key`` of ``target`` (the same storage or another) atomically;
    returns its size. A missing source raises FileNotFoundError before anything is written;
    a destination that leads out of the folder ``within`` (a symlinked folder in a shared
    directory) raises LeadsOut before anything is written there."""
    if target is source:
        return source.copy(src_key, dst_key, within=within)
    with source.open(src_key) as src, target.writer(dst_key, within=within) as out:
        shutil.copyfileobj(src, out, 1024 * 1024)
    return target.size(dst_key)


def publish_failure(exc: Exception) -> str:
    """What a failed copy says in the job log: the cause in words, never a storage key or an
    exception class (those go to the worker log)."""
    if isinstance(exc, LeadsOut):
        return "the destination folder is a link that leads out of the company's folder"
    if isinstance(exc, FileNotFoundError):  # ours (no errno) says which; the system's a path
        return str(exc) if exc.errno is None else "the asset's file is missing"
    if isinstance(exc, StorageError):
        return "its folder path or name cannot be used as a file path"
    if isinstance(exc, OSError) and exc.strerror:
        return f"the file could not be written ({exc.strerror.lower()})"
    return "the file could not be written"


def write_text(storage: Storage, key: str, text: str) -> None:
    """Write a text file atomically."""
    with storage.writer(key) as fh:
        fh.write(text.encode())


def write_json(storage: Storage, key: str, value: Any, *, indent: int | None = 1) -> None:
    """Write a JSON document atomically (by default one entry per line: readable, diffable)."""
    write_text(storage, key, json.dumps(value, indent=indent))


def published_catalog(ctx: RunContext[Any], types: tuple[str, ...]) -> list[tuple[Asset, str]]:
    """The run's company's ``Published`` assets of these types with their folder paths, in id
    order (what a publish run's catalogs list)."""
    with ctx.runtime.store.read() as session:
        rows = session.execute(
            select(Asset, Folder.path)
            .join(Folder, Folder.id == Asset.folder_id)
            .where(
                Asset.company_id == ctx.company_id,
                Asset.publish_state == "Published",
                Asset.type.in_(types),
            )
            .order_by(Asset.id)
        ).all()
    return [(asset, str(path)) for asset, path in rows]


class PublishKind(JobKindHandler[Pub]):
    """Base of the publish kinds: subclasses set the class attributes and :meth:`destination`,
    and write their catalogs in :meth:`finish`."""

    file_types: ClassVar[tuple[str, ...]]  # asset types whose files are copied
    entry_types: ClassVar[tuple[str, ...]] = ()  # asset types (sets) only listed, no file
    success_log: ClassVar[str]
    error_log: ClassVar[str]
    warning_log: ClassVar[str]
    marks_published: ClassVar[bool] = True  # set publish_state/published_at of what it copied
    # the Asset column holding when this publish last copied an asset (its incremental runs
    # take what changed since): each publish target keeps its own
    published_column: ClassVar[str] = "published_at"

    @property
    def types(self) -> tuple[str, ...]:
        return (*self.file_types, *self.entry_types)

    def incremental(self, job: Pub) -> bool:
        """Whether a run publishes only what is new or changed since its last publish."""
        return True

    def destination(self, ctx: RunContext[Pub]) -> tuple[Storage, str]:
        """The storage and key prefix published files go to."""
        raise NotImplementedError

    def refusal(self, ctx: RunContext[Pub], asset: Asset, folder: str) -> str | None:
        """Why this asset cannot be published, in words for its error row (None: it can).
        Called before its file is copied; may read the file (an OSError fails the asset)."""
        return None

    def log_asset(self, asset: Asset) -> AssetRef:
        """The asset as this kind's log rows name it."""
        return AssetRef.of(asset)

    # --- submit ---------------------------------------------------------------------------

    def check(self, reads: SubmitReads, job: Pub) -> None:
        check_completion_url(
            self.element, job
        )  # called when a run ends (jobengine.notices.callbacks)
        context = getattr(job, "context_handle", None)
        if context is not None and context.strip():
            raise NotSupported(
                f"{self.element}/contextHandle is not supported by this server yet: "
                "it publishes to the company's one publish context",
                field=f"{self.element}/contextHandle",
            )

    # --- run ------------------------------------------------------------------------------

    def plan(self, ctx: RunContext[Pub]) -> list[PlannedItem]:
        query = select(Asset.handle).where(
            Asset.company_id == ctx.company_id,
            Asset.type.in_(self.types),
            Asset.publish_state.in_(PUBLISHABLE),
        )
        if self.incremental(ctx.job):
            published_at = getattr(Asset, self.published_column)
            query = query.where(or_(published_at.is_(None), Asset.updated_at > published_at))
        with ctx.runtime.store.read() as session:
            return [PlannedItem(key=h) for h in session.scalars(query.order_by(Asset.id))]

    def process(self, ctx: RunContext[Pub], item: PlannedItem) -> ItemOutcome:
        found = ctx.asset(item.key)
        if found is None:
            return asset_gone(item.key, self.error_log)
        asset, folder = found
        ref, path = self.log_asset(asset), asset_path(folder, asset.name)
        if asset.type not in self.types or asset.publish_state not in PUBLISHABLE:
            skipped = {"name": asset.name}
            return ItemOutcome(
                "warning",
                self.warning_log,
                "skipped {name}: its type or publish state changed since the job started",
                ref,
                args=skipped,
            )
        result: dict[str, Any] = {"handle": asset.handle, "type": asset.type, "path": path}
        size = 0
        started = utcnow()
        try:
            storage, prefix = self.destination(ctx)
            key = published_key(prefix, folder, asset.name)
            refused = self.refusal(ctx, asset, folder)
            if refused is not None:
                why = {"name": asset.name, "error": refused}
                return ItemOutcome(
                    "error", self.error_log, "cannot publish {name}: {error}", ref, args=why
                )
            if asset.type in self.file_types:
                if asset.file_key is None:
                    raise FileNotFoundError("the asset has no file")
                size = copy_between(
                    ctx.runtime.storage, asset.file_key, storage, key, within=prefix
                )
                result["size"] = size
        except (OSError, StorageError) as exc:
            logger.warning("run %s: cannot publish %s: %r", ctx.run_id, asset.handle, exc)
            failed = {"name": asset.name, "error": publish_failure(exc)}
            return ItemOutcome(
                "error", self.error_log, "cannot publish {name}: {error}", ref, args=failed
            )
        if self.marks_published:
            self._mark_published(ctx, asset.id, started)
        logged = {"path": path}
        return ItemOutcome(
            "success", self.success_log, "published {path}", ref, size, result, logged
        )

    def _mark_published(self, ctx: RunContext[Pub], asset_id: int, copied_from: datetime) -> None:
        """Mark the asset published as of the start of its copy: a change made while it was
        being copied is newer, so the next incremental publish takes it again."""
        with ctx.runtime.store.write() as session:
            stored = session.get(Asset, asset_id)
            if stored is not None:
                stored.publish_state = "Published"
                setattr(stored, self.published_column, copied_from)
