"""Upload crops: the crop rectangle an Image asset carries in the catalog (``Asset.crop``).

As in IPS, a crop set at upload is a property of the asset's record, not a change of its file:
the file is stored as it came, and ExportJob ``fmt=convert``, OptimizeImagesJob and the Image
Serving publish apply the crop. It is ``x,y,w,h`` in pixels of the image as shown (after its
EXIF orientation), like Image Serving's ``crop=``.

* :class:`CropOrder` is what a job asks (``manualCropOptions``, ``autoColorCropOptions``,
  ``autoTransparentCropOptions``, ``preserveCrop``); :meth:`CropOrder.decide` applies the
  ``preserveCrop`` rule to an asset's current crop: explicit manual edges other than 0,0,0,0
  always apply; otherwise ``preserveCrop`` true (the default) keeps an existing crop and false
  clears it. The job's auto crop, if any, is then computed where no crop was kept: on a new
  asset, an asset without a crop, or with ``preserveCrop`` false.
* :func:`measure` computes the new crop of a stored image in the conversion pool (never decoded
  in this process): manual edges are cut from its size; auto crops trim the border there
  (:mod:`jobengine.imaging.trim`). ``tolerance`` (0 exact .. 1 most lenient) is ImageMagick's
  ``-fuzz`` as a fraction: fuzz = tolerance x 100 %.
* A crop that leaves nothing, or cuts more than the image has, is not set: :class:`Measured`
  carries the reason for a warning row. A trim finding no border, or a transparent trim of an
  image without alpha, sets no crop (nothing to trim) and needs no row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jobengine import imaging
from jobengine.imaging.request import Crop, ImageRequest

__all__ = [
    "CROP_FIELDS",
    "NO_CROP",
    "CropBox",
    "CropOrder",
    "Decision",
    "Measured",
    "manual_box",
    "measure",
    "parse_crop",
    "with_crop",
]

CROP_FIELDS = frozenset(
    {"manual_crop_options", "auto_color_crop_options", "auto_transparent_crop_options"}
)

Decision = Literal["compute", "keep", "clear"]


@dataclass(frozen=True)
class CropBox:
    """``w`` x ``h`` pixels at ``x``, ``y`` of the oriented image."""

    x: int
    y: int
    w: int
    h: int

    def text(self) -> str:
        """As stored in ``Asset.crop``."""
        return f"{self.x},{self.y},{self.w},{self.h}"

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)


def parse_crop(text: str | None) -> CropBox | None:
    """``Asset.crop`` as a box (None when absent or unreadable)."""
    if not text:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        return None
    if x < 0 or y < 0 or w < 1 or h < 1:
        return None
    return CropBox(x, y, w, h)


@dataclass(frozen=True)
class CropOrder:
    """The crop a job asks for: ``kind`` None (no crop option, or a manual 0,0,0,0), ``manual``
    (``edges`` left, right, top, bottom), ``color`` (``corner``, ``tolerance``) or
    ``transparent`` (``tolerance``); and ``preserve`` (``preserveCrop``, default true)."""

    kind: Literal["manual", "color", "transparent"] | None = None
    edges: tuple[int, int, int, int] = (0, 0, 0, 0)
    corner: str = "UpperLeft"
    tolerance: float = 0.0
    preserve: bool = True

    @classmethod
    def of(cls, job: Any) -> CropOrder:
        """The order of a processing payload (fields it lacks count as absent)."""
        preserve = getattr(job, "preserve_crop", None) is not False
        manual = getattr(job, "manual_crop_options", None)
        color = getattr(job, "auto_color_crop_options", None)
        transparent = getattr(job, "auto_transparent_crop_options", None)
        if manual is not None:
            edges = (int(manual.left), int(manual.right), int(manual.top), int(manual.bottom))
            if any(edges):
                return cls("manual", edges, preserve=preserve)
        if color is not None:
            return cls(
                "color", corner=str(color.corner), tolerance=color.tolerance, preserve=preserve
            )
        if transparent is not None:
            return cls("transparent", tolerance=transparent.tolerance, preserve=preserve)
        return cls(preserve=preserve)

    def decide(self, existing: str | None) -> Decision:
        """What happens to an asset whose current crop is ``existing`` (None: none)."""
        if self.kind == "manual" or (self.kind is not None and not (existing and self.preserve)):
            return "compute"
        if existing:
            return "keep" if self.preserve else "clear"
        return "keep"


NO_CROP = CropOrder()  # no crop option, preserveCrop true: an asset's crop stays as it is


@dataclass(frozen=True)
class Measured:
    """A computed crop: ``box`` (None: no crop), or ``warning`` why none was set."""

    box: CropBox | None = None
    warning: str | None = None

    @property
    def crop(self) -> str | None:
        return None if self.box is None else self.box.text()


def manual_box(edges: tuple[int, int, int, int], width: int, height: int) -> Measured:
    """The part of a ``width`` x ``height`` image left once ``edges`` (left, right, top, bottom)
    are cut off."""
    left, right, top, bottom = edges
    w, h = width - left - right, height - top - bottom
    if w < 1 or h < 1:
        cut = f"{left},{right},{top},{bottom}"
        return Measured(
            warning=f"the manual crop {cut} (left,right,top,bottom) leaves nothing of the "
            f"{width}x{height} image"
        )
    if (w, h) == (width, height):
        return Measured()
    return Measured(CropBox(left, top, w, h))


def measure(order: CropOrder, src: Path) -> Measured:
    """The crop ``order`` gives the local image file ``src`` (measured in the conversion pool;
    raises its IpsFaults for a corrupt or oversized image)."""
    if order.kind is None:
        return Measured()
    if order.kind == "manual":
        answer = imaging.trim_box(src)
        return manual_box(order.edges, int(answer["width"]), int(answer["height"]))
    answer = imaging.trim_box(src, mode=order.kind, corner=order.corner, fuzz=order.tolerance)
    box = answer["box"]
    if box is None:
        return Measured()
    if not box:
        what = "color" if order.kind == "color" else "transparent"
        return Measured(
            warning=f"the auto {what} crop (tolerance {order.tolerance:g}) leaves nothing of "
            f"the {answer['width']}x{answer['height']} image"
        )
    x, y, w, h = (int(v) for v in box)
    return Measured(CropBox(x, y, w, h))


def with_crop(req: ImageRequest, box: CropBox | None) -> ImageRequest:
    """The conversion ``req`` of an image whose upload crop is ``box``: the catalog crop comes
    before the modifiers (as Image Serving applies a catalog crop), so a ``crop=``/``cropN`` of
    the request is taken within the cropped view and both become one source-pixel crop."""
    if box is None:
        return req
    inner = req.crop
    if inner is None:
        crop = Crop(box.x, box.y, box.w, box.h)
    elif inner.normalized:
        crop = Crop(
            box.x + inner.x * box.w, box.y + inner.y * box.h, inner.w * box.w, inner.h * box.h
        )
    else:
        crop = Crop(box.x + inner.x, box.y + inner.y, inner.w, inner.h)
    return dataclasses.replace(req, crop=crop)
