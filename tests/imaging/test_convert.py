"""Golden conversions through the worker pool, read back with Pillow (and pypdfium2 for PDF)."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageChops, ImageStat, JpegImagePlugin

from jobengine.imaging import ConversionPool, export_request, parse_modifiers
from tests.support.image_samples import Samples

Run = Callable[..., Path]


def opened(path: Path) -> Image.Image:
    img = Image.open(io.BytesIO(path.read_bytes()))
    img.load()
    return img


def palette(img: Image.Image) -> set[tuple[int, ...]]:
    flat = img.getpalette() or []
    return {tuple(flat[i : i + 3]) for i in range(0, len(flat), 3)}


def jpeg_dc_quant(quality: int) -> int:
    """The IJG luminance DC quantiser for ``quality`` (base value 16)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return max(1, min(255, (16 * scale + 50) // 100))


@pytest.mark.parametrize(
    ("query", "fmt", "size", "mode"),
    [
        ("fmt=png&wid=200", "PNG", (200, 150), "RGB"),
        ("fmt=png-alpha&wid=200", "PNG", (200, 150), "RGBA"),
        ("fmt=png,gray&hei=60", "PNG", (80, 60), "L"),
        ("fmt=jpeg,gray&wid=100", "JPEG", (100, 75), "L"),
        ("fmt=tif,cmyk&wid=100", "TIFF", (100, 75), "CMYK"),
        ("fmt=tif-alpha&wid=100", "TIFF", (100, 75), "RGBA"),
        ("fmt=webp&scl=4", "WEBP", (160, 120), "RGB"),
        ("fmt=gif&wid=64", "GIF", (64, 48), "P"),
        ("fmt=png8&wid=64", "PNG", (64, 48), "P"),
        ("fmt=jpeg&wid=100&hei=100", "JPEG", (100, 100), "RGB"),
        ("fmt=jpeg&crop=600,400,100,100", "JPEG", (100, 100), "RGB"),
    ],
)
def test_formats_sizes_and_modes(
    run: Run, samples: Samples, query: str, fmt: str, size: tuple[int, int], mode: str
) -> None:
    img = opened(run(samples.jpeg, query))
    assert (img.format, img.size, img.mode) == (fmt, size, mode)


@pytest.mark.parametrize("quality", [30, 95])
def test_jpeg_quality(run: Run, samples: Samples, quality: int) -> None:
    img = opened(run(samples.jpeg, f"fmt=jpeg&qlt={quality}"))
    assert abs(img.quantization[0][0] - jpeg_dc_quant(quality)) <= 1
    assert JpegImagePlugin.get_sampling(img) == 2  # 4:2:0 by default
    assert not img.info.get("progressive")


def test_jpeg_chroma_and_progressive(run: Run, samples: Samples) -> None:
    img = opened(run(samples.jpeg, "fmt=pjpeg&qlt=90,1"))
    assert img.info.get("progressive") and img.info.get("progression")
    assert JpegImagePlugin.get_sampling(img) == 0  # 4:4:4


def test_jpeg_of_gray_content_stays_rgb(run: Run, samples: Samples) -> None:
    gray_src = run(samples.jpeg, "fmt=png,gray", "gray.png")
    assert opened(run(gray_src, "fmt=jpeg", "gray-again.png")).mode == "RGB"


@pytest.mark.parametrize(
    ("compression", "expected"),
    [("none", "raw"), ("lzw", "tiff_lzw"), ("zip", "tiff_adobe_deflate"), ("jpeg", "jpeg")],
)
def test_tiff_compression(run: Run, samples: Samples, compression: str, expected: str) -> None:
    img = opened(run(samples.jpeg, f"fmt=tif,rgb,{compression}&wid=64"))
    assert img.info["compression"] == expected


def test_tiff_default_is_uncompressed_with_print_resolution(run: Run, samples: Samples) -> None:
    img = opened(run(samples.jpeg, "fmt=tif&wid=64&printRes=300"))
    assert img.info["compression"] == "raw"
    assert img.info["dpi"] == pytest.approx((300, 300))


def test_alpha_is_kept_or_flattened_onto_bgc(run: Run, samples: Samples) -> None:
    src = samples.alpha_png
    kept = opened(run(src, "fmt=png-alpha"))
    assert kept.mode == "RGBA" and kept.getpixel((10, 10))[3] == 0
    assert kept.getpixel((300, 200))[3] == 255
    flat = opened(run(src, "fmt=png&bgc=ff0000"))
    assert flat.mode == "RGB" and flat.getpixel((10, 10)) == (255, 0, 0)
    webp = opened(run(src, "fmt=webp-alpha,rgb,lossless"))
    assert webp.mode == "RGBA" and webp.getpixel((10, 10))[3] == 0


def test_webp_lossy_and_lossless(run: Run, samples: Samples) -> None:
    lossy = run(samples.jpeg, "fmt=webp&qlt=70", "a.jpg").read_bytes()
    lossless = run(samples.jpeg, "fmt=webp,rgb,lossless", "b.jpg").read_bytes()
    assert lossy[8:16] in (b"WEBPVP8 ", b"WEBPVP8X") and b"VP8L" not in lossy[:64]
    assert b"VP8L" in lossless[:64]


def test_gif_palette_and_transparency(run: Run, samples: Samples) -> None:
    few = opened(run(samples.jpeg, "fmt=gif&quantize=adaptive,off,8"))
    assert few.mode == "P" and len(few.getcolors() or []) <= 8
    forced = opened(run(samples.jpeg, "fmt=gif&quantize=adaptive,off,4,ff00ff,00ffff", "f.jpg"))
    assert {(255, 0, 255), (0, 255, 255)} <= palette(forced) and len(palette(forced)) <= 4
    web = opened(run(samples.jpeg, "fmt=gif&quantize=web", "w.jpg"))
    assert all(v % 51 == 0 for _, rgb in web.convert("RGB").getcolors(256) or [] for v in rgb)
    alpha = opened(run(samples.alpha_png, "fmt=gif-alpha"))
    assert "transparency" in alpha.info
    assert alpha.convert("RGBA").getpixel((10, 10))[3] == 0


def test_png8_alpha(run: Run, samples: Samples) -> None:
    img = opened(run(samples.alpha_png, "fmt=png8-alpha"))
    assert img.mode == "P" and img.convert("RGBA").getpixel((10, 10))[3] == 0


def test_fit_pads_with_bgc_and_aligns(run: Run, samples: Samples) -> None:
    img = opened(run(samples.jpeg, "fmt=png&wid=200&hei=200&bgc=0000ff&align=0,-1"))
    assert img.size == (200, 200)
    assert img.getpixel((100, 195)) == (0, 0, 255)  # padding at the bottom
    assert img.getpixel((100, 5)) != (0, 0, 255)


def test_crop_outside_the_image_is_filled(run: Run, samples: Samples) -> None:
    img = opened(run(samples.jpeg, "fmt=png&crop=-50,-50,100,100&bgc=00ff00"))
    assert img.size == (100, 100)
    assert img.getpixel((10, 10)) == (0, 255, 0)


def test_exif_orientation_is_applied(run: Run, samples: Samples) -> None:
    assert opened(run(samples.oriented, "fmt=png")).size == (200, 400)
    assert opened(run(samples.oriented, "fmt=png&wid=100", "o.jpg")).size == (100, 200)


def test_filters_run(run: Run, samples: Samples) -> None:
    query = (
        "fmt=png&wid=160&op_usm=1.2,3,2,1&op_sharpen=1&op_blur=1&op_brightness=10"
        "&op_contrast=-10&op_saturation=-40&op_hue=30&rotate=10&flip=lr&resMode=bisharp"
    )
    assert opened(run(samples.jpeg, query)).mode == "RGB"


def test_invert(run: Run, samples: Samples) -> None:
    src = samples.alpha_png
    plain = opened(run(src, "fmt=png&bgc=ffffff", "p.png")).getpixel((10, 10))
    inverted = opened(run(src, "fmt=png&bgc=ffffff&op_invert=1", "i.png")).getpixel((10, 10))
    assert plain == (255, 255, 255) and inverted == (0, 0, 0)


def test_icc_embed(run: Run, samples: Samples) -> None:
    embedded = opened(run(samples.jpeg, "fmt=jpeg&icc=sRGB&iccEmbed=1", "e.jpg"))
    assert embedded.info.get("icc_profile")
    stripped = opened(run(samples.jpeg, "fmt=jpeg&icc=sRGB", "s.jpg"))
    assert not stripped.info.get("icc_profile")


@pytest.mark.parametrize("src", ["gif", "tiff", "webp", "bmp", "alpha_png", "cmyk_jpeg"])
def test_inputs(run: Run, samples: Samples, src: str) -> None:
    img = opened(run(getattr(samples, src), "fmt=jpeg&wid=50"))
    assert (img.format, img.width) == ("JPEG", 50)


def test_psd_input(run: Run, samples: Samples, tmp_path: Path) -> None:
    magick = Path("/usr/bin/convert")
    if not magick.exists():
        pytest.skip("no ImageMagick CLI to make a PSD with")
    psd = tmp_path / "layers.psd"
    subprocess.run([str(magick), f"jpeg:{samples.jpeg}", f"psd:{psd}"], check=True,
                   env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    img = opened(run(psd, "fmt=png&wid=64"))
    assert (img.format, img.size) == ("PNG", (64, 48))


def test_cmyk_source_to_rgb(run: Run, samples: Samples) -> None:
    img = opened(run(samples.cmyk_jpeg, "fmt=png"))
    red = img.getpixel((25, 15))  # inside the red rectangle of the test photo
    assert img.mode == "RGB" and red[0] > 150 and red[1] < 100 and red[2] < 100


def test_avif_round_trip(run: Run, samples: Samples, pool: ConversionPool, out_dir: Path) -> None:
    avif = run(samples.jpeg, "fmt=avif&wid=120&qlt=60")
    assert avif.read_bytes()[4:12] == b"ftypavif"
    back = opened(run(avif, "fmt=png", "from-avif.avif"))
    assert back.size == (120, 90)


def test_pdf_output(run: Run, samples: Samples) -> None:
    path = run(samples.jpeg, "fmt=pdf&wid=144&printRes=72")
    doc = pdfium.PdfDocument(str(path))
    assert len(doc) == 1 and doc[0].get_size() == pytest.approx((144, 108))
    cmyk = run(samples.alpha_png, "fmt=pdf,cmyk,jpeg&bgc=808080", "c.png")
    pixel = pdfium.PdfDocument(str(cmyk))[0].render().to_pil().getpixel((10, 10))
    assert all(60 < v < 200 for v in pixel)  # mid gray, not inverted
    flate = run(samples.jpeg, "fmt=pdf,gray,zip&printRes=320", "z.jpg")
    assert b"/FlateDecode" in flate.read_bytes()[:2000]
    assert pdfium.PdfDocument(str(flate))[0].get_size() == pytest.approx((144, 108))


def test_pdf_input_gives_one_file_per_page(
    pool: ConversionPool, samples: Samples, out_dir: Path
) -> None:
    paths = pool.convert(samples.pdf, out_dir, parse_modifiers("fmt=png"), "brochure.pdf")
    assert [p.name for p in paths] == ["brochure-1.png", "brochure-2.png"]
    first = opened(paths[0])
    assert first.size in ((1275, 1650), (1275, 1651))  # Letter at 150 dpi (PDFium rounds up)
    assert len(first.getcolors(1 << 20) or []) > 100  # page 1 shows the embedded photo
    second = opened(paths[1])
    assert second.getcolors() == [(second.width * second.height, (255, 255, 255))]


def test_seed_example(pool: ConversionPool, samples: Samples, out_dir: Path) -> None:
    req = export_request("&fmt=png", "$test$", {"test": "fmt=tif"})
    (path,) = pool.convert(samples.jpeg, out_dir, req, "fileToExport.jpg")
    assert path.name == "fileToExport.tif"
    assert opened(path).format == "TIFF"


def test_awkward_names_are_never_interpreted(
    pool: ConversionPool, samples: Samples, out_dir: Path
) -> None:
    src_dir = out_dir / "in [0] %d @x"
    src_dir.mkdir()
    src = src_dir / "msl:photo[1].jpg"
    src.write_bytes(samples.jpeg.read_bytes())
    (path,) = pool.convert(src, out_dir, parse_modifiers("fmt=png&wid=20"), "text:%d[0].jpg")
    assert path.name == "text:%d[0].png"
    assert opened(path).size == (20, 15)
    assert sorted(p.name for p in out_dir.iterdir()) == ["in [0] %d @x", "text:%d[0].png"]


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel value (0..255) of two same-size RGB images."""
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return max(ImageStat.Stat(diff).mean)


@pytest.mark.parametrize(
    ("query", "fmt", "size"),
    [
        ("fmt=png&wid=1200", "PNG", (1200, 800)),  # decoded at 1/2, then Lanczos
        ("fmt=webp&wid=700", "WEBP", (700, 467)),  # 3/8, then Lanczos
        ("fmt=tif&wid=1500", "TIFF", (1500, 1000)),  # exactly 1/2
        ("fmt=jpeg&hei=100&qlt=95", "JPEG", (150, 100)),  # 1/8
        ("fmt=png&wid=300&hei=300&fit=crop", "PNG", (300, 300)),
    ],
)
def test_shrink_on_load_keeps_size_format_and_quality(
    run: Run, samples: Samples, query: str, fmt: str, size: tuple[int, int]
) -> None:
    """A JPEG shrunk by 2x or more is decoded at reduced scale (``jpeg:size``): the result has the
    exact requested size and format, and matches the same conversion from a full-size decode
    (an identity ``crop`` turns the hint off) and Pillow's Lanczos from the full image."""
    hinted = opened(run(samples.big_jpeg, query))
    full = opened(run(samples.big_jpeg, query + "&crop=0,0,3000,2000", "full.jpg"))
    assert (hinted.format, hinted.size) == (fmt, size)
    assert (full.format, full.size) == (fmt, size)
    assert mean_difference(hinted, full) < 1.5
    with Image.open(samples.big_jpeg) as source:
        if size[0] * 2 == size[1] * 3:  # same aspect ratio: compare with Pillow's resize
            reference = source.resize(size, Image.Resampling.LANCZOS)
            assert mean_difference(hinted, reference) < 4.0  # lossy outputs included
