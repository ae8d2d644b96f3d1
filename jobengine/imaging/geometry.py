"""Size planning: from the source size and the request to every intermediate size, with no pixels.

The plan is computed from the header size (before decoding), so limits are enforced first.
Order: crop/cropN on the source, flip, rotate (canvas grows), scale (``scl`` or ``wid``/``hei``
with ``fit``), place in the view (``align``, fill with ``bgc``), then ``rect``.

* ``scl=f`` scales by 1/f; with ``wid``/``hei`` as well, the scaled image is cropped or padded
  to them (Image Serving rule), placed by ``align``.
* ``wid`` and ``hei`` together use ``fit=`` (default ``fit,0``: fit inside, no upscaling, the view
  is exactly wid x hei). One of them alone scales to it keeping the aspect ratio.
* None of them: the full (cropped) resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jobengine.errors import LimitExceeded, NotSupported
from jobengine.imaging.errors import ConversionFailed
from jobengine.imaging.limits import Limits
from jobengine.imaging.request import Crop, ImageRequest

__all__ = ["Box", "Plan", "check_plan", "jpeg_size_hint", "plan"]


@dataclass(frozen=True)
class Box:
    """A ``w`` x ``h`` region at ``x``, ``y``; as ImageMagick extent arguments it may reach
    outside the image (negative offsets pad on the left/top)."""

    x: int
    y: int
    w: int
    h: int

    @property
    def pixels(self) -> int:
        """``w * h``."""
        return self.w * self.h


@dataclass(frozen=True)
class Plan:
    """Every size of one conversion (see the module docstring for the order)."""

    source: tuple[int, int]
    crop: Box | None
    rotated: tuple[int, int]
    scaled: tuple[int, int]
    view: Box
    rect: Box | None

    @property
    def output(self) -> tuple[int, int]:
        """The final image size."""
        box = self.rect or self.view
        return box.w, box.h

    @property
    def scale(self) -> float:
        """Linear scale factor from the (cropped, rotated) source to the scaled image."""
        return math.sqrt(self.scaled[0] * self.scaled[1] / (self.rotated[0] * self.rotated[1]))


def _crop_box(crop: Crop, width: int, height: int) -> Box:
    if not crop.normalized:
        return Box(int(crop.x), int(crop.y), int(crop.w), int(crop.h))
    x, y = round(crop.x * width), round(crop.y * height)
    return Box(x, y, max(1, round(crop.w * width)), max(1, round(crop.h * height)))


def _rotated(size: tuple[int, int], degrees: float) -> tuple[int, int]:
    if degrees % 360 == 0:
        return size
    if degrees % 90 == 0:
        return (size[1], size[0]) if degrees % 180 else size
    rad = math.radians(degrees)
    cos, sin = abs(math.cos(rad)), abs(math.sin(rad))
    w, h = size
    return math.ceil(w * cos + h * sin), math.ceil(w * sin + h * cos)


# A side no image can have (MaxPix is 100 MP): a scale that passes it is refused here, before
# an absurd factor (scl=1e-300, or 1e-320 whose inverse is infinite) becomes a number at all.
MAX_SIDE = 1_000_000_000


def _side(value: float) -> int:
    if not value <= MAX_SIDE:  # also catches inf and nan
        raise LimitExceeded(f"the scaled image would be over {MAX_SIDE} pixels wide or high")
    return max(1, round(value))


def _times(size: tuple[int, int], sx: float, sy: float) -> tuple[int, int]:
    return _side(size[0] * sx), _side(size[1] * sy)


def _fit(size: tuple[int, int], req: ImageRequest) -> tuple[tuple[int, int], tuple[int, int]]:
    assert req.wid is not None and req.hei is not None
    view = (req.wid, req.hei)
    xs, ys = req.wid / size[0], req.hei / size[1]
    mode, cap = req.fit.mode, (math.inf if req.fit.upscale else 1.0)
    if mode == "stretch":
        return _times(size, min(xs, cap), min(ys, cap)), view
    s = {
        "fit": min(xs, ys),
        "constrain": min(xs, ys),
        "crop": max(xs, ys),
        "wrap": max(xs, ys),
        "hfit": xs,
        "vfit": ys,
    }[mode]
    scaled = _times(size, min(s, cap), min(s, cap))
    if mode == "fit":
        scaled = (min(scaled[0], view[0]), min(scaled[1], view[1]))
    return scaled, (scaled if mode in ("constrain", "wrap") else view)


def _scale(size: tuple[int, int], req: ImageRequest) -> tuple[tuple[int, int], tuple[int, int]]:
    """(scaled size, view size) for a source of ``size``."""
    if req.scl is not None:
        scaled = _times(size, 1 / req.scl, 1 / req.scl)
        return scaled, (req.wid or scaled[0], req.hei or scaled[1])
    if req.wid is not None and req.hei is not None:
        return _fit(size, req)
    if req.wid is not None:
        s = req.wid / size[0]
        scaled = (req.wid, max(1, round(size[1] * s)))
        return scaled, scaled
    if req.hei is not None:
        s = req.hei / size[1]
        scaled = (max(1, round(size[0] * s)), req.hei)
        return scaled, scaled
    return size, size


def plan(width: int, height: int, req: ImageRequest) -> Plan:
    """The plan for a ``width`` x ``height`` source (already EXIF-oriented)."""
    crop = _crop_box(req.crop, width, height) if req.crop else None
    cropped = (crop.w, crop.h) if crop else (width, height)
    rotated = _rotated(cropped, req.rotate)
    scaled, (vw, vh) = _scale(rotated, req)
    ox = round((vw - scaled[0]) * (req.align.horiz + 1) / 2)
    oy = round((vh - scaled[1]) * (req.align.vert + 1) / 2)
    rect = None
    if req.rect is not None:
        if req.rect.scale != 1.0:
            raise NotSupported(f"rect scale {req.rect.scale:g} is not supported (only 1)")
        rect = Box(req.rect.x, req.rect.y, req.rect.w, req.rect.h)
    return Plan((width, height), crop, rotated, scaled, Box(-ox, -oy, vw, vh), rect)


def check_plan(p: Plan, limits: Limits) -> None:
    """Refuse a plan whose source or output passes the limits (before any decoding)."""
    w, h = p.source
    if w * h > limits.max_source_pixels:
        raise ConversionFailed(
            f"source image is {w}x{h} = {w * h} pixels; the limit is "
            f"{limits.max_source_pixels} (max_source_pixels)"
        )
    if p.crop is not None and p.crop.pixels > limits.max_source_pixels:
        raise LimitExceeded(
            f"crop {p.crop.w}x{p.crop.h} is larger than {limits.max_source_pixels}"
            " pixels (max_source_pixels)"
        )
    if p.rotated[0] * p.rotated[1] > 2 * limits.max_source_pixels:
        raise LimitExceeded("the rotated image is larger than twice max_source_pixels")
    for what, (ow, oh) in (
        ("scaled", p.scaled),
        ("output", p.output),
        ("view", (p.view.w, p.view.h)),
    ):
        if ow * oh > limits.max_output_pixels:
            raise LimitExceeded(
                f"{what} image {ow}x{oh} = {ow * oh} pixels is larger than MaxPix "
                f"{limits.max_output_pixels} (max_output_pixels)"
            )


def jpeg_size_hint(p: Plan, req: ImageRequest, raw: tuple[int, int]) -> tuple[int, int] | None:
    """ImageMagick's ``jpeg:size`` read hint (shrink-on-load) for a JPEG of ``raw`` pixels as
    stored (before EXIF orientation), or None when it must not be used.

    With the hint, libjpeg decodes at a reduced scale (DCT scaling): ImageMagick 6 picks
    1/floor(min(raw_w / hint_w, raw_h / hint_h)) and libjpeg-turbo rounds that up to the next
    M/8, so the decoded image is never smaller than the hint. The hint is the scaled size
    expressed in stored pixels (one factor for both axes, the larger one), so the resize step
    always shrinks and never upscales: same size, no loss of detail. It is only given when the
    plan shrinks by 2x or more (above that the scale would be 1 anyway), and not with ``crop``
    or ``rotate``, whose steps work in full-resolution source pixels.
    """
    if req.crop is not None or req.rotate % 360:
        return None
    factor = max(p.scaled[0] / p.rotated[0], p.scaled[1] / p.rotated[1])
    if factor > 0.5:
        return None
    return math.ceil(raw[0] * factor), math.ceil(raw[1] * factor)
