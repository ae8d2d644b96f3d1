"""ExportJob: the listed assets, as originals or converted, into one ZIP in the export area.

Each asset is one item: its files (an original, a converted image, or one image per PDF page)
go to the run's staging folder under the item's own key, cleared first, so a retried item
replaces its own files and can never appear twice (but for a run of one asset sent as its
original: its ZIP is written right after the item, in the same task, from the file where it
lies). ``fmt=convert`` applies an image's upload
crop (:mod:`jobengine.assets.crops`) before the modifiers; ``fmt=orig`` exports the file as
uploaded. The finishing step streams the ZIP into an atomic storage write (a temporary file renamed
into place, or an object-store upload completed only at the end), then removes the staging folder:
readers see no ZIP or the whole ZIP.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

from jobengine import imaging
from jobengine.assets.catalog import SET_TYPES, company_presets
from jobengine.assets.crops import parse_crop, with_crop
from jobengine.errors import IllegalCompany, InvalidParameter, IpsFault, LimitExceeded
from jobengine.i18n import LogMessage
from jobengine.kinds.base import (
    AssetRef,
    Finished,
    ItemOutcome,
    JobKindHandler,
    PlannedItem,
    RunContext,
    SubmitReads,
    asset_gone,
    io_failure,
    unique_handles,
)
from jobengine.model import ExportJob, JobKind
from jobengine.storage import StorageError, safe_name
from jobengine.store.schema import Asset

__all__ = ["MAX_EXPORT_ASSETS", "MAX_EXPORT_BYTES", "ExportKind"]

MAX_EXPORT_ASSETS = 500
MAX_EXPORT_BYTES = 1024**3
# Asset types converted with fmt=convert; others go out as originals (as DMC's export does).
CONVERTIBLE = frozenset({"Image", "Pdf", "Illustrator"})


def _digest(key: str) -> str:
    """The staged file name of an item's original: its key's digest (any key, one flat name)."""
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def _image_request(company_presets: dict[str, str], job: ExportJob) -> imaging.ImageRequest:
    """The conversion of an ExportJob: the company's presets over the shipped defaults."""
    presets = {**imaging.default_presets(), **company_presets}
    return imaging.export_request(job.is_modifier, job.macro, presets)


