"""ExportJob: the listed assets, as originals, into one ZIP in the company's export area.

Each asset is one item: it is copied to the run's staging folder under a name fixed by its
position, so a retried item overwrites its own copy and can never appear twice. The finishing
step writes the ZIP under a temporary name and renames it into place, then removes the staging
folder: readers see no ZIP or the whole ZIP.
"""

from __future__ import annotations

import zipfile
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from jobengine.catalog import SET_TYPES
from jobengine.errors import IllegalCompany, InvalidParameter, LimitExceeded, NotSupported
from jobengine.kinds.base import AssetRef, ItemOutcome, JobKindHandler, PlannedItem, RunContext
from jobengine.storage import safe_name
from jobengine.store.schema import Asset, Company, Folder, RunItem

__all__ = ["MAX_EXPORT_ASSETS", "MAX_EXPORT_BYTES", "ExportKind"]

MAX_EXPORT_ASSETS = 500
MAX_EXPORT_BYTES = 1024**3
_ASSETS_BY_HANDLE = select(Asset.handle, Asset.company_id, Asset.size).where(
    Asset.handle.in_(bindparam("handles", expanding=True))
)


def _unique_handles(handles: Any) -> list[str]:
    return list(dict.fromkeys(str(h) for h in handles))


class ExportKind(JobKindHandler):
    element = "exportJob"
    job_type = "Export"
    slug = "export"
    begin_log = "BeginGet"
    end_log = "EndGet"

    def check(self, session: Session, company: Company, job: Any) -> None:
        if str(job.fmt) != "orig":
            raise NotSupported(
                "exportJob/fmt=convert is not supported by this server yet; use fmt=orig",
                field="exportJob/fmt",
            )
        handles = _unique_handles(job.asset_handle_array)
        if not handles:
            raise InvalidParameter("exportJob/assetHandleArray is empty", field="assetHandleArray")
        if len(handles) > MAX_EXPORT_ASSETS:
            raise LimitExceeded(
                f"an export holds at most {MAX_EXPORT_ASSETS} assets; {len(handles)} were given",
                field="exportJob/assetHandleArray",
            )
        found = session.execute(_ASSETS_BY_HANDLE, {"handles": handles}).all()
        assets = {str(h): (int(c), int(size)) for h, c, size in found}
        for handle in handles:
            owner = assets.get(handle)
            if owner is None:
                raise InvalidParameter(f"unknown assetHandle {handle!r}", field="assetHandleArray")
            if owner[0] != company.id:
                raise IllegalCompany(
                    f"asset {handle!r} belongs to another company", field="assetHandleArray"
                )
        total = sum(size for _, size in assets.values())
        if total > MAX_EXPORT_BYTES:
            raise LimitExceeded(
                f"an export is at most 1 GB; these assets hold {total} bytes",
                field="exportJob/assetHandleArray",
            )

    def plan(self, ctx: RunContext, session: Session) -> list[PlannedItem]:
        job: Any = ctx.job
        return [PlannedItem(key=h) for h in _unique_handles(job.asset_handle_array)]

    def process(self, ctx: RunContext, item: PlannedItem) -> ItemOutcome:
        with ctx.runtime.store.read() as session:
            row = session.execute(
                select(Asset, Folder.path)
                .join(Folder, Folder.id == Asset.folder_id)
                .where(Asset.handle == item.key, Asset.company_id == ctx.company_id)
            ).first()
        if row is None:
            gone = AssetRef(handle=item.key)
            return ItemOutcome("error", "GetFailure", f"asset {item.key} no longer exists", gone)
        asset, folder = row[0], row[1]
        ref = AssetRef.of(asset)
        if asset.type in SET_TYPES or asset.file_key is None:
            reason = f"skipped {asset.name}: {asset.type} assets cannot be exported"
            return ItemOutcome("warning", "FileCancel", reason, ref)
        member = "/".join(safe_name(p) for p in folder.strip("/").split("/") if p)
        member = f"{member}/{asset.name}" if member else asset.name
        staged = f"{ctx.staging_key}/{item.key.replace('|', '_')}"
        try:
            size = ctx.runtime.storage.copy(asset.file_key, staged)
        except OSError as exc:
            return ItemOutcome("error", "GetFailure", f"cannot read {asset.name}: {exc}", ref)
        result = {"member": member, "staged": staged}
        return ItemOutcome("success", "ReturnSuccess", f"exported {member}", ref, size, result)

    def finish(self, ctx: RunContext, session: Session, stopped: bool) -> dict[str, Any]:
        storage = ctx.runtime.storage
        try:
            if stopped:
                return {}
            items = session.scalars(
                select(RunItem)
                .where(RunItem.run_id == ctx.run_id, RunItem.state == "done")
                .order_by(RunItem.seq)
            ).all()
            parts = [i.result for i in items if i.result.get("staged")]
            if not parts:
                return {}
            key = f"{safe_name(ctx.company_handle)}/exports/{safe_name(ctx.run_name)}.zip"
            self._write_zip(ctx, key, parts)
            return {"zip": key, "files": len(parts), "bytes": storage.size(key)}
        finally:
            storage.delete_tree(ctx.staging_key)

    @staticmethod
    def _write_zip(ctx: RunContext, key: str, parts: list[dict[str, Any]]) -> None:
        storage = ctx.runtime.storage
        seen: set[str] = set()
        with storage.writer(key) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            for part in parts:
                name = str(part["member"])
                stem, dot, ext = name.rpartition(".")
                n = 1
                while name in seen:  # two assets of the same name in one folder level
                    n += 1
                    name = f"{stem}-{n}{dot}{ext}" if dot else f"{ext}-{n}"
                seen.add(name)
                zf.write(storage.path(str(part["staged"])), arcname=name)
