"""ImageServingPublishJob: copy the images marked for publish to the Image Serving root.

The publish root is ``_publish/<company>/`` in storage: the images under their folder paths, a
``catalog.json`` describing them and ``presets.mac`` with the company's image presets (what an IS
publish pushes to the image servers). ``Incremental`` publishes what is new or changed since its
last publish, ``Full`` every marked image, ``FullWithSearch`` also writes ``search.json``.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, or_, select
from sqlalchemy.orm import Session

from jobengine.errors import NotSupported
from jobengine.kinds.base import (
    AssetRef,
    ItemOutcome,
    JobKindHandler,
    PlannedItem,
    RunContext,
    asset_in_folder,
)
from jobengine.storage import Storage, safe_name
from jobengine.store.schema import Asset, Folder, ImageFormat, utcnow

__all__ = ["ImageServingPublishKind"]

_PUBLISHABLE = ("MarkedForPublish", "Published")
_SUCCESS, _ERROR = "ImageServingPublishSuccess", "ImageServingPublishError"


def _root(ctx: RunContext) -> str:
    return f"_publish/{safe_name(ctx.company_handle)}"


class ImageServingPublishKind(JobKindHandler):
    element = "imageServingPublishJob"
    job_type = "ImageServingPublish"
    slug = "image_serving_publish"
    begin_log = "BeginImageServingPublish"
    end_log = "EndImageServingPublish"

    def check(self, db: Connection, company_id: int, job: Any) -> None:
        if getattr(job, "http_completion_url", None):
            raise NotSupported(
                "imageServingPublishJob/httpCompletionUrl is not supported by this server yet",
                field="imageServingPublishJob/httpCompletionUrl",
            )

    def plan(self, ctx: RunContext, session: Session) -> list[PlannedItem]:
        job: Any = ctx.job
        query = select(Asset.handle).where(
            Asset.company_id == ctx.company_id,
            Asset.type == "Image",
            Asset.publish_state.in_(_PUBLISHABLE),
        )
        if str(job.publish_type) == "Incremental":
            query = query.where(
                or_(Asset.published_at.is_(None), Asset.updated_at > Asset.published_at)
            )
        return [PlannedItem(key=h) for h in session.scalars(query.order_by(Asset.id))]

    def process(self, ctx: RunContext, item: PlannedItem) -> ItemOutcome:
        row = asset_in_folder(ctx, item.key)
        asset, folder = row if row is not None else (None, "")
        if asset is None or asset.file_key is None:
            gone, args = AssetRef(handle=item.key), {"asset": item.key}
            return ItemOutcome("error", _ERROR, "asset {asset} no longer exists", gone, args=args)
        ref = AssetRef.of(asset)
        path = f"{folder.rstrip('/')}/{asset.name}"
        try:
            size = ctx.runtime.storage.copy(asset.file_key, f"{_root(ctx)}/images{path}")
        except OSError as exc:
            failed = {"name": asset.name, "error": exc}
            return ItemOutcome("error", _ERROR, "cannot publish {name}: {error}", ref, args=failed)
        with ctx.runtime.store.write() as session:
            stored = session.get(Asset, asset.id)
            if stored is not None:
                stored.publish_state, stored.published_at = "Published", utcnow()
        result = {"path": path}
        return ItemOutcome("success", _SUCCESS, "published {path}", ref, size, result, dict(result))

    def finish(self, ctx: RunContext, session: Session, stopped: bool) -> dict[str, Any]:
        if stopped:
            return {}
        job: Any = ctx.job
        rows = session.execute(
            select(Asset, Folder.path)
            .join(Folder, Folder.id == Asset.folder_id)
            .where(Asset.company_id == ctx.company_id, Asset.publish_state == "Published")
            .order_by(Asset.id)
        ).all()
        catalog = [
            {"handle": a.handle, "path": f"{p.rstrip('/')}/{a.name}", "size": a.size}
            for a, p in rows
        ]
        presets = session.scalars(
            select(ImageFormat).where(ImageFormat.company_id == ctx.company_id)
        ).all()
        storage, root = ctx.runtime.storage, _root(ctx)
        self._write(storage, f"{root}/catalog.json", json.dumps(catalog, indent=1))
        macros = "".join(f"{p.name}\t{p.url_modifier}\n" for p in presets)
        self._write(storage, f"{root}/presets.mac", macros)
        out: dict[str, Any] = {"root": root, "published": len(catalog), "presets": len(presets)}
        if str(job.publish_type) == "FullWithSearch":
            names = sorted({a.name for a, _ in rows})
            self._write(storage, f"{root}/search.json", json.dumps(names))
            out["search"] = f"{root}/search.json"
        return out

    @staticmethod
    def _write(storage: Storage, key: str, text: str) -> None:
        with storage.writer(key) as fh:
            fh.write(text.encode())