class ExportKind(JobKindHandler[ExportJob]):
    kind = JobKind.EXPORT
    job_type = "Export"
    begin_log = "BeginGet"
    end_log = "EndGet"
    plans_from_request = True  # the asset handles of the request, in order
    items_are_assets = True

    def asset_handles(self, job: ExportJob) -> list[str]:
        return unique_handles(job.asset_handle_array)

    def check(self, reads: SubmitReads, job: ExportJob) -> None:
        if str(job.fmt) == "convert":  # bad modifiers or presets fail the submit, with the token
            _image_request(reads.image_presets(), job)
        handles = unique_handles(job.asset_handle_array)
        if not handles:
            raise InvalidParameter("exportJob/assetHandleArray is empty", field="assetHandleArray")
        if len(handles) > MAX_EXPORT_ASSETS:
            raise LimitExceeded(
                f"an export holds at most {MAX_EXPORT_ASSETS} assets; {len(handles)} were given",
                field="exportJob/assetHandleArray",
            )
        assets = reads.assets(handles)
        for handle in handles:
            owner = assets.get(handle)
            if owner is None:
                raise InvalidParameter(f"unknown assetHandle {handle!r}", field="assetHandleArray")
            if owner.company_id != reads.company_id:
                raise IllegalCompany(
                    f"asset {handle!r} belongs to another company", field="assetHandleArray"
                )
        total = sum(asset.size for asset in assets.values())
        if total > MAX_EXPORT_BYTES:
            raise LimitExceeded(
                f"an export is at most 1 GB; these assets hold {total} bytes",
                field="exportJob/assetHandleArray",
            )

    def plan(self, ctx: RunContext[ExportJob]) -> list[PlannedItem]:
        job = ctx.job
        return [PlannedItem(key=h) for h in unique_handles(job.asset_handle_array)]

    def process(self, ctx: RunContext[ExportJob], item: PlannedItem) -> ItemOutcome:
        row = ctx.asset(item.key)
        if row is None:
            return asset_gone(item.key, "GetFailure")
        asset, folder = row[0], row[1]
        ref = AssetRef.of(asset)
        if asset.type in SET_TYPES or asset.file_key is None:
            skipped = {"name": asset.name, "type": asset.type}
            reason: LogMessage = "skipped {name}: {type} assets cannot be exported"
            return ItemOutcome("warning", "FileCancel", reason, ref, args=skipped)
        folder_member = "/".join(safe_name(p) for p in folder.strip("/").split("/") if p)
        storage = ctx.runtime.storage
        job = ctx.job
        try:
            if str(job.fmt) == "convert" and asset.type in CONVERTIBLE:
                staged = f"{ctx.staging_key}/{item.key.replace('|', '_')}"
                storage.delete_tree(staged)  # a retried item starts from nothing: never two copies
                # the isolated converter needs local paths: local storage gives its own files,
                # remote storage a downloaded copy and a folder uploaded after a success
                with storage.local_file(asset.file_key) as source, storage.local_dir(staged) as out:
                    names = self._convert(ctx, job, source, out, asset)
                note: LogMessage = "converted {files}"
                paths = [(n, f"{staged}/{n}") for n in names]
            else:
                read_from = asset.file_key  # the ZIP is written next, here, from the file itself
                if not item.finish_follows:
                    # One file of the item's own in the run's staging folder, named by its key's
                    # digest: a retried item replaces it (the copy is atomic), so no folder per
                    # item is made, cleared and removed. Scratch: made again if lost, so not
                    # flushed to disk first (the ZIP is). It keeps the finish's input as it was
                    # when the item ran, whatever happens to the asset before the finish.
                    read_from = f"{ctx.staging_key}/{_digest(item.key)}"
                    storage.copy(asset.file_key, read_from, durable=False)
                paths = [(asset.name, read_from)]
                original = str(job.fmt) == "orig"
                note = "exported {files}" if original else "exported {type} as original {files}"
        except (IpsFault, StorageError) as exc:
            why = exc.reason if isinstance(exc, IpsFault) else "its name cannot be a file name"
            failed = {"name": asset.name, "reason": why}
            return ItemOutcome(
                "error", "GetFailure", "cannot convert {name}: {reason}", ref, args=failed
            )
        except OSError as exc:
            return io_failure("GetFailure", ref, asset.name, exc)
        files = [
            {"member": f"{folder_member}/{n}" if folder_member else n, "staged": key}
            for n, key in paths
        ]
        size = sum(storage.size(f["staged"]) for f in files)
        done = {"files": ", ".join(f["member"] for f in files), "type": asset.type}
        return ItemOutcome("success", "ReturnSuccess", note, ref, size, {"files": files}, done)

    @staticmethod
    def _convert(
        ctx: RunContext[ExportJob], job: ExportJob, source: Path, out_dir: Path, asset: Asset
    ) -> list[str]:
        with ctx.runtime.store.read() as session:
            request = _image_request(company_presets(session, ctx.company_id), job)
        if asset.type == "Image":  # its upload crop first (jobengine/assets/crops.py)
            request = with_crop(request, parse_crop(asset.crop))
        # Scratch, as an original's staged copy is: made again if lost, not flushed to disk
        # (the ZIP is); a flush an item was waiting on the disk shared with everything else.
        made = imaging.convert(
            source, out_dir, request, asset.name, cancelled=ctx.stop_requested, durable=False
        )
        return [p.name for p in made]

    def finish(self, ctx: RunContext[ExportJob], stopped: bool) -> Finished:
        if stopped:
            return Finished()
        parts = [f for result in ctx.done_items() for f in result.get("files", [])]
        if not parts:
            return Finished()
        storage = ctx.runtime.storage
        key = f"{safe_name(ctx.company_handle)}/exports/{safe_name(ctx.run_name)}.zip"
        if not storage.exists(key) or all(storage.exists(str(p["staged"])) for p in parts):
            self._write_zip(ctx, key, parts)  # atomic: a second finish replaces the first's ZIP
        # else: an earlier finish wrote the whole ZIP (the name is the run's own, the write
        # atomic) and its staged files went before its end was committed (a store outage
        # between the two on a version that cleaned up first): the output is there, use it.
        return Finished({"zip": key, "files": len(parts), "bytes": storage.size(key)})

    def cleanup(self, ctx: RunContext[ExportJob]) -> None:
        ctx.runtime.storage.delete_tree(ctx.staging_key)

    @staticmethod
    def _write_zip(ctx: RunContext[ExportJob], key: str, parts: list[dict[str, Any]]) -> None:
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
                with storage.local_file(str(part["staged"])) as staged:
                    zf.write(staged, arcname=name)
