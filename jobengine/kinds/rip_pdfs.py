"""RipPdfsJob: each listed PDF asset rasterized into page images, and an eCatalog of the pages.

One item per PDF. The pages are rendered in the conversion pool (PDFium, never in this process)
as JPEG files into a fresh storage folder of their own, ``<company>/pages/<pdf id>/<token>/``.
Only when every page is written are the assets recorded, in one transaction: an Image asset per
page in the PDF's folder, named ``<pdf stem>-<page>.jpg`` (a same-named Image, such as the page
of an earlier rip, is replaced in place: same handle, no duplicate), and with ``pdfCatalog`` an
``ECatalog`` set named ``<pdf stem>`` holding the pages in order. A full rip also removes the
pages an earlier rip of the same PDF made beyond the new page count. A failure at any point
removes the new folder and records nothing: no partial catalog, no orphan page assets. The files
the replaced assets held are deleted after the commit.

:func:`rip_asset` is also how ReprocessAssetsJob re-rips a PDF.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobengine import imaging
from jobengine.assets.catalog import put_asset_file, remove_assets, save_set
from jobengine.errors import InvalidParameter, IpsFault, LimitExceeded, NotSupported
from jobengine.i18n import LogMessage
from jobengine.imaging.limits import MAX_RIP_DPI, MIN_RIP_DPI
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
from jobengine.kinds.processing_options import refuse_unsupported
from jobengine.model import JobKind, RipPdfsJob
from jobengine.model.options import PdfOptions
from jobengine.storage import safe_name
from jobengine.store.schema import Asset, Folder

__all__ = [
    "RipOptions",
    "RipPdfsKind",
    "catalog_name",
    "check_pdf_options",
    "page_name",
    "pdf_stem",
    "rip_asset",
    "rip_summary",
]

MAX_STEM = 400  # page names stay under the 512 characters of an asset name
_SUCCESS, _ERROR, _WARNING = "UploadSuccess", "PdfRipError", "UploadWarning"


@dataclass(frozen=True)
class RipOptions:
    """What a rip does, from PDFOptions: ``process`` None (nothing), Rasterize or Thumbnail (page
    1 only, no eCatalog); ``dpi``; gray or RGB pages; whether to build the eCatalog."""

    process: str = "Rasterize"
    dpi: float = 150.0
    gray: bool = False
    catalog: bool = True

    @classmethod
    def of(cls, options: PdfOptions | None) -> RipOptions:
        if options is None:
            return cls()
        return cls(
            process=str(options.process or "Rasterize"),
            dpi=float(options.resolution or 150.0),
            gray=str(options.colorspace or "Auto") == "Gray",
            catalog=options.pdf_catalog is not False,
        )


def check_pdf_options(element: str, options: PdfOptions | None) -> None:
    """Submit-time: NotSupported for the PDFOptions this server does not do, a bounded dpi."""
    if options is None:
        return
    path = f"{element}/pdfOptions"
    refused = {
        "extractSearchWords": (options.extract_search_words, "search words are not extracted"),
        "extractLinks": (options.extract_links, "links are not turned into image maps"),
        "colorspace": (str(options.colorspace) == "Cmyk", "pages are ripped as RGB or Gray"),
    }
    for name, (asked, why) in refused.items():
        if asked is True:
            raise NotSupported(
                f"{path}/{name} is not supported by this server: {why}", field=f"{path}/{name}"
            )
    dpi = options.resolution
    if dpi is not None and not MIN_RIP_DPI <= dpi <= MAX_RIP_DPI:
        raise LimitExceeded(
            f"{path}/resolution must be {MIN_RIP_DPI:g} to {MAX_RIP_DPI:g} dpi; got {dpi:g}",
            field=f"{path}/resolution",
        )


def pdf_stem(name: str) -> str:
    """The PDF's name without its extension (``brochure.pdf`` -> ``brochure``)."""
    stem, dot, _ = name.rpartition(".")
    return (stem if dot and stem else name)[:MAX_STEM]


def page_name(pdf_name: str, page: int) -> str:
    """The asset name of page ``page`` (1-based): ``<pdf stem>-<page>.jpg``."""
    return f"{pdf_stem(pdf_name)}-{page}.jpg"


def catalog_name(pdf_name: str) -> str:
    """The eCatalog's name: the stem, or ``<name>-eCatalog`` when the PDF's name has no
    extension (the stem would be the PDF itself)."""
    stem = pdf_stem(pdf_name)
    return stem if stem != pdf_name else f"{stem[: MAX_STEM - 9]}-eCatalog"


@dataclass
class _Recorded:
    pages: list[str] = field(default_factory=list)
    catalog: str | None = None
    catalog_handle: str | None = None
    old_keys: list[str] = field(default_factory=list)


def _record(
    session: Session, pdf_id: int, files: list[tuple[str, int]], opts: RipOptions, ready: bool
) -> _Recorded:
    # The PDF's row lock serializes two rips of one PDF (SQLite: BEGIN IMMEDIATE already does).
    pdf = session.scalar(select(Asset).where(Asset.id == pdf_id).with_for_update())
    if pdf is None or pdf.type != "Pdf":
        raise InvalidParameter("the PDF was deleted or replaced while it was ripped")
    folder = session.get(Folder, pdf.folder_id)
    assert folder is not None
    done = _Recorded()
    pages: list[Asset] = []
    for number, (key, size) in enumerate(files, 1):
        page, old = put_asset_file(
            session,
            folder,
            page_name(pdf.name, number),
            "Image",
            key=key,
            size=size,
            derived_from=pdf.id,
            ready_for_publish=ready,
        )
        pages.append(page)
        done.old_keys += [old] if old else []
    if opts.process == "Rasterize":
        stale = session.scalars(
            select(Asset).where(
                Asset.company_id == pdf.company_id,
                Asset.derived_from == pdf.id,
                Asset.type == "Image",
                Asset.id.not_in([p.id for p in pages]),
            )
        ).all()
        done.old_keys += remove_assets(session, stale)
        if opts.catalog:
            name = catalog_name(pdf.name)
            catalog = save_set(
                session,
                folder,
                name,
                "ECatalog",
                pages,
                derived_from=pdf.id,
                ready_for_publish=ready,
            )
            done.catalog, done.catalog_handle = name, catalog.handle
    done.pages = [p.handle for p in pages]
    return done


