"""Rip a PDF into page images (RipPdfsJob, ReprocessAssetsJob), inside a pool worker.

Pages are rasterised with PDFium (:mod:`jobengine.imaging.pdf`: no Ghostscript), one at a time,
at the requested dpi lowered so a page stays under ``max_pdf_page_pixels``; a document with more
than ``max_pdf_pages`` pages or more than ``max_pdf_pixels`` in all, an encrypted, broken or
empty one fails before any page is written.
Each page is a JPEG (quality 90, 4:4:4 chroma: text stays crisp) in RGB or gray, written
atomically as ``<base_name>-<page>.jpg``; on any failure every page this call wrote is removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from jobengine.imaging.convert import _check_file, _magick_errors
from jobengine.imaging.encode import OutputFiles
from jobengine.imaging.errors import ConversionFailed, UnsupportedInput
from jobengine.imaging.limits import MAX_RIP_DPI, MIN_RIP_DPI, Limits
from jobengine.imaging.modifiers import parse_modifiers
from jobengine.imaging.pdf import check_pixel_budget, open_pdf, render_page
from jobengine.imaging.request import page_name
from jobengine.imaging.sniff import sniff_file

__all__ = ["PAGE_QUERY", "rip_pdf"]

PAGE_QUERY = {"rgb": "fmt=jpeg,rgb&qlt=90,1", "gray": "fmt=jpeg,gray&qlt=90,1"}


def rip_pdf(
    src: Path,
    dst_dir: Path,
    base_name: str,
    limits: Limits | None = None,
    *,
    dpi: float = 150.0,
    gray: bool = False,
    first_page_only: bool = False,
    token: str = "",
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write the pages of the PDF ``src`` into ``dst_dir`` as ``<base_name>-<n>.jpg`` (only page 1
    with ``first_page_only``); returns their paths in page order."""
    limits = limits or Limits()
    if not MIN_RIP_DPI <= dpi <= MAX_RIP_DPI:
        raise ConversionFailed(
            f"resolution {dpi:g} dpi is outside {MIN_RIP_DPI:g}..{MAX_RIP_DPI:g}"
        )
    if not dst_dir.is_dir():
        raise ConversionFailed("the destination directory does not exist")
    _check_file(src, limits)
    if sniff_file(src).kind != "pdf":
        raise UnsupportedInput("the file is not a PDF")
    req = parse_modifiers(PAGE_QUERY["gray" if gray else "rgb"])
    page_limits = dataclasses.replace(limits, pdf_dpi=dpi)
    out = OutputFiles(dst_dir, token, progress)
    try:
        with _magick_errors(), open_pdf(src, page_limits) as doc:
            pages = 1 if first_page_only else len(doc)
            check_pixel_budget(doc, page_limits, pages)
            for index in range(pages):
                with render_page(doc, index, page_limits, alpha=False) as img:
                    if gray:
                        img.transform_colorspace("gray")
                        img.type = "grayscale"
                    out.write(img, req, page_name(f"{base_name}.jpg", index + 1))
    except BaseException:
        out.discard()
        raise
    return out.paths
