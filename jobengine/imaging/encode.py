"""Encoders: one small writer per output encoder, and atomic output files.

Every file is written to a hidden temporary name in the destination directory and renamed into
place when complete, so a reader never sees a partial file, even when the worker is killed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import zlib
from collections.abc import Callable
from pathlib import Path

import wand.version
from wand.api import library
from wand.image import Image

from jobengine.errors import NotSupported
from jobengine.imaging.pdf import write_image_pdf
from jobengine.imaging.request import ImageRequest

__all__ = ["ENCODERS", "OutputFiles", "require_encoder"]

log = logging.getLogger(__name__)

PLANE_INTERLACE = 3  # IM6 InterlaceType: progressive JPEG (imaging.md: the property setter fails)
_IMAGE_TYPE = {"rgb": 6, "cmyk": 8}  # IM6 TrueColorType, ColorSeparationType (+1: with alpha)
library.MagickSetInterlaceScheme.argtypes = [ctypes.c_void_p, ctypes.c_int]
library.MagickSetType.argtypes = [ctypes.c_void_p, ctypes.c_int]
_CODERS = {"avif": "AVIF", "heic": "HEIC", "jp2": "JP2"}


def require_encoder(req: ImageRequest) -> None:
    """Raise NotSupported unless this server can write ``req``'s format."""
    spec = req.spec
    if not spec.supported:
        raise NotSupported(f"output format {spec.name!r} is not supported by conversions")
    coder = _CODERS.get(spec.encoder)
    if coder and not wand.version.formats(coder):
        raise NotSupported(
            f"output format {spec.name!r} needs the ImageMagick coder {coder}, "
            "which this installation does not have"
        )


def _force_type(img: Image, req: ImageRequest) -> None:
    """Keep RGB/CMYK output even when every pixel is gray (IM would write a gray file)."""
    kind = _IMAGE_TYPE.get(req.fmt.pixel_type)
    if kind is not None:
        library.MagickSetType(img.wand, kind + int(bool(img.alpha_channel)))


def _jpeg(img: Image, req: ImageRequest, path: Path) -> None:
    img.compression_quality = req.qlt.quality
    if req.qlt.chroma:
        img.options["jpeg:sampling-factor"] = "1x1"
    if req.jpeg_size:
        img.options["jpeg:extent"] = f"{req.jpeg_size}KB"
    if req.fmt.format == "pjpeg":
        library.MagickSetInterlaceScheme(img.wand, PLANE_INTERLACE)
    _force_type(img, req)
    img.save(filename=f"jpeg:{path}")


def _png(img: Image, req: ImageRequest, path: Path) -> None:
    gray = req.fmt.pixel_type == "gray"
    color_type = {(False, False): 2, (False, True): 6, (True, False): 0, (True, True): 4}
    img.options["png:color-type"] = str(color_type[gray, req.spec.alpha])
    img.options["png:bit-depth"] = "8"
    img.compression_quality = 65  # zlib level 6, adaptive filtering
    img.save(filename=f"png:{path}")


def _png8(img: Image, req: ImageRequest, path: Path) -> None:
    img.compression_quality = 95  # zlib level 9: palette images are small
    img.save(filename=f"png8:{path}")


def _gif(img: Image, req: ImageRequest, path: Path) -> None:
    img.save(filename=f"gif:{path}")


def _tiff(img: Image, req: ImageRequest, path: Path) -> None:
    compression = req.fmt.effective_compression or "none"
    img.compression = {"none": "no", "lzw": "lzw", "zip": "zip", "jpeg": "jpeg"}[compression]
    if compression == "jpeg":
        img.compression_quality = req.qlt.quality
    _force_type(img, req)
    img.save(filename=f"tiff:{path}")


def _webp(img: Image, req: ImageRequest, path: Path) -> None:
    img.compression_quality = req.qlt.quality
    img.options["webp:method"] = "4"
    if req.fmt.effective_compression == "lossless":
        img.options["webp:lossless"] = "true"
    img.save(filename=f"webp:{path}")


def _heif(coder: str) -> Callable[[Image, ImageRequest, Path], None]:
    def write(img: Image, req: ImageRequest, path: Path) -> None:
        img.compression_quality = req.qlt.quality
        img.save(filename=f"{coder}:{path}")

    return write


def _jp2(img: Image, req: ImageRequest, path: Path) -> None:
    lossless = req.fmt.effective_compression == "lossless"
    img.compression_quality = 100 if lossless else req.qlt.quality
    img.save(filename=f"jp2:{path}")


def _pdf(img: Image, req: ImageRequest, path: Path) -> None:
    compression = req.fmt.effective_compression
    pixel_type = req.fmt.pixel_type
    img.depth = 8
    _force_type(img, req)
    pdf_filter: str | None = None
    if compression == "jpeg":
        img.compression_quality = req.qlt.quality
        data, pdf_filter = img.make_blob("jpeg"), "DCTDecode"
    else:
        data = img.make_blob(pixel_type)
        if compression == "zip":
            data, pdf_filter = zlib.compress(data, 6), "FlateDecode"
    dpi = req.print_res or 72.0
    page = (img.width * 72 / dpi, img.height * 72 / dpi)
    with path.open("wb") as out:
        write_image_pdf(
            out,
            data,
            size=img.size,
            pixel_type=pixel_type,
            pdf_filter=pdf_filter,
            page_size=page,
            inverted_cmyk=pdf_filter == "DCTDecode" and pixel_type == "cmyk",
        )


ENCODERS: dict[str, Callable[[Image, ImageRequest, Path], None]] = {
    "jpeg": _jpeg,
    "png": _png,
    "png8": _png8,
    "gif": _gif,
    "tiff": _tiff,
    "webp": _webp,
    "avif": _heif("avif"),
    "heic": _heif("heic"),
    "jp2": _jp2,
    "pdf": _pdf,
}


class OutputFiles:
    """Atomic writes into ``dst_dir``: temp files are ``.jobengine-<token>-<n>.part``."""

    def __init__(
        self,
        dst_dir: Path,
        token: str = "",
        progress: Callable[[Path], None] | None = None,
        *,
        durable: bool = True,
    ) -> None:
        self.dst_dir = dst_dir
        self.token = token or secrets.token_hex(8)
        self.progress = progress
        self.durable = durable  # flushed to disk before it is renamed into place
        self.paths: list[Path] = []

    def write(self, img: Image, req: ImageRequest, name: str) -> Path:
        """Encode ``img`` as ``req`` says into ``dst_dir/name``, atomically."""
        return self.write_with(name, lambda tmp: ENCODERS[req.spec.encoder](img, req, tmp))

    def write_with(self, name: str, encode: Callable[[Path], None]) -> Path:
        """``encode(tmp)`` writes a file; it becomes ``dst_dir/name`` atomically."""
        tmp = self.dst_dir / f".jobengine-{self.token}-{len(self.paths)}.part"
        final = self.dst_dir / name
        try:
            encode(tmp)
            if self.durable:
                with tmp.open("rb") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self.paths.append(final)
        if self.progress is not None:
            self.progress(final)
        return final

    def discard(self) -> None:
        """Remove what this conversion wrote (a failed multi-page conversion leaves nothing)."""
        for path in self.paths:
            path.unlink(missing_ok=True)
        for tmp in self.dst_dir.glob(f".jobengine-{self.token}-*.part"):
            tmp.unlink(missing_ok=True)
        self.paths.clear()
