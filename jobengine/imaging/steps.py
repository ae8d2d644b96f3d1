"""The conversion pipeline as data: small ``step(job)`` functions run in order on a wand Image.

Each step does one thing and does nothing when its modifier is absent. The order is
:data:`PIPELINE`; encoding is in :mod:`jobengine.imaging.encode`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wand.color import Color as WandColor
from wand.image import Image

from jobengine.errors import NotSupported
from jobengine.imaging.geometry import Plan
from jobengine.imaging.icc import apply_icc, srgb_profile
from jobengine.imaging.limits import Limits
from jobengine.imaging.request import Color, ImageRequest

__all__ = ["PIPELINE", "Job", "run_pipeline"]

FILTERS = {"bilin": "triangle", "bicub": "catrom", "sharp2": "lanczos", "bisharp": "lanczos2sharp"}
_PALETTE_ENCODERS = ("gif", "png8")


@dataclass
class Job:
    """One image going through the pipeline."""

    img: Image
    req: ImageRequest
    plan: Plan
    limits: Limits

    @property
    def fill(self) -> WandColor:
        """Colour of new canvas areas: transparent for *-alpha formats, else ``bgc``."""
        if self.req.spec.alpha:
            return WandColor("transparent")
        return _wand_color(self.req.bgc)


def _wand_color(c: Color) -> WandColor:
    return WandColor(f"rgb({c.r},{c.g},{c.b})")


def alpha(job: Job) -> None:
    """*-alpha formats keep (or get) an alpha channel; others are flattened onto ``bgc``."""
    img = job.img
    if job.req.spec.alpha:
        img.alpha_channel = "set"
    elif img.alpha_channel:
        img.background_color = _wand_color(job.req.bgc)
        img.alpha_channel = "remove"
        img.alpha_channel = "off"


def orient(job: Job) -> None:
    """Apply the EXIF orientation (the metadata is stripped later)."""
    job.img.auto_orient()


def crop(job: Job) -> None:
    """``crop``/``cropN``: a region of the source, extended with the fill colour outside it."""
    box = job.plan.crop
    if box is not None:
        job.img.background_color = job.fill
        job.img.extent(box.w, box.h, box.x, box.y)
        job.img.page = (box.w, box.h, 0, 0)


def flip(job: Job) -> None:
    """``flip=lr|ud|lrud``."""
    if job.req.flip in ("lr", "lrud"):
        job.img.flop()
    if job.req.flip in ("ud", "lrud"):
        job.img.flip()


def rotate(job: Job) -> None:
    """``rotate=deg`` clockwise; the canvas grows and new corners get the fill colour."""
    if job.req.rotate % 360:
        (sw, sh), (rw, rh) = job.plan.scaled, job.plan.rotated
        sx, sy = sw / rw, sh / rh
        if max(sx, sy) < 0.9 and abs(sx - sy) < 0.01:  # shrink first: rotating is costly
            w, h = job.img.size
            job.img.resize(
                max(1, round(w * sx)), max(1, round(h * sx)), filter=FILTERS[job.req.res_mode]
            )
        job.img.rotate(job.req.rotate, background=job.fill)
        job.img.page = (job.img.width, job.img.height, 0, 0)


def resize(job: Job) -> None:
    """Scale to the planned size with the ``resMode`` filter."""
    width, height = job.plan.scaled
    if job.img.size != (width, height):
        job.img.resize(width, height, filter=FILTERS[job.req.res_mode])


def place(job: Job) -> None:
    """Put the scaled image in the view (``align``), padding with the fill colour or cropping."""
    view = job.plan.view
    if (view.x, view.y, view.w, view.h) != (0, 0, *job.img.size):
        job.img.background_color = job.fill
        job.img.extent(view.w, view.h, view.x, view.y)
        job.img.page = (view.w, view.h, 0, 0)


def rect(job: Job) -> None:
    """``rect=x,y,w,h``: a tile of the final view."""
    box = job.plan.rect
    if box is not None:
        job.img.background_color = job.fill
        job.img.extent(box.w, box.h, box.x, box.y)
        job.img.page = (box.w, box.h, 0, 0)


def unsharp(job: Job) -> None:
    """``op_usm``; the radius is in full-resolution pixels, so it scales with the image."""
    usm = job.req.op_usm
    if usm is None or usm.amount == 0:
        return
    sigma = max(usm.radius * job.plan.scale, 0.3)
    kwargs: dict[str, Any] = {
        "radius": 0,
        "sigma": sigma,
        "amount": usm.amount,
        "threshold": usm.threshold / 255,
    }
    if usm.mono:
        job.img.transform_colorspace("lab")
        job.img.unsharp_mask(channel="red", **kwargs)  # L* is stored in the first channel
        job.img.transform_colorspace("srgb")
    else:
        job.img.unsharp_mask(**kwargs)


def sharpen(job: Job) -> None:
    """``op_sharpen=1``: a basic sharpen after scaling."""
    if job.req.op_sharpen:
        job.img.sharpen(radius=0, sigma=0.7)


def blur(job: Job) -> None:
    """``op_blur=radius`` (pixels of the output image)."""
    if job.req.op_blur > 0:
        job.img.gaussian_blur(radius=0, sigma=job.req.op_blur / 2)


def brightness_contrast(job: Job) -> None:
    """``op_brightness`` and ``op_contrast`` (-100..100)."""
    if job.req.op_brightness or job.req.op_contrast:
        job.img.brightness_contrast(job.req.op_brightness, job.req.op_contrast)


def saturation_hue(job: Job) -> None:
    """``op_saturation`` (-100..100) and ``op_hue`` (-180..180 degrees)."""
    if job.req.op_saturation or job.req.op_hue:
        hue = 100 + job.req.op_hue * 100 / 180
        job.img.modulate(brightness=100, saturation=100 + job.req.op_saturation, hue=hue)


def invert(job: Job) -> None:
    """``op_invert=1`` (colour channels only)."""
    if job.req.op_invert:
        job.img.negate(channel="rgb")


def color(job: Job) -> None:
    """Output colour space: the ``icc=`` profile if given, else the fmt pixel type (naive)."""
    if job.req.icc is not None:
        apply_icc(job.img, job.req.icc)
        return
    target = {"rgb": "srgb", "gray": "gray", "cmyk": "cmyk"}[job.req.fmt.pixel_type]
    if job.img.colorspace == "cmyk" and target != "cmyk" and job.img.profiles["icc"]:
        job.img.profiles["icc"] = srgb_profile()  # a tagged CMYK source: convert with its profile
    if job.img.colorspace != target:
        job.img.transform_colorspace(target)
    if target == "gray":
        job.img.type = "grayscalematte" if job.img.alpha_channel else "grayscale"


def quantize(job: Job) -> None:
    """GIF and PNG8 palettes: ``quantize=adaptive|web[,diffuse|off[,colors[,forced...]]]``."""
    if job.req.spec.encoder not in _PALETTE_ENCODERS:
        return
    q = job.req.quantize
    colors = min(q.colors, 255) if job.req.spec.alpha else q.colors
    if q.palette == "mac":
        raise NotSupported("quantize=mac (the classic Mac OS palette) is not supported")
    if q.palette == "web":
        job.img.posterize(6, dither="floyd_steinberg" if q.dither else "no")
    elif q.forced:
        _remap_forced(job.img, colors, q.forced, q.dither)
    else:
        job.img.quantize(colors, dither=q.dither)


def _remap_forced(img: Image, colors: int, forced: tuple[Color, ...], dither: bool) -> None:
    """Adaptive palette that contains the forced colours: the image's own colours fill the rest."""
    palette = [f"rgb({c.r},{c.g},{c.b})" for c in forced[:colors]]
    room = colors - len(palette)
    if room > 0:
        with img.clone() as adaptive:
            adaptive.quantize(room, dither=False)
            palette += [str(c) for c in list(adaptive.histogram)[:room]]
    with Image(width=len(palette), height=1) as swatch:
        for x, name in enumerate(palette):
            swatch[x, 0] = WandColor(name)
        img.remap(swatch, method="floyd_steinberg" if dither else "no")


def resolution(job: Job) -> None:
    """``printRes``: the dots-per-inch written into the file."""
    if job.req.print_res is not None:
        job.img.units = "pixelsperinch"
        job.img.resolution = (job.req.print_res, job.req.print_res)


def metadata(job: Job) -> None:
    """Strip EXIF/XMP/comments and profiles; ``iccEmbed=1`` keeps the output ICC profile."""
    icc = job.img.profiles["icc"] if job.req.icc_embed else None
    job.img.strip()
    if icc:
        job.img.profiles["icc"] = icc


Step = Callable[[Job], None]

PIPELINE: tuple[Step, ...] = (
    orient,
    alpha,
    crop,
    flip,
    rotate,
    resize,
    place,
    rect,
    unsharp,
    sharpen,
    blur,
    brightness_contrast,
    saturation_hue,
    invert,
    color,
    quantize,
    resolution,
    metadata,
)


def run_pipeline(job: Job, steps: tuple[Step, ...] = PIPELINE) -> None:
    """Run ``steps`` in order on ``job``."""
    for step in steps:
        step(job)
    if job.img.size != job.plan.output:  # rounding guard: the planned size, always
        job.img.resize(*job.plan.output)
