"""The Image Serving command table: each command's grammar, declared once from typed atoms.

A :class:`Command` turns the comma-separated parts of a value into one typed field of
:class:`~jobengine.imaging.request.ImageRequest` and back to text (for ``format_query``).
Atoms raise :class:`BadToken` carrying the exact offending token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jobengine.imaging.request import (
    FORMAT_ALIASES,
    FORMATS,
    Align,
    Color,
    Crop,
    Fit,
    Icc,
    OutputFormat,
    Quality,
    Quantize,
    Rect,
    Usm,
)

__all__ = ["COMMANDS", "UNSUPPORTED_COMMANDS", "BadToken", "Command"]

Atom = Callable[[str], Any]


class BadToken(ValueError):
    """Raised by an atom: ``token`` is the exact text that failed, ``why`` what was expected."""

    def __init__(self, token: str, why: str) -> None:
        super().__init__(f"{token!r} {why}")
        self.token = token
        self.why = why


_INT = re.compile(r"[+-]?\d{1,9}")
_REAL = re.compile(r"[+-]?(\d{1,9}(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?")
_HEX = re.compile(r"(0x)?([0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+-]{0,127}")


def integer(lo: int, hi: int) -> Atom:
    """An integer in ``lo..hi``."""

    def parse(token: str) -> int:
        if not _INT.fullmatch(token) or not lo <= int(token) <= hi:
            raise BadToken(token, f"is not an integer in {lo}..{hi}")
        return int(token)

    return parse


def clamped(lo: int, hi: int) -> Atom:
    """An integer, brought into ``lo..hi``: for values whose encoder clamps them (``qlt``)."""

    def parse(token: str) -> int:
        if not _INT.fullmatch(token):
            raise BadToken(token, "is not an integer")
        return min(max(int(token), lo), hi)

    return parse


def real(lo: float, hi: float, *, above: bool = False) -> Atom:
    """A real number in ``lo..hi`` (``above``: strictly greater than ``lo``)."""
    low = f"> {lo:g}" if above else f">= {lo:g}"

    def parse(token: str) -> float:
        value = float(token) if _REAL.fullmatch(token) else None
        if value is None or value < lo or value > hi or (above and value <= lo):
            raise BadToken(token, f"is not a number {low} and <= {hi:g}")
        return value

    return parse


def choice(*names: str, aliases: dict[str, str] | None = None) -> Atom:
    """One keyword of ``names`` (case-insensitive)."""
    table = {n.lower(): n for n in names} | (aliases or {})

    def parse(token: str) -> str:
        try:
            return table[token.lower()]
        except KeyError:
            raise BadToken(token, f"is not one of {', '.join(names)}") from None

    return parse


def flag(text: str) -> bool:
    """``0`` or ``1``."""
    if text not in ("0", "1"):
        raise BadToken(text, "is not 0 or 1")
    return text == "1"


def hex_color(token: str) -> Color:
    """``[0x]rrggbb`` or ``[0x]rrggbbaa``."""
    m = _HEX.fullmatch(token)
    if m is None:
        raise BadToken(token, "is not a colour (rrggbb, rrggbbaa or 0xrrggbb)")
    digits = m.group(2)
    parts = [int(digits[i : i + 2], 16) for i in range(0, len(digits), 2)]
    return Color(*parts)


def color(parts: Sequence[str]) -> Color:
    """An IS colour: ``rrggbb``, ``rrggbbaa``, ``0xrrggbb``, ``0xgg``, decimal ``r,g,b`` or gray."""
    text = ",".join(parts)
    if len(parts) == 3:
        r, g, b = (integer(0, 255)(p) for p in parts)
        return Color(r, g, b)
    if len(parts) == 1 and re.fullmatch(r"0x[0-9a-fA-F]{2}", text):
        gray = int(text[2:], 16)
        return Color(gray, gray, gray)
    if len(parts) == 1 and re.fullmatch(r"\d{1,3}", text):
        gray = integer(0, 255)(text)
        return Color(gray, gray, gray)
    if len(parts) == 1:
        return hex_color(text)
    raise BadToken(text, "is not a colour (rrggbb, rrggbbaa, 0xrrggbb, 0xgg, r,g,b or gray)")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def args(*atoms: Atom, required: int, build: Callable[..., Any] = lambda *a: a[0]) -> Callable:  # type: ignore[type-arg]
    """Parts parsed by position with ``atoms``; the first ``required`` must be present and
    non-empty, the others may be missing or empty (None). ``build`` makes the value."""

    def parse(parts: Sequence[str]) -> Any:
        if len(parts) > len(atoms):
            raise BadToken(parts[len(atoms)], f"is one value too many (at most {len(atoms)})")
        values: list[Any] = []
        for i, atom in enumerate(atoms):
            token = parts[i] if i < len(parts) else ""
            if token == "" and i >= required:
                values.append(None)
            elif token == "":
                raise BadToken(token, f"is missing: value {i + 1} of {required} is required")
            else:
                values.append(atom(token))
        return build(*values)

    return parse


@dataclass(frozen=True)
class Command:
    """One IS command: ``parse`` maps value parts to the field value, ``emit`` maps it back
    (``None`` when the value belongs to a sibling command writing the same field)."""

    name: str
    field: str
    parse: Callable[[Sequence[str]], Any]
    emit: Callable[[Any], str | None]


def _fmt(name: str, pixel: str | None, compression: str | None) -> OutputFormat:
    name = FORMAT_ALIASES.get(name, name)
    spec = FORMATS[name]
    if pixel is not None and pixel not in spec.pixel_types:
        allowed = ", ".join(sorted(spec.pixel_types))
        raise BadToken(pixel, f"is not a pixel type of {name} (allowed: {allowed})")
    if compression is not None and compression not in spec.compressions:
        allowed = ", ".join(sorted(spec.compressions)) or "none accepted"
        raise BadToken(compression, f"is not a compression of {name} (allowed: {allowed})")
    return OutputFormat(name, pixel or "rgb", compression)  # type: ignore[arg-type]


def _emit_fmt(v: OutputFormat) -> str:
    parts = [v.format, v.pixel_type] + ([v.compression] if v.compression else [])
    return ",".join(parts)


def _quantize(parts: Sequence[str]) -> Quantize:
    head = args(
        choice("adaptive", "web", "mac"),
        choice("diffuse", "off"),
        integer(2, 256),
        required=1,
        build=lambda *a: a,
    )(parts[:3])
    palette, dither, colors = head
    forced = tuple(hex_color(p) for p in parts[3:])
    return Quantize(palette, dither != "off", colors or 256, forced)


def _emit_quantize(v: Quantize) -> str:
    parts = [v.palette, "diffuse" if v.dither else "off", str(v.colors)]
    return ",".join(parts + [c.hex() for c in v.forced])


def _icc_profile(token: str) -> str:
    if not _PROFILE.fullmatch(token) or ".." in token:
        raise BadToken(token, "is not a profile name (letters, digits, space, _ . + -)")
    return token


def _emit_icc(v: Icc) -> str:
    parts = [v.profile, v.intent or "", "1" if v.black_point else "", "1" if v.dither else ""]
    return ",".join(parts).rstrip(",")


def _crop_emit(normalized: bool) -> Callable[[Crop], str | None]:
    def emit(v: Crop) -> str | None:
        return (
            ",".join(_num(n) for n in (v.x, v.y, v.w, v.h)) if v.normalized == normalized else None
        )

    return emit


def _single(atom: Atom) -> Callable[[Sequence[str]], Any]:
    return args(atom, required=1)


_FORMAT_NAMES = (*FORMATS, *FORMAT_ALIASES)
_COORD = 1_000_000_000

COMMANDS: dict[str, Command] = {
    c.name.lower(): c
    for c in (
        Command(
            "fmt",
            "fmt",
            args(
                choice(*_FORMAT_NAMES),
                choice("rgb", "gray", "cmyk"),
                choice("none", "lzw", "zip", "jpeg", "lossy", "lossless"),
                required=1,
                build=_fmt,
            ),
            _emit_fmt,
        ),
        Command(
            "qlt",
            "qlt",
            # Clamped as IS's JPEG encoder (IJG libjpeg's quality scaling) clamps it, so
            # Adobe's own saveImageFormat example (qlt=750) works: see docs/imaging.md.
            args(clamped(1, 100), flag, required=1, build=lambda q, c: Quality(q, bool(c))),
            lambda v: f"{v.quality},{int(v.chroma)}",
        ),
        Command("wid", "wid", _single(integer(1, 65535)), str),
        Command("hei", "hei", _single(integer(1, 65535)), str),
        Command("scl", "scl", _single(real(0, 1e6, above=True)), _num),
        Command(
            "fit",
            "fit",
            args(
                choice("fit", "constrain", "crop", "wrap", "stretch", "hfit", "vfit"),
                flag,
                required=1,
                build=lambda m, u: Fit(m, bool(u)),
            ),
            lambda v: f"{v.mode},{int(v.upscale)}",
        ),
        Command(
            "crop",
            "crop",
            args(
                integer(-_COORD, _COORD),
                integer(-_COORD, _COORD),
                integer(1, _COORD),
                integer(1, _COORD),
                required=4,
                build=Crop,
            ),
            _crop_emit(False),
        ),
        Command(
            "cropN",
            "crop",
            args(
                real(-100, 100),
                real(-100, 100),
                real(0, 100, above=True),
                real(0, 100, above=True),
                required=4,
                build=lambda x, y, w, h: Crop(x, y, w, h, True),
            ),
            _crop_emit(True),
        ),
        Command(
            "rect",
            "rect",
            args(
                integer(-_COORD, _COORD),
                integer(-_COORD, _COORD),
                integer(1, 65535),
                integer(1, 65535),
                real(0, 1e6, above=True),
                required=4,
                build=lambda x, y, w, h, s: Rect(x, y, w, h, s or 1.0),
            ),
            lambda v: ",".join(_num(n) for n in (v.x, v.y, v.w, v.h, v.scale)),
        ),
        Command(
            "align",
            "align",
            args(real(-1, 1), real(-1, 1), required=2, build=Align),
            lambda v: f"{_num(v.horiz)},{_num(v.vert)}",
        ),
        Command("bgc", "bgc", color, lambda v: v.hex()),
        Command(
            "resMode",
            "res_mode",
            _single(choice("bilin", "bicub", "sharp2", "bisharp", aliases={"sharp": "sharp2"})),
            str,
        ),
        Command("flip", "flip", _single(choice("lr", "ud", "lrud")), str),
        Command("rotate", "rotate", _single(real(-360, 360)), _num),
        Command(
            "op_usm",
            "op_usm",
            args(
                real(0, 5),
                real(0, 250),
                integer(0, 255),
                flag,
                required=3,
                build=lambda a, r, t, m: Usm(a, r, t, bool(m)),
            ),
            lambda v: f"{_num(v.amount)},{_num(v.radius)},{v.threshold},{int(v.mono)}",
        ),
        Command("op_sharpen", "op_sharpen", _single(flag), lambda v: str(int(v))),
        Command("op_blur", "op_blur", _single(real(0, 100)), _num),
        Command("op_brightness", "op_brightness", _single(integer(-100, 100)), str),
        Command("op_contrast", "op_contrast", _single(integer(-100, 100)), str),
        Command("op_saturation", "op_saturation", _single(integer(-100, 100)), str),
        Command("op_hue", "op_hue", _single(integer(-180, 180)), str),
        Command("op_invert", "op_invert", _single(flag), lambda v: str(int(v))),
        Command("printRes", "print_res", _single(real(0, 10000, above=True)), _num),
        Command("quantize", "quantize", _quantize, _emit_quantize),
        Command(
            "icc",
            "icc",
            args(
                _icc_profile,
                choice("perceptual", "relative", "saturation", "absolute"),
                flag,
                flag,
                required=1,
                build=lambda p, i, b, d: Icc(p, i, bool(b), bool(d)),
            ),
            _emit_icc,
        ),
        Command("iccEmbed", "icc_embed", _single(flag), lambda v: str(int(v))),
        Command("pscan", "pscan", _single(choice("auto", "3", "4", "5")), str),
        Command("jpegSize", "jpeg_size", _single(integer(0, 1_000_000)), str),
    )
}

# Valid Image Serving commands that an export conversion does not carry out (NotSupported).
_UNSUPPORTED = """
    layer src req template text textAttr textPs textAngle textPath textFlowPath textFlowXPath
    mask maskUse effect effectMask extend size pos origin anchor clipPath clipXPath cropPathE
    perspective opac op_colorize op_colorbalance op_noise op_grow op_growMask op_growMaskR op_usmR
    dpr cache id locale map xmpEmbed pathEmbed hide bfc bgColor color blendMode imageSet network
    rgn res scale defaultImage
"""
UNSUPPORTED_COMMANDS = frozenset(name.lower() for name in _UNSUPPORTED.split())
