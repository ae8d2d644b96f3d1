"""Size planning and input sniffing: pure functions, no ImageMagick."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import pytest
from PIL import Image

from jobengine.errors import LimitExceeded, NotSupported
from jobengine.imaging import ConversionFailed, Limits, UnsupportedInput, parse_modifiers
from jobengine.imaging.geometry import Box, check_plan, jpeg_size_hint, plan
from jobengine.imaging.sniff import jpeg_is_complete, sniff


def p(query: str, width: int = 400, height: int = 200):  # type: ignore[no-untyped-def]
    return plan(width, height, parse_modifiers(query))


@pytest.mark.parametrize(
    ("query", "scaled", "output"),
    [
        ("", (400, 200), (400, 200)),
        ("wid=100", (100, 50), (100, 50)),
        ("hei=100", (200, 100), (200, 100)),
        ("wid=800", (800, 400), (800, 400)),  # one dimension alone scales, up too
        ("wid=100&hei=100", (100, 50), (100, 100)),  # fit: exact view, padded
        ("wid=100&hei=100&fit=constrain", (100, 50), (100, 50)),
        ("wid=100&hei=100&fit=crop", (200, 100), (100, 100)),
        ("wid=100&hei=100&fit=wrap", (200, 100), (200, 100)),
        ("wid=100&hei=100&fit=stretch", (100, 100), (100, 100)),
        ("wid=100&hei=100&fit=hfit", (100, 50), (100, 100)),
        ("wid=100&hei=100&fit=vfit", (200, 100), (100, 100)),
        ("wid=800&hei=800", (400, 200), (800, 800)),  # fit,0: no upscaling
        ("wid=800&hei=800&fit=fit,1", (800, 400), (800, 800)),
        ("scl=2", (200, 100), (200, 100)),
        ("scl=0.5", (800, 400), (800, 400)),
        ("scl=2&wid=150", (200, 100), (150, 100)),  # scl with wid: cropped to wid
        ("crop=10,10,100,50", (100, 50), (100, 50)),
        ("cropN=0.5,0,0.5,1&wid=100", (100, 100), (100, 100)),
        ("rotate=90", (200, 400), (200, 400)),
        ("wid=100&hei=100&rect=0,0,50,50", (100, 50), (50, 50)),
    ],
)
def test_plan_sizes(query: str, scaled: tuple[int, int], output: tuple[int, int]) -> None:
    result = p(query)
    assert result.scaled == scaled
    assert result.output == output


def test_align_places_the_image_in_the_view() -> None:
    assert p("wid=100&hei=100").view == Box(0, -25, 100, 100)  # centred: 25 px above and below
    assert p("wid=100&hei=100&align=-1,-1").view == Box(0, 0, 100, 100)
    assert p("wid=100&hei=100&align=1,1").view == Box(0, -50, 100, 100)
    assert p("wid=100&hei=100&fit=crop&align=-1,0").view == Box(0, 0, 100, 100)
    assert p("wid=100&hei=100&fit=crop&align=1,0").view == Box(100, 0, 100, 100)


def test_rotation_grows_the_canvas() -> None:
    assert p("rotate=45", 100, 100).rotated == (142, 142)
    assert p("rotate=180").rotated == (400, 200)


def test_usm_scale_factor() -> None:
    assert p("wid=200").scale == pytest.approx(0.5)


def test_rect_scale_is_not_supported() -> None:
    with pytest.raises(NotSupported):
        p("rect=0,0,10,10,2")


def test_limits_are_checked_before_decoding() -> None:
    limits = Limits(max_source_pixels=1000, max_output_pixels=500)
    with pytest.raises(ConversionFailed, match="max_source_pixels"):
        check_plan(p("wid=10"), limits)
    with pytest.raises(LimitExceeded, match="MaxPix"):
        check_plan(p("wid=40", 20, 20), limits)
    check_plan(p("wid=20", 20, 20), limits)
    with pytest.raises(LimitExceeded, match="crop"):
        check_plan(p("crop=0,0,100000,100000", 20, 20), Limits())
    with pytest.raises(LimitExceeded, match="scaled"):
        check_plan(p("scl=0.001&wid=10&hei=10"), Limits())


def _encoded(fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (33, 17), "red").save(out, fmt, **kw)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "kind", "coder"),
    [
        ("JPEG", "jpeg", "JPEG"),
        ("PNG", "png", "PNG"),
        ("GIF", "gif", "GIF"),
        ("TIFF", "tiff", "TIFF"),
        ("WEBP", "webp", "WEBP"),
        ("BMP", "bmp", "BMP"),
    ],
)
def test_sniff_allowed_formats(fmt: str, kind: str, coder: str) -> None:
    found = sniff(_encoded(fmt))
    assert (found.kind, found.coder) == (kind, coder)
    if kind != "tiff":
        assert found.size == (33, 17)


def test_sniff_lossless_webp_size() -> None:
    assert sniff(_encoded("WEBP", lossless=True)).size == (33, 17)


def test_sniff_pdf_psd_and_iso_brands() -> None:
    assert sniff(b"%PDF-1.7\n...").kind == "pdf"
    psd = b"8BPS\x00\x01" + b"\x00" * 8 + struct.pack(">II", 20, 30) + b"\x00\x08\x00\x03"
    assert sniff(psd).size == (30, 20)
    avif = struct.pack(">I", 24) + b"ftypavif" + b"\x00\x00\x00\x00mif1miaf"
    assert sniff(avif).kind == "avif"
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic"
    assert sniff(heic).kind == "heic"
    mif1_avif = struct.pack(">I", 24) + b"ftypmif1" + b"\x00\x00\x00\x00avifmiaf"
    assert sniff(mif1_avif).kind == "avif"


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"", "empty"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "PostScript"),
        (b"\xc5\xd0\xd3\xc6" + b"\x00" * 40, "PostScript"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"\xef\xbb\xbf  <svg><image href='text:/etc/passwd'/></svg>", "SVG"),
        (b'<?xml version="1.0"?><image><read filename="x"/></image>', "MSL"),
        (b"<html><body>hi</body></html>", "XML/HTML"),
        (b"push graphic-context\nviewbox 0 0 640 480\n", "MVG"),
        (b"viewbox 0 0 1 1\nimage over 0,0 0,0 'ephemeral:/x'\n", "MVG"),
        (b"hello world\n", "text"),
        (struct.pack(">I", 24) + b"ftypisom" + b"\x00" * 12, "ISO media"),
        (bytes(range(256)) * 4, "binary"),
        (b"BM" + b"\x00" * 40, "binary"),  # a BMP magic with an impossible header size
    ],
)
def test_sniff_refusals_say_what_the_content_looks_like(head: bytes, words: str) -> None:
    with pytest.raises(UnsupportedInput, match=words):
        sniff(head)


def decoded_by_libjpeg(raw: tuple[int, int], hint: tuple[int, int]) -> tuple[int, int]:
    """The size ImageMagick 6 + libjpeg-turbo decode a ``raw`` JPEG to under ``jpeg:size``:
    IM asks for 1/floor(min(raw/hint)) (coders/jpeg.c), turbo rounds up to the next M/8."""
    denom = max(1, int(min(raw[0] / hint[0], raw[1] / hint[1])))
    eighths = next(m for m in range(1, 17) if m * denom >= 8)
    return math.ceil(raw[0] * eighths / 8), math.ceil(raw[1] * eighths / 8)


@pytest.mark.parametrize(
    ("query", "raw", "hint"),
    [
        ("wid=1200", (3000, 2000), (1200, 800)),  # decoded at 1/2 (1500x1000), then resized
        ("wid=1500", (3000, 2000), (1500, 1000)),  # exactly 1/2: libjpeg gives the final size
        ("hei=100", (3000, 2000), (150, 100)),
        ("wid=100&hei=100&fit=crop", (3000, 2000), (150, 100)),  # the larger factor wins
        ("wid=300&hei=300&fit=stretch", (3000, 2000), (450, 300)),
        ("scl=4", (4001, 3001), (1000, 751)),  # rounded up, never down
        ("wid=1600", (3000, 2000), None),  # shrinking by less than 2x: decode at full size
        ("wid=6000", (3000, 2000), None),  # upscaling
        ("", (3000, 2000), None),  # full size
        ("wid=100&crop=0,0,1000,1000", (3000, 2000), None),  # crop works in source pixels
        ("wid=100&rotate=90", (3000, 2000), None),
    ],
)
def test_jpeg_size_hint(query: str, raw: tuple[int, int], hint: tuple[int, int] | None) -> None:
    assert jpeg_size_hint(p(query, *raw), parse_modifiers(query), raw) == hint


def test_jpeg_size_hint_follows_exif_orientation() -> None:
    """A portrait photo stored landscape (EXIF orientation 6): the plan is in displayed pixels,
    the hint in stored pixels."""
    stored = (4000, 3000)
    req = parse_modifiers("wid=300")  # 300 wide as displayed: 400 high
    hint = jpeg_size_hint(plan(3000, 4000, req), req, stored)
    assert hint == (400, 300)


@pytest.mark.parametrize("raw", [(3000, 2000), (4001, 2999), (12240, 8160), (517, 8000), (9, 7)])
@pytest.mark.parametrize(
    "query",
    ["wid=1200", "wid=999", "hei=333", "wid=64&hei=64", "wid=64&hei=64&fit=crop", "scl=2",
     "scl=2.5", "scl=7.9", "scl=16", "wid=50&hei=900&fit=stretch", "wid=1"],
)  # fmt: skip
def test_jpeg_size_hint_never_decodes_below_the_scaled_size(
    raw: tuple[int, int], query: str
) -> None:
    """Shrink-on-load never leaves the resize step an upscale: whatever the sizes, what libjpeg
    decodes under the hint is at least the planned scaled size in both directions."""
    req = parse_modifiers(query)
    pl = plan(*raw, req)
    hint = jpeg_size_hint(pl, req, raw)
    if hint is None:
        assert max(pl.scaled[0] / raw[0], pl.scaled[1] / raw[1]) > 0.5
        return
    decoded = decoded_by_libjpeg(raw, hint)
    assert decoded[0] >= pl.scaled[0] and decoded[1] >= pl.scaled[1], (decoded, pl.scaled)
    assert decoded[0] <= raw[0] and decoded[1] <= raw[1]


def _jpeg(**options: object) -> bytes:
    out = io.BytesIO()
    img = Image.effect_noise((160, 120), 60).convert("RGB")
    img.save(out, "JPEG", quality=95, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 4}, {"subsampling": 0}],
)
def test_jpeg_is_complete(tmp_path: Path, options: dict[str, object]) -> None:
    """The marker walk reaches EOI through stuffed bytes, restart markers and progressive scans;
    a cut anywhere in the entropy-coded data is detected; data after EOI is fine."""
    data = _jpeg(**options)
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    assert jpeg_is_complete(path)
    if options.get("restart_marker_blocks"):
        assert any(bytes([0xFF, 0xD0 + n]) in data for n in range(8))
    path.write_bytes(data + b"trailer: a motion photo's video")
    assert jpeg_is_complete(path)
    path.write_bytes(data[:-2] + b"\xff\xff\xff\xd9")  # fill bytes before EOI
    assert jpeg_is_complete(path)
    for cut in (len(data) - 2, len(data) * 3 // 4, len(data) // 2, 700):
        path.write_bytes(data[:cut])
        assert not jpeg_is_complete(path), cut
