"""OptimizeImagesJob: a pyramid TIFF of each of the company's images not yet optimized.

The plan takes the company's Image assets with no pyramid, or whose file changed since theirs
was made (``Asset.optimized_version``, the ``updated_at`` of the file version the pyramid was
made from, differs from ``updated_at``), or whose upload crop changed since (``Asset.crop``
against ``Asset.optimized_crop``: the pyramid is of the cropped view,
:mod:`jobengine.assets.crops`). Each is one item: the conversion pool writes the pyramid
(:mod:`jobengine.imaging.ptif`, never in this process) atomically to
``<company>/optimized/<asset id>.ptif``, then the asset row records it. A re-run, or a retried
item whose first attempt got that far, finds it up to date and skips it; a corrupt image fails
its own item with an error row and the run goes on.

:func:`optimize_asset` is also how ReprocessAssetsJob re-optimizes an image (``force``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import or_, select

from jobengine import imaging
from jobengine.assets.catalog import mark_for_publish
from jobengine.assets.crops import parse_crop
from jobengine.errors import IpsFault
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
)
from jobengine.model import JobKind, OptimizeImagesJob
from jobengine.storage import safe_name
from jobengine.store.schema import Asset

__all__ = [
    "OptimizeImagesKind",
    "is_optimized",
    "optimize_asset",
    "optimize_summary",
    "optimized_key",
]

_SUCCESS, _FAILURE = "ReoptimizeSuccess", "ReoptimizeFailure"


def optimized_key(company_handle: str, asset_id: int) -> str:
    """Where an asset's pyramid TIFF is stored."""
    return f"{safe_name(company_handle)}/optimized/{asset_id}.ptif"


def is_optimized(asset: Asset) -> bool:
    """Whether the asset's pyramid was made from its current file and crop."""
    return (
        asset.optimized_key is not None
        and asset.optimized_version == asset.updated_at
        and asset.optimized_crop == asset.crop
    )


def optimize_asset(
    ctx: RunContext[Any], asset: Asset, *, force: bool, ready: bool = False
) -> ItemOutcome:
    """Write the pyramid TIFF of one Image asset (unless it is up to date and not ``force``);
    ``ready`` marks the image for publish."""
    ref = AssetRef.of(asset)
    if asset.type != "Image" or asset.file_key is None:
        skipped = {"name": asset.name, "type": asset.type}
        note: LogMessage = "skipped {name}: {type} assets are not optimized"
        return ItemOutcome("warning", "FileCancel", note, ref, args=skipped)
    storage = ctx.runtime.storage
    key = optimized_key(ctx.company_handle, asset.id)
    if not force and is_optimized(asset) and storage.exists(key):
        current = {"name": asset.name}
        return ItemOutcome("success", _SUCCESS, "{name} is already optimized", ref, args=current)
    folder, name = key.rsplit("/", 1)
    box = parse_crop(asset.crop)
    try:
        with storage.local_file(asset.file_key) as src, storage.local_dir(folder) as out:
            crop = None if box is None else box.as_tuple()
            imaging.pyramid(src, out, name, crop=crop, cancelled=ctx.stop_requested)
    except IpsFault as exc:
        failed = {"name": asset.name, "reason": exc.reason}
        return ItemOutcome("error", _FAILURE, "cannot optimize {name}: {reason}", ref, args=failed)
    except OSError as exc:
        return io_failure(_FAILURE, ref, asset.name, exc)
    with ctx.runtime.store.write() as session:
        stored = session.get(Asset, asset.id)
        if stored is not None:
            # the version read above: if the file changed meanwhile, the next run redoes it
            stored.optimized_key, stored.optimized_version = key, asset.updated_at
            stored.optimized_crop = asset.crop
            if ready:
                mark_for_publish(stored)
    if stored is None:  # deleted while its pyramid was made
        with contextlib.suppress(OSError):
            storage.delete(key)
        return asset_gone(asset.handle, _FAILURE)
    done = {"name": asset.name}
    size = storage.size(key)
    return ItemOutcome("success", _SUCCESS, "optimized {name}", ref, size, {"optimized": key}, done)


class OptimizeImagesKind(JobKindHandler[OptimizeImagesJob]):
    kind = JobKind.OPTIMIZE_IMAGES
    job_type = "ImageOptimization"
    begin_log = "BeginReoptimize"
    end_log = "endReoptimize"  # sic: the IPS constant

    def check(self, reads: SubmitReads, job: OptimizeImagesJob) -> None:
        """Nothing to check: the payload is emailSetting only."""

    def plan(self, ctx: RunContext[OptimizeImagesJob]) -> list[PlannedItem]:
        query = select(Asset.handle).where(
            Asset.company_id == ctx.company_id,
            Asset.type == "Image",
            Asset.file_key.is_not(None),
            or_(
                Asset.optimized_key.is_(None),
                Asset.optimized_version.is_(None),
                Asset.optimized_version != Asset.updated_at,
                Asset.optimized_crop.is_distinct_from(Asset.crop),
            ),
        )
        with ctx.runtime.store.read() as session:
            return [PlannedItem(key=h) for h in session.scalars(query.order_by(Asset.id))]

    def process(self, ctx: RunContext[OptimizeImagesJob], item: PlannedItem) -> ItemOutcome:
        row = ctx.asset(item.key)
        if row is None:
            return asset_gone(item.key, _FAILURE)
        return optimize_asset(ctx, row[0], force=False)

    def finish(self, ctx: RunContext[OptimizeImagesJob], stopped: bool) -> Finished:
        return Finished(optimize_summary(ctx.done_items()))


def optimize_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The output of a run that optimized images (``results``: of its done items): how many
    pyramids it wrote."""
    return {"optimized": sum(1 for r in results if r.get("optimized"))}
