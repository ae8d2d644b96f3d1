"""The parsed conversion request (:class:`ImageRequest`), the output format table and file names.

Values are typed and immutable; defaults follow the Image Serving docs (``fmt=jpeg,rgb``,
``qlt=80,0``, ``fit=fit,0``, ``align=0,0``, ``quantize=adaptive,diffuse,256``, white ``bgc``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "FORMATS",
    "Align",
    "Color",
    "Crop",
    "Fit",
    "FormatSpec",
    "Icc",
    "ImageRequest",
    "OutputFormat",
    "Quality",
    "Quantize",
    "Rect",
    "Usm",
    "output_name",
    "page_name",
]

PixelType = Literal["rgb", "gray", "cmyk"]
FitMode = Literal["fit", "constrain", "crop", "wrap", "stretch", "hfit", "vfit"]
ResMode = Literal["bilin", "bicub", "sharp2", "bisharp"]
Flip = Literal["lr", "ud", "lrud"]
Palette = Literal["adaptive", "web", "mac"]


@dataclass(frozen=True)
class FormatSpec:
    """What one ``fmt=`` format name means for the converter."""

    name: str
    extension: str
    encoder: str  # jpeg, png, png8, gif, tiff, webp, avif, heic, jp2, pdf; "" = not produced here
    alpha: bool = False
    pixel_types: frozenset[str] = frozenset({"rgb", "gray"})
    compressions: frozenset[str] = frozenset()
    default_compression: str | None = None

    @property
    def supported(self) -> bool:
        """Whether this server can produce the format at all (AVIF/HEIC/JP2 also need the coder)."""
        return bool(self.encoder)


_RGB_GRAY_CMYK = frozenset({"rgb", "gray", "cmyk"})
_RGB = frozenset({"rgb"})
_TIFF = frozenset({"none", "lzw", "zip", "jpeg"})
_LOSS = frozenset({"lossy", "lossless"})


def _spec(name: str, ext: str, encoder: str, **kw: object) -> tuple[str, FormatSpec]:
    return name, FormatSpec(name, ext, encoder, **kw)  # type: ignore[arg-type]


FORMATS: dict[str, FormatSpec] = dict(
    [
        _spec("jpeg", ".jpg", "jpeg", pixel_types=_RGB_GRAY_CMYK),
        _spec("pjpeg", ".jpg", "jpeg", pixel_types=_RGB_GRAY_CMYK),
        _spec("png", ".png", "png"),
        _spec("png-alpha", ".png", "png", alpha=True),
        _spec("png8", ".png", "png8"),
        _spec("png8-alpha", ".png", "png8", alpha=True),
        _spec("gif", ".gif", "gif"),
        _spec("gif-alpha", ".gif", "gif", alpha=True),
        _spec(
            "tif",
            ".tif",
            "tiff",
            pixel_types=_RGB_GRAY_CMYK,
            compressions=_TIFF,
            default_compression="none",
        ),
        _spec(
            "tif-alpha",
            ".tif",
            "tiff",
            alpha=True,
            pixel_types=_RGB_GRAY_CMYK,
            compressions=_TIFF - {"jpeg"},
            default_compression="none",
        ),
        _spec(
            "webp",
            ".webp",
            "webp",
            pixel_types=_RGB,
            compressions=_LOSS,
            default_compression="lossy",
        ),
        _spec(
            "webp-alpha",
            ".webp",
            "webp",
            alpha=True,
            pixel_types=_RGB,
            compressions=_LOSS,
            default_compression="lossy",
        ),
        _spec("avif", ".avif", "avif", pixel_types=_RGB),
        _spec("avif-alpha", ".avif", "avif", alpha=True, pixel_types=_RGB),
        _spec("heic", ".heic", "heic", pixel_types=_RGB),
        _spec("jpeg2000", ".jp2", "jp2", compressions=_LOSS, default_compression="lossy"),
        _spec(
            "jpeg2000-alpha",
            ".jp2",
            "jp2",
            alpha=True,
            compressions=_LOSS,
            default_compression="lossy",
        ),
        _spec(
            "pdf",
            ".pdf",
            "pdf",
            pixel_types=_RGB_GRAY_CMYK,
            compressions=frozenset({"none", "zip", "jpeg"}),
            default_compression="jpeg",
        ),
        # Valid Image Serving formats this server does not produce (NotSupported at conversion).
        _spec("eps", ".eps", "", pixel_types=_RGB_GRAY_CMYK),
        _spec("jpegxr", ".jxr", "", compressions=_LOSS),
        _spec("jpegxr-alpha", ".jxr", "", alpha=True, compressions=_LOSS),
        _spec("swf", ".swf", "", pixel_types=_RGB),
        _spec("swf-alpha", ".swf", "", alpha=True, pixel_types=_RGB),
        _spec("swf3", ".swf", "", pixel_types=_RGB),
        _spec("swf3-alpha", ".swf", "", alpha=True, pixel_types=_RGB),
        _spec("m3u8", ".m3u8", "", pixel_types=_RGB),
        _spec("f4m", ".f4m", "", pixel_types=_RGB),
    ]
)
FORMAT_ALIASES = {"jpg": "jpeg"}


@dataclass(frozen=True)
class OutputFormat:
    """``fmt=format[,pixelType[,compression]]``; ``compression`` None means the format's default."""

    format: str = "jpeg"
    pixel_type: PixelType = "rgb"
    compression: str | None = None

    @property
    def spec(self) -> FormatSpec:
        """The format's row in :data:`FORMATS`."""
        return FORMATS[self.format]

    @property
    def effective_compression(self) -> str | None:
        """The compression used: the given one or the format's default."""
        return self.compression or self.spec.default_compression


