"""PDF in and out, without Ghostscript.

* In: pages are rasterised with pypdfium2 (PDFium: no PostScript interpreter, no shell or file
  operators), one page at a time, at ``Limits.pdf_dpi`` lowered so a page stays under
  ``max_pdf_page_pixels`` (and ``max_source_pixels``). A document with more than
  ``max_pdf_pages`` pages fails at once, and so does one whose pages would raster to more than
  ``max_pdf_pixels`` in all (:func:`check_pixel_budget`, from the page sizes alone): the page
  count alone does not bound the work, a few huge pages do as much.
* Out (``fmt=pdf``): a one-page PDF holding the image (DCT, Flate or uncompressed), written by
  :func:`write_image_pdf`; ``printRes`` (default 72) sets the page size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pypdfium2 as pdfium
from wand.image import Image

from jobengine.imaging.errors import ConversionFailed
from jobengine.imaging.limits import Limits

__all__ = [
    "check_pixel_budget",
    "open_pdf",
    "page_count",
    "page_pixels",
    "render_page",
    "write_image_pdf",
]


@contextmanager
def open_pdf(src: Path, limits: Limits) -> Iterator[pdfium.PdfDocument]:
    """The open document; refuses unreadable or encrypted files and too many pages."""
    try:
        doc = pdfium.PdfDocument(str(src))
    except pdfium.PdfiumError as exc:
        raise ConversionFailed(f"the PDF cannot be opened: {exc}") from None
    try:
        pages = len(doc)
        if pages == 0:
            raise ConversionFailed("the PDF has no pages")
        if pages > limits.max_pdf_pages:
            raise ConversionFailed(
                f"the PDF has {pages} pages; at most {limits.max_pdf_pages} "
                "are converted (max_pdf_pages)"
            )
        yield doc
    finally:
        doc.close()


def page_count(doc: pdfium.PdfDocument) -> int:
    """Number of pages."""
    return len(doc)


def _scale(width_pt: float, height_pt: float, limits: Limits) -> float:
    scale = limits.pdf_dpi / 72
    pixels = width_pt * height_pt * scale * scale
    cap = min(limits.max_source_pixels, limits.max_pdf_page_pixels)
    if pixels > cap:
        scale *= math.sqrt(cap / pixels) * 0.999
    return scale


def page_pixels(width_pt: float, height_pt: float, limits: Limits) -> int:
    """The pixels a page of this size rasters to under ``limits``."""
    scale = _scale(width_pt, height_pt, limits)
    return math.ceil(width_pt * scale) * math.ceil(height_pt * scale)


def check_pixel_budget(doc: pdfium.PdfDocument, limits: Limits, pages: int) -> None:
    """ConversionFailed when the first ``pages`` pages would raster to more than
    ``max_pdf_pixels`` in all (read from the page sizes: nothing is rendered)."""
    total = 0
    for index in range(pages):
        try:
            width_pt, height_pt = doc.get_page_size(index)
        except pdfium.PdfiumError as exc:
            raise ConversionFailed(f"PDF page {index + 1} cannot be read: {exc}") from None
        if not (0 < width_pt < 1e6 and 0 < height_pt < 1e6):
            raise ConversionFailed(f"PDF page {index + 1} has no usable size")
        total += page_pixels(width_pt, height_pt, limits)
    if total > limits.max_pdf_pixels:
        raise ConversionFailed(
            f"the PDF's {pages} page(s) would be {total // 1_000_000} megapixels at "
            f"{limits.pdf_dpi:g} dpi; at most {limits.max_pdf_pixels // 1_000_000} are ripped "
            "(max_pdf_pixels): lower the resolution"
        )


def render_page(doc: pdfium.PdfDocument, index: int, limits: Limits, alpha: bool) -> Image:
    """Page ``index`` (0-based) as a wand Image (RGB on white, or RGBA on transparent)."""
    page = doc[index]
    try:
        width_pt, height_pt = page.get_size()
        fill = (255, 255, 255, 0 if alpha else 255)
        bitmap = page.render(
            scale=_scale(width_pt, height_pt, limits), fill_color=fill, rev_byteorder=True
        )
        pil = bitmap.to_pil()
        bitmap.close()
    except pdfium.PdfiumError as exc:
        raise ConversionFailed(f"PDF page {index + 1} cannot be rendered: {exc}") from None
    finally:
        page.close()
    raw = "rgba" if pil.mode == "RGBA" else "rgb"
    if pil.mode not in ("RGB", "RGBA"):
        pil = pil.convert("RGB")
    return Image(blob=pil.tobytes(), format=raw, width=pil.width, height=pil.height, depth=8)


_COLOR_SPACES = {"rgb": "DeviceRGB", "gray": "DeviceGray", "cmyk": "DeviceCMYK"}


def write_image_pdf(
    out: BinaryIO,
    data: bytes,
    *,
    size: tuple[int, int],
    pixel_type: str,
    pdf_filter: str | None,
    page_size: tuple[float, float],
    inverted_cmyk: bool = False,
) -> None:
    """Write a one-page PDF showing one 8-bit image stream (``pdf_filter``: DCTDecode,
    FlateDecode or None) over the whole ``page_size`` (points)."""
    (width, height), (pw, ph) = size, page_size
    extra = f" /Filter /{pdf_filter}" if pdf_filter else ""
    if inverted_cmyk:
        extra += " /Decode [1 0 1 0 1 0 1 0]"
    image = (
        f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace "
        f"/{_COLOR_SPACES[pixel_type]} /BitsPerComponent 8 /Length {len(data)}{extra} >>"
    )
    content = f"q {pw:.4f} 0 0 {ph:.4f} 0 0 cm /Im0 Do Q".encode()
    bodies: list[tuple[bytes, bytes | None]] = [
        (b"<< /Type /Catalog /Pages 2 0 R >>", None),
        (b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", None),
        (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.4f} {ph:.4f}] /Resources << "
            "/XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>".encode(),
            None,
        ),
        (image.encode(), data),
        (f"<< /Length {len(content)} >>".encode(), content),
    ]
    start = out.tell()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, (head, stream) in enumerate(bodies, 1):
        offsets.append(out.tell() - start)
        out.write(f"{number} 0 obj\n".encode() + head)
        if stream is not None:
            out.write(b"\nstream\n")
            out.write(stream)
            out.write(b"\nendstream")
        out.write(b"\nendobj\n")
    xref = out.tell() - start
    out.write(f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode())
    out.write(b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets))
    out.write(
        f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
