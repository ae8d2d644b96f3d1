"""Optimize an image into a pyramid TIFF (OptimizeImagesJob, ReprocessAssetsJob), in a pool worker.

The source goes through the same gate as a conversion (:mod:`jobengine.imaging.convert`): a
regular file under ``max_file_bytes``, its format sniffed from the bytes (PDFs are refused: rip
them), header and ``ping`` sizes under ``max_source_pixels`` before any pixel is decoded, a
truncated JPEG refused, an explicit coder prefix, first frame only. The image is oriented (EXIF),
made 8-bit, stripped of metadata except its ICC profile, and written with ImageMagick's PTIF
coder: the full image, then each level half the size of the one before down to 64 pixels, every
level in 256x256 tiles, JPEG-compressed (quality 90), or Deflate when the image has alpha. The
file is written atomically; on failure nothing is left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wand.image import Image

from jobengine.imaging.convert import open_raster
from jobengine.imaging.encode import OutputFiles
from jobengine.imaging.errors import ConversionFailed
from jobengine.imaging.limits import Limits

__all__ = ["JPEG_QUALITY", "TILE", "make_pyramid"]

TILE = 256
JPEG_QUALITY = 90


def make_pyramid(
    src: Path,
    dst_dir: Path,
    name: str,
    limits: Limits | None = None,
    *,
    token: str = "",
    progress: Callable[[Path], None] | None = None,
    crop: list[int] | None = None,
) -> list[Path]:
    """Write the pyramid TIFF of the image ``src`` as ``dst_dir/name``; returns ``[path]``.
    ``crop`` (``[x, y, w, h]`` in pixels of the oriented image, the asset's upload crop) makes
    the pyramid of that part only, clipped to the image."""
    limits = limits or Limits()
    if not dst_dir.is_dir():
        raise ConversionFailed("the destination directory does not exist")
    out = OutputFiles(dst_dir, token, progress)
    refusal = "a PDF is not an image: rip it into pages first"
    try:
        with open_raster(src, limits, pdf_refusal=refusal) as img:
            out.write_with(name, lambda tmp: _write_ptif(img, tmp, crop))
    except BaseException:
        out.discard()
        raise
    return out.paths


def _apply_crop(img: Image, crop: list[int]) -> None:
    x, y, w, h = (int(v) for v in crop)
    left, top = max(0, x), max(0, y)
    right, bottom = min(img.width, x + w), min(img.height, y + h)
    if right <= left or bottom <= top:
        raise ConversionFailed(f"the crop {x},{y},{w},{h} leaves nothing of the image")
    if (left, top, right, bottom) != (0, 0, img.width, img.height):
        img.crop(left, top, right, bottom)
    img.reset_coords()


def _write_ptif(img: Image, path: Path, crop: list[int] | None = None) -> None:
    img.auto_orient()
    if crop is not None:
        _apply_crop(img, crop)
    img.depth = 8
    if img.type == "bilevel":  # JPEG in TIFF needs 8-bit samples
        img.type = "grayscale"
    elif img.type.startswith("palette"):
        img.type = "truecoloralpha" if img.alpha_channel else "truecolor"
    icc = img.profiles["icc"]
    img.strip()
    if icc:
        img.profiles["icc"] = icc
    if img.alpha_channel:
        img.compression = "zip"
    else:
        img.compression = "jpeg"
        img.compression_quality = JPEG_QUALITY
    img.options["tiff:tile-geometry"] = f"{TILE}x{TILE}"
    img.save(filename=f"ptif:{path}")