@dataclass(frozen=True)
class Quality:
    """``qlt=quality[,chroma]``; chroma True disables chroma downsampling (4:4:4)."""

    quality: int = 80
    chroma: bool = False


@dataclass(frozen=True)
class Fit:
    """``fit=mode[,upscale]``."""

    mode: FitMode = "fit"
    upscale: bool = False


@dataclass(frozen=True)
class Crop:
    """``crop=x,y,w,h`` in source pixels, or ``cropN`` (normalized, 0..1 of the source)."""

    x: float
    y: float
    w: float
    h: float
    normalized: bool = False


@dataclass(frozen=True)
class Rect:
    """``rect=x,y,w,h[,scale]``: a tile of the final view, taken after scaling."""

    x: int
    y: int
    w: int
    h: int
    scale: float = 1.0


@dataclass(frozen=True)
class Align:
    """``align=horiz,vert``, each -1.0 (left/top) .. 1.0 (right/bottom)."""

    horiz: float = 0.0
    vert: float = 0.0


@dataclass(frozen=True)
class Color:
    """An RGBA colour with 0..255 components."""

    r: int
    g: int
    b: int
    a: int = 255

    def hex(self) -> str:
        """``rrggbb`` or ``rrggbbaa`` when not opaque."""
        text = f"{self.r:02x}{self.g:02x}{self.b:02x}"
        return text if self.a == 255 else f"{text}{self.a:02x}"


WHITE = Color(255, 255, 255)


@dataclass(frozen=True)
class Usm:
    """``op_usm=amount,radius,threshold,monochrome`` (radius in full-resolution pixels)."""

    amount: float
    radius: float
    threshold: int
    mono: bool = False


@dataclass(frozen=True)
class Quantize:
    """``quantize=type[,dither[,numColors[,colorList]]]`` for GIF and PNG8."""

    palette: Palette = "adaptive"
    dither: bool = True
    colors: int = 256
    forced: tuple[Color, ...] = ()


@dataclass(frozen=True)
class Icc:
    """``icc=profile[,renderIntent[,blackpointComp[,dither]]]``."""

    profile: str
    intent: str | None = None
    black_point: bool = False
    dither: bool = False


@dataclass(frozen=True)
class ImageRequest:
    """Everything a conversion needs, typed; made by ``parse_modifiers``/``export_request``."""

    fmt: OutputFormat = field(default_factory=OutputFormat)
    qlt: Quality = field(default_factory=Quality)
    wid: int | None = None
    hei: int | None = None
    scl: float | None = None
    fit: Fit = field(default_factory=Fit)
    crop: Crop | None = None
    rect: Rect | None = None
    align: Align = field(default_factory=Align)
    bgc: Color = WHITE
    res_mode: ResMode = "sharp2"
    flip: Flip | None = None
    rotate: float = 0.0
    op_usm: Usm | None = None
    op_sharpen: bool = False
    op_blur: float = 0.0
    op_brightness: int = 0
    op_contrast: int = 0
    op_saturation: int = 0
    op_hue: int = 0
    op_invert: bool = False
    print_res: float | None = None
    quantize: Quantize = field(default_factory=Quantize)
    icc: Icc | None = None
    icc_embed: bool = False
    pscan: str = "auto"
    jpeg_size: int = 0

    @property
    def spec(self) -> FormatSpec:
        """The output format's row in :data:`FORMATS`."""
        return self.fmt.spec


# Extensions stripped from a source name before the output extension is added.
_KNOWN_EXTENSIONS = re.compile(
    r"\.(jpe?g|jpe|jfif|pjpeg|png|gif|tiff?|webp|bmp|dib|psd|psb|pdf|ai|eps|ps|avif|heic|heif|"
    r"jp2|j2k|jpx|jxr|svg|swf)$",
    re.IGNORECASE,
)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def output_name(source_name: str, req: ImageRequest) -> str:
    """The exported file's name: the source's base name with the output format's extension.

    ``fileToExport.jpg`` + ``fmt=tif`` gives ``fileToExport.tif``. Only a known image or document
    extension is replaced (``report.v2`` gives ``report.v2.tif``); directories are dropped and
    control characters replaced by ``_``.
    """
    base = source_name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _KNOWN_EXTENSIONS.sub("", base)
    base = _UNSAFE.sub("_", base).strip()
    if base in ("", ".", ".."):
        base = "image"
    return base + req.spec.extension


def page_name(name: str, page: int) -> str:
    """``name-<page>.ext`` for page ``page`` (1-based) of a multi-page source."""
    stem, dot, ext = name.rpartition(".")
    return f"{stem}-{page}.{ext}" if dot else f"{name}-{page}"