def _record_pages(
    ctx: RunContext[Any], pdf_id: int, files: list[tuple[str, int]], opts: RipOptions, ready: bool
) -> _Recorded:
    """Record the pages (and catalog) in one transaction; once more if a concurrent writer
    created a same-named asset first."""
    for attempt in range(2):
        try:
            with ctx.runtime.store.write() as session:
                return _record(session, pdf_id, files, opts, ready)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def rip_asset(ctx: RunContext[Any], asset: Asset, opts: RipOptions, *, ready: bool) -> ItemOutcome:
    """Rip one PDF asset as ``opts`` say; ``ready`` marks the pages and eCatalog for publish."""
    ref = AssetRef.of(asset)
    if asset.type != "Pdf" or asset.file_key is None:
        wrong = {"name": asset.name, "reason": f"it is of type {asset.type}, not Pdf"}
        return ItemOutcome("error", _ERROR, "cannot rip {name}: {reason}", ref, args=wrong)
    if opts.process == "None":
        managed = {"name": asset.name}
        note: LogMessage = "{name} is managed only: pdfOptions/process is None"
        return ItemOutcome("warning", _WARNING, note, ref, args=managed)
    storage = ctx.runtime.storage
    folder = f"{safe_name(ctx.company_handle)}/pages/{asset.id}/{secrets.token_hex(8)}"
    try:
        try:
            with storage.local_file(asset.file_key) as src, storage.local_dir(folder) as out:
                paths = imaging.rip_pdf(
                    src,
                    out,
                    "page",
                    dpi=opts.dpi,
                    gray=opts.gray,
                    first_page_only=opts.process == "Thumbnail",
                    cancelled=ctx.stop_requested,
                )
            files = [(f"{folder}/{p.name}", storage.size(f"{folder}/{p.name}")) for p in paths]
            done = _record_pages(ctx, asset.id, files, opts, ready)
        except BaseException:
            storage.delete_tree(folder)  # nothing of a failed rip stays
            raise
    except IpsFault as exc:
        failed = {"name": asset.name, "reason": exc.reason}
        return ItemOutcome("error", _ERROR, "cannot rip {name}: {reason}", ref, args=failed)
    except OSError as exc:
        return io_failure(_ERROR, ref, asset.name, exc)
    for key in done.old_keys:
        with contextlib.suppress(OSError):
            storage.delete(key)
    size = sum(s for _, s in files)
    result = {"pages": done.pages, "catalog": done.catalog_handle}
    if done.catalog is None:
        ripped = {"name": asset.name, "pages": len(done.pages)}
        return ItemOutcome(
            "success", _SUCCESS, "ripped {name} into {pages} page(s)", ref, size, result, ripped
        )
    with_catalog = {"name": asset.name, "pages": len(done.pages), "catalog": done.catalog}
    return ItemOutcome(
        "success",
        _SUCCESS,
        "ripped {name} into {pages} page(s) and the eCatalog {catalog}",
        ref,
        size,
        result,
        with_catalog,
    )


def rip_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The output of a run that ripped PDFs (``results``: of its done items): how many pages
    and eCatalogs it recorded."""
    pages = sum(len(r.get("pages") or []) for r in results)
    catalogs = sum(1 for r in results if r.get("catalog"))
    return {"pages": pages, "catalogs": catalogs}


class RipPdfsKind(JobKindHandler[RipPdfsJob]):
    kind = JobKind.RIP_PDFS
    job_type = "RipPdfs"
    begin_log = "BeginPdfRip"
    end_log = "EndUpload"  # IPS has no EndPdfRip: a rip ends as the upload it belongs to
    honoured: Collection[str] = frozenset({"pdf_handle_array", "pdf_options", "email_setting"})

    def asset_handles(self, job: RipPdfsJob) -> list[str]:
        return unique_handles(job.pdf_handle_array)

    def check(self, reads: SubmitReads, job: RipPdfsJob) -> None:
        refuse_unsupported(self.element, job, self.honoured)
        check_pdf_options(self.element, job.pdf_options)
        handles = unique_handles(job.pdf_handle_array)
        path = f"{self.element}/pdfHandleArray"
        reads.check_handles(handles, path, asset_type="Pdf")

    def plan(self, ctx: RunContext[RipPdfsJob]) -> list[PlannedItem]:
        job = ctx.job
        return [PlannedItem(key=h) for h in unique_handles(job.pdf_handle_array)]

    def process(self, ctx: RunContext[RipPdfsJob], item: PlannedItem) -> ItemOutcome:
        row = ctx.asset(item.key)
        if row is None:
            return asset_gone(item.key, _ERROR)
        job = ctx.job
        return rip_asset(ctx, row[0], RipOptions.of(job.pdf_options), ready=False)

    def finish(self, ctx: RunContext[RipPdfsJob], stopped: bool) -> Finished:
        return Finished(rip_summary(ctx.done_items()))
