"""The pool's two production entry points: pyramid TIFFs (``pyramid``) and PDF rips (``rip_pdf``),
each on good input read back with Pillow, and on hostile input that must leave nothing behind."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, TiffTags

from jobengine.imaging import ConversionFailed, ConversionPool, Limits, UnsupportedInput
from tests.support.image_samples import Samples, make_pdf, png_header_bomb
from tests.support.processing_samples import (
    corrupt_pdf,
    empty_pdf,
    encrypted_pdf,
    pdf_pages,
    wide_page_pdf,
)

TILE_WIDTH, COMPRESSION = 322, 259  # TIFF tags
JPEG_COMPRESSION, DEFLATE = 7, (8, 32946)


def levels(path: Path) -> list[tuple[tuple[int, int], str, int | None, int | None]]:
    """(size, mode, tile width, compression) of every directory of a TIFF."""
    found = []
    with Image.open(path) as img:
        assert img.format == "TIFF"
        for index in range(img.n_frames):
            img.seek(index)
            tags = img.tag_v2
            found.append((img.size, img.mode, tags.get(TILE_WIDTH), tags.get(COMPRESSION)))
    return found


def assert_pyramid(path: Path, size: tuple[int, int]) -> None:
    found = levels(path)
    assert found[0][0] == size
    assert len(found) >= 3
    for (big, *_), (small, *_) in itertools.pairwise(found):
        assert small == (big[0] // 2, big[1] // 2)  # each level halves the one before
    assert min(found[-1][0]) <= 64 < min(found[-2][0])  # down to 64 pixels
    assert all(tile == 256 for _, _, tile, _ in found), found  # every level tiled


def assert_nothing_left(out_dir: Path) -> None:
    assert list(out_dir.iterdir()) == []


def test_pyramid_of_a_jpeg(pool: ConversionPool, samples: Samples, out_dir: Path) -> None:
    path = pool.pyramid(samples.big_jpeg, out_dir, "1.ptif")
    assert path == out_dir / "1.ptif"
    assert_pyramid(path, (3000, 2000))
    assert {mode for _, mode, _, _ in levels(path)} == {"RGB"}
    assert {comp for *_, comp in levels(path)} == {JPEG_COMPRESSION}
    with Image.open(path) as img:
        img.seek(1)
        img.load()  # the pixels decode
        r, g, b = img.convert("RGB").getpixel((img.width // 2, img.height // 2))
        assert max(r, g, b) > 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["1.ptif"]


def test_pyramid_keeps_alpha_with_deflate(
    pool: ConversionPool, samples: Samples, out_dir: Path
) -> None:
    path = pool.pyramid(samples.alpha_png, out_dir, "alpha.ptif")
    found = levels(path)
    assert found[0][0] == (320, 240) and found[1][0] == (160, 120)
    assert {mode for _, mode, _, _ in found} == {"RGBA"}
    assert {comp for *_, comp in found} <= set(DEFLATE)


@pytest.mark.parametrize(
    ("sample", "size"),
    [("oriented", (200, 400)), ("gif", (200, 100)), ("tiff", (300, 200)), ("cmyk_jpeg", (120, 80))],
)
def test_pyramid_of_other_inputs(
    pool: ConversionPool, samples: Samples, out_dir: Path, sample: str, size: tuple[int, int]
) -> None:
    path = pool.pyramid(getattr(samples, sample), out_dir, f"{sample}.ptif")
    found = levels(path)
    assert found[0][0] == size  # EXIF orientation applied: 400x200 shown turned
    assert found[1][0] == (size[0] // 2, size[1] // 2)
    assert TiffTags.lookup(TILE_WIDTH).name == "TileWidth"
    assert all(tile == 256 for _, _, tile, _ in found)


def test_pyramid_replaces_the_file_atomically(
    pool: ConversionPool, samples: Samples, out_dir: Path
) -> None:
    pool.pyramid(samples.gif, out_dir, "same.ptif")
    path = pool.pyramid(samples.jpeg, out_dir, "same.ptif")
    assert levels(path)[0][0] == (640, 480)
    assert sorted(p.name for p in out_dir.iterdir()) == ["same.ptif"]


def test_pyramid_refuses_what_is_not_a_good_image(
    pool: ConversionPool,
    samples: Samples,
    out_dir: Path,
    assert_healthy: Callable[[], None],
) -> None:
    truncated = samples.write("cut.jpg", samples.jpeg.read_bytes()[:3000])
    cases = [
        (samples.pdf, UnsupportedInput, "rip it into pages"),
        (truncated, ConversionFailed, "truncated"),
        (samples.write("bomb.png", png_header_bomb(60000, 60000)), ConversionFailed, "pixels"),
        (samples.write("noise.jpg", bytes(range(256)) * 8), UnsupportedInput, "binary"),
        (samples.write("empty.tif", b""), UnsupportedInput, "empty"),
    ]
    for src, fault, text in cases:
        with pytest.raises(fault, match=text):
            pool.pyramid(src, out_dir, "x.ptif")
        assert_nothing_left(out_dir)
    assert_healthy()


def test_rip_writes_every_page(pool: ConversionPool, tmp_path: Path, out_dir: Path) -> None:
    pdf = make_pdf(tmp_path / "three.pdf", 3)
    pages = pool.rip_pdf(pdf, out_dir, "page", dpi=72)
    assert [p.name for p in pages] == ["page-1.jpg", "page-2.jpg", "page-3.jpg"]
    for page in pages:
        with Image.open(page) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (612, 792))
    with Image.open(pages[0]) as img:  # page 1 shows the photo, the others are white
        assert len(img.getcolors(maxcolors=1 << 20) or []) > 100
    with Image.open(pages[1]) as img:
        assert img.getextrema() == ((255, 255), (255, 255), (255, 255))
    assert sorted(p.name for p in out_dir.iterdir()) == [p.name for p in pages]


def test_rip_gray_thumbnail_and_resolution(
    pool: ConversionPool, tmp_path: Path, out_dir: Path
) -> None:
    pdf = make_pdf(tmp_path / "two.pdf", 2)
    (page,) = pool.rip_pdf(pdf, out_dir, "thumb", dpi=36, gray=True, first_page_only=True)
    with Image.open(page) as img:
        assert (img.mode, img.size) == ("L", (306, 396))
    with pytest.raises(ConversionFailed, match=r"outside 18\.\.600"):
        pool.rip_pdf(pdf, out_dir, "x", dpi=601)


def test_rip_lowers_the_resolution_under_the_pixel_cap(tmp_path: Path, out_dir: Path) -> None:
    pdf = pdf_pages(tmp_path / "poster.pdf", 1, size=(2384, 3370), image=False)  # A0
    with ConversionPool(1, Limits(max_source_pixels=2_000_000)) as small:
        (page,) = small.rip_pdf(pdf, out_dir, "poster", dpi=300)
    with Image.open(page) as img:
        assert img.width * img.height <= 2_000_000
        assert abs(img.width / img.height - 2384 / 3370) < 0.01


def test_rip_refuses_hostile_pdfs_and_leaves_nothing(
    pool: ConversionPool,
    samples: Samples,
    tmp_path: Path,
    out_dir: Path,
    assert_healthy: Callable[[], None],
) -> None:
    cases = [
        (encrypted_pdf(tmp_path / "locked.pdf"), "password"),
        (corrupt_pdf(tmp_path / "junk.pdf"), "cannot be opened"),
        (empty_pdf(tmp_path / "empty.pdf"), "cannot be opened"),  # PDFium refuses no pages
        (pdf_pages(tmp_path / "many.pdf", 501, image=False), "501 pages; at most 500"),
        (wide_page_pdf(tmp_path / "wide.pdf"), "width or height exceeds limit"),
        (samples.jpeg, "not a PDF"),
    ]
    for src, text in cases:
        with pytest.raises(ConversionFailed, match=text):
            pool.rip_pdf(src, out_dir, "page", dpi=150)
        assert_nothing_left(out_dir)
    assert_healthy()


def test_a_failing_page_removes_the_pages_before_it(tmp_path: Path, out_dir: Path) -> None:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    doc.new_page(612, 792).close()
    doc.new_page(14400, 36).close()  # page 2 is too wide to raster
    doc.save(str(tmp_path / "mixed.pdf"))
    doc.close()
    with ConversionPool(1) as own, pytest.raises(ConversionFailed, match="exceeds limit"):
        own.rip_pdf(tmp_path / "mixed.pdf", out_dir, "page", dpi=150)
    assert_nothing_left(out_dir)
