"""Hostile inputs, generated at run time: each fails with a clear error, leaves nothing behind,
has no side effect, and the pool converts the next good image."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from jobengine.errors import IpsFault
from jobengine.imaging import (
    ConversionFailed,
    ConversionPool,
    ConversionTimeout,
    UnsupportedInput,
    parse_modifiers,
)
from tests.support.image_samples import (
    Samples,
    gif_header_bomb,
    make_pdf,
    photo,
    png_header_bomb,
    tiff_header_bomb,
)


def jpeg_bytes(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    photo(width, height).save(out, "JPEG", quality=85)
    return out.getvalue()


def png_bytes() -> bytes:
    out = io.BytesIO()
    photo(64, 48).save(out, "PNG")
    return out.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 marker is patched to claim ``width`` x ``height``."""
    data = bytearray(jpeg_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def hostile_cases(sentinel: Path, victim: Path) -> dict[str, tuple[str, bytes, str]]:
    """name -> (file name, content, words expected in the reason)."""
    mvg_rce = (
        "push graphic-context\nviewbox 0 0 640 480\n"
        f'fill \'url(https://127.0.0.1/x.jpg"|touch "{sentinel}")\'\npop graphic-context\n'
    )
    mvg_ephemeral = (
        f"push graphic-context\nviewbox 0 0 1 1\nimage over 0,0 0,0 'ephemeral:{victim}'\n"
    )
    mvg_text = (
        "push graphic-context\nviewbox 0 0 100 100\nimage over 0,0 0,0 'text:/etc/hostname'\n"
    )
    msl = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<image>\n<read filename="/etc/hostname"/>\n'
        f'<write filename="{sentinel}"/>\n</image>\n'
    )
    svg = (
        '<?xml version="1.0" standalone="no"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
        'xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="100">\n'
        '<image xlink:href="text:/etc/passwd" width="100" height="100"/>\n'
        f'<image xlink:href="https://127.0.0.1/{sentinel.name}" width="1" height="1"/>\n</svg>\n'
    )
    eps = (
        "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n"
        f"({sentinel}) (w) file closefile\nshowpage\n%%EOF\n"
    )
    good = jpeg_bytes()
    return {
        "mvg-rce": ("rce.jpg", mvg_rce.encode(), "MVG"),
        "mvg-ephemeral": ("delete.png", mvg_ephemeral.encode(), "MVG"),
        "mvg-text": ("read.gif", mvg_text.encode(), "MVG"),
        "msl": ("script.jpg", msl.encode(), "MSL"),
        "svg-external-refs": ("vector.jpg", svg.encode(), "SVG"),
        "eps-as-jpeg": ("photo.jpg", eps.encode(), "PostScript"),
        "label-indirection": ("label.jpg", b"label:@/etc/hostname\n", "text"),
        "html": ("page.png", b"<!doctype html><html><img src=x></html>", "XML/HTML"),
        "png-bomb": ("bomb.png", png_header_bomb(100_000, 100_000), "100000x100000"),
        "gif-bomb": ("bomb.gif", gif_header_bomb(65_535, 65_535), "65535x65535"),
        "jpeg-bomb": ("bomb.jpg", jpeg_claiming(60_000, 60_000), "60000x60000"),
        "tiff-bomb": ("bomb.tif", tiff_header_bomb(100_000, 100_000), "100000x100000"),
        "truncated-jpeg": ("cut.jpg", good[: len(good) // 2], "truncated"),
        "truncated-png": ("cut.png", png_bytes()[:900], "ImageMagick cannot convert"),
        "jpeg-head-svg-body": ("poly.jpg", good[:3] + svg.encode() + b"\xff\xd9", "corrupt"),
        "zero-bytes": ("empty.jpg", b"", "empty"),
        "random-bytes": ("noise.jpg", os.urandom(4096) + b"\x00", "binary"),
        "broken-pdf": ("doc.pdf", b"%PDF-1.4\n1 0 obj garbage\n", "PDF cannot be opened"),
        "iso-video": ("clip.heic", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "ISO"),
    }


CASES = list(hostile_cases(Path("/x"), Path("/y")))


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_fails_safely(
    case: str,
    pool: ConversionPool,
    samples: Samples,
    tmp_path: Path,
    out_dir: Path,
    assert_healthy: Callable[[], None],
) -> None:
    sentinel, victim = tmp_path / "pwned", tmp_path / "victim"
    victim.write_text("keep me")
    name, data, words = hostile_cases(sentinel, victim)[case]
    src = samples.write(name, data)
    with pytest.raises(ConversionFailed) as info:
        pool.convert(src, out_dir, parse_modifiers("fmt=png"), name)
    assert words in info.value.reason, info.value.reason
    assert info.value.code == 30000
    assert not sentinel.exists() and victim.read_text() == "keep me"
    assert list(out_dir.iterdir()) == []
    assert_healthy()


def test_refusals_are_unsupported_input(
    pool: ConversionPool, samples: Samples, out_dir: Path
) -> None:
    src = samples.write("x.jpg", b"<svg/>")
    with pytest.raises(UnsupportedInput):
        pool.convert(src, out_dir, parse_modifiers("fmt=png"), "x.jpg")


def test_pdf_with_2000_pages_fails_fast(
    pool: ConversionPool, samples: Samples, out_dir: Path, assert_healthy: Callable[[], None]
) -> None:
    src = make_pdf(samples.root / "huge.pdf", 2000, with_image=False)
    with pytest.raises(ConversionFailed, match="2000 pages; at most 500"):
        pool.convert(src, out_dir, parse_modifiers("fmt=png"), "huge.pdf", timeout=10)
    assert list(out_dir.iterdir()) == []
    assert_healthy()


def test_timeout_kills_and_replaces_the_worker(
    pool: ConversionPool, samples: Samples, out_dir: Path, assert_healthy: Callable[[], None]
) -> None:
    slow = parse_modifiers("fmt=png&op_blur=40")
    with pytest.raises(ConversionTimeout, match=r"longer than 0\.2 s") as info:
        pool.convert(samples.big_jpeg, out_dir, slow, "big.jpg", timeout=0.2)
    assert isinstance(info.value, IpsFault)
    assert list(out_dir.iterdir()) == []
    assert_healthy()
    assert_healthy()  # both slots serve again
