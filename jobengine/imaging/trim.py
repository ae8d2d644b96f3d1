"""Measure an image for an upload crop (UploadUrlsJob, UploadDirectoryJob, ReprocessAssetsJob),
inside a pool worker: its size, and for an auto crop the box left once a border is trimmed.

The source goes through the same gate as a conversion (:mod:`jobengine.imaging.convert`): a
regular file under ``max_file_bytes``, its format sniffed from the bytes (a PDF is refused),
header and ``ping`` sizes under ``max_source_pixels`` before any pixel is decoded, a truncated
JPEG refused, an explicit coder prefix, first frame only. Sizes and boxes are in pixels of the
image as shown, i.e. after its EXIF orientation (the frame Image Serving's ``crop=`` uses).

``mode``:

* ``size``: the size only (a manual crop is cut from it by the caller);
* ``color``: trim the border whose color matches the pixel at ``corner`` (``UpperLeft``,
  ``UpperRight``, ``BottomLeft``, ``BottomRight``) within ``fuzz`` (0..1 of ImageMagick's color
  distance: ``-fuzz`` as a fraction of QuantumRange);
* ``transparent``: trim the fully transparent border, or within ``fuzz`` the nearly transparent
  one (the border color is ``none``); an image without alpha has nothing to trim (``box`` null).

The answer is one JSON file ``dst_dir/<base_name>``, written atomically: ``{"width", "height",
"alpha", "box"}``, ``box`` being ``[x, y, w, h]`` of what is kept, ``[]`` when the trim leaves
nothing, or null when there is nothing to trim (or ``mode`` is ``size``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wand.api import library
from wand.color import Color
from wand.image import Image

from jobengine.imaging.convert import open_raster
from jobengine.imaging.encode import OutputFiles
from jobengine.imaging.errors import ConversionFailed
from jobengine.imaging.limits import Limits

__all__ = ["CORNERS", "MODES", "trim_box"]

MODES = ("size", "color", "transparent")
CORNERS = ("UpperLeft", "UpperRight", "BottomLeft", "BottomRight")


def trim_box(
    src: Path,
    dst_dir: Path,
    base_name: str,
    limits: Limits | None = None,
    *,
    mode: str = "size",
    corner: str = "UpperLeft",
    fuzz: float = 0.0,
    token: str = "",
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Measure ``src`` (see the module) into the JSON file ``dst_dir/base_name``."""
    limits = limits or Limits()
    if mode not in MODES:
        raise ConversionFailed(f"unknown trim mode {mode!r}")
    if corner not in CORNERS:
        raise ConversionFailed(f"unknown corner {corner!r}")
    if not 0.0 <= fuzz <= 1.0:
        raise ConversionFailed(f"fuzz {fuzz!r} is outside 0..1")
    if not dst_dir.is_dir():
        raise ConversionFailed("the destination directory does not exist")
    out = OutputFiles(dst_dir, token, progress)
    try:
        with open_raster(src, limits, pdf_refusal="a PDF is not an image") as img:
            answer = _measure(img, mode, corner, fuzz)
            data = json.dumps(answer).encode()
            out.write_with(base_name, lambda tmp: _write(tmp, data))
    except BaseException:
        out.discard()
        raise
    return out.paths


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _corner_pixel(img: Image, corner: str) -> Color:
    x = img.width - 1 if corner.endswith("Right") else 0
    y = img.height - 1 if corner.startswith("Bottom") else 0
    pixel: Color = img[x, y]
    return pixel


def _measure(img: Image, mode: str, corner: str, fuzz: float) -> dict[str, Any]:
    img.auto_orient()
    img.reset_coords()
    width, height = img.width, img.height
    alpha = bool(img.alpha_channel)
    answer: dict[str, Any] = {"width": width, "height": height, "alpha": alpha, "box": None}
    if mode == "size" or (mode == "transparent" and not alpha):
        return answer
    color = Color("none") if mode == "transparent" else _corner_pixel(img, corner)
    with color:
        # a 1-pixel frame of the border color, then ImageMagick's trim: the page offset of
        # what is left, less that frame, is the box in the original's pixels
        img.border(color, 1, 1, compose="copy")
    distance = fuzz * img.quantum_range
    img.fuzz = distance
    library.MagickTrimImage(img.wand, distance)
    page_w, page_h, page_x, page_y = img.page
    del page_w, page_h
    x, y, w, h = page_x - 1, page_y - 1, img.width, img.height
    if x < 0 or y < 0 or x + w > width or y + h > height:
        answer["box"] = []  # everything matched the border: nothing would be left
    elif (x, y, w, h) != (0, 0, width, height):
        answer["box"] = [x, y, w, h]
    return answer
