"""Size planning and input sniffing: pure functions, no ImageMagick."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from jobengine.errors import LimitExceeded, NotSupported
from jobengine.imaging import ConversionFailed, Limits, UnsupportedInput, parse_modifiers
from jobengine.imaging.geometry import Box, check_plan, plan
from jobengine.imaging.sniff import sniff


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
