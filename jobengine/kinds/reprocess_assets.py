"""ReprocessAssetsJob: the listed assets processed again.

One item per asset of ``assetHandleArray``: an Image gets a new pyramid TIFF even when its
pyramid is up to date (:func:`~jobengine.kinds.optimize_images.optimize_asset` with ``force``),
a PDF is ripped again with the job's ``pdfOptions``
(:func:`~jobengine.kinds.rip_pdfs.rip_asset`), any other type gets a warning row: there is
nothing to reprocess. An Image first gets its upload crop (:mod:`jobengine.assets.crops`): the job's
``manualCropOptions``, ``autoColorCropOptions`` or ``autoTransparentCropOptions`` under
``preserveCrop`` (measured in the conversion pool; a crop that cannot be set is an
``UploadWarning`` row and no crop), so the new pyramid is of the cropped view.
``readyForPublish`` marks the results (the image; the pages and eCatalog)
for publish.
"""

from __future__ import annotations

from collections.abc import Collection

from jobengine.assets.crops import CROP_FIELDS, CropOrder, measure
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
    unique_handles,
)
from jobengine.kinds.optimize_images import optimize_asset, optimize_summary
from jobengine.kinds.processing_options import refuse_unsupported
from jobengine.kinds.rip_pdfs import RipOptions, check_pdf_options, rip_asset, rip_summary
from jobengine.model import JobKind, ReprocessAssetsJob
from jobengine.store.schema import Asset

__all__ = ["ReprocessAssetsKind"]


class ReprocessAssetsKind(JobKindHandler[ReprocessAssetsJob]):
    kind = JobKind.REPROCESS_ASSETS
    job_type = "ReprocessAssets"
    begin_log = "BeginReoptimize"
    end_log = "endReoptimize"  # sic: the IPS constant
    honoured: Collection[str] = frozenset(
        {
            "asset_handle_array",
            "ready_for_publish",
            "pdf_options",
            "email_setting",
            "preserve_crop",
            *CROP_FIELDS,
        }
    )

    def asset_handles(self, job: ReprocessAssetsJob) -> list[str]:
        return unique_handles(job.asset_handle_array)

    def check(self, reads: SubmitReads, job: ReprocessAssetsJob) -> None:
        refuse_unsupported(self.element, job, self.honoured)
        check_pdf_options(self.element, job.pdf_options)
        handles = unique_handles(job.asset_handle_array)
        reads.check_handles(handles, f"{self.element}/assetHandleArray")

    def plan(self, ctx: RunContext[ReprocessAssetsJob]) -> list[PlannedItem]:
        job = ctx.job
        return [PlannedItem(key=h) for h in unique_handles(job.asset_handle_array)]

    def process(self, ctx: RunContext[ReprocessAssetsJob], item: PlannedItem) -> ItemOutcome:
        row = ctx.asset(item.key)
        if row is None:
            return asset_gone(item.key, "ReoptimizeFailure")
        asset = row[0]
        job = ctx.job
        ready = job.ready_for_publish is True
        if asset.type == "Image":
            cropped = self._crop(ctx, asset)
            if isinstance(cropped, ItemOutcome):
                return cropped
            return optimize_asset(ctx, cropped, force=True, ready=ready)
        if asset.type == "Pdf":
            return rip_asset(ctx, asset, RipOptions.of(job.pdf_options), ready=ready)
        skipped = {"name": asset.name, "type": asset.type}
        return ItemOutcome(
            "warning",
            "FileCancel",
            "skipped {name}: {type} assets have nothing to reprocess",
            AssetRef.of(asset),
            args=skipped,
        )

    @staticmethod
    def _crop(ctx: RunContext[ReprocessAssetsJob], asset: Asset) -> Asset | ItemOutcome:
        """The image with its upload crop set as the job says, or the error outcome of an image
        that cannot be measured for it."""
        order = CropOrder.of(ctx.job)
        decision = order.decide(asset.crop)
        if decision == "keep":
            return asset
        ref = AssetRef.of(asset)
        crop, warning = None, None
        if decision == "compute" and asset.file_key is not None:
            try:
                with ctx.runtime.storage.local_file(asset.file_key) as src:
                    measured = measure(order, src)  # in the conversion pool
            except IpsFault as exc:
                why = f"the image cannot be cropped: {exc.reason}"
                failed: LogMessage = "cannot optimize {name}: {reason}"
                bad = {"name": asset.name, "reason": why}
                return ItemOutcome("error", "ReoptimizeFailure", failed, ref, args=bad)
            except OSError as exc:
                return io_failure("ReoptimizeFailure", ref, asset.name, exc)
            crop, warning = measured.crop, measured.warning
        with ctx.runtime.store.write() as session:
            stored = session.get(Asset, asset.id)
            if stored is None:
                return asset_gone(asset.handle, "ReoptimizeFailure")
            stored.crop = crop
            if warning:
                ctx.log(
                    "UploadWarning",
                    "{name} is not cropped: {reason}",
                    asset=ref,
                    name=asset.name,
                    reason=warning,
                )
        asset.crop = crop
        return asset

    def finish(self, ctx: RunContext[ReprocessAssetsJob], stopped: bool) -> Finished:
        results = ctx.done_items()
        return Finished({**optimize_summary(results), **rip_summary(results)})
