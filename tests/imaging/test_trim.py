"""The pool's ``trim_box`` operation (upload crops): image size, color and transparent border
trims with tolerance, and hostile input bounded by the pool's limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobengine.imaging import ConversionFailed, ConversionPool, UnsupportedInput
from jobengine.imaging.trim import trim_box
from tests.support.crop_samples import bordered, corrupt_png
from tests.support.image_samples import Samples, png_header_bomb

# bordered(): 120x90, border left 10, top 6, right 14, bottom 8 -> content 96x76 at 10,6
CONTENT = [10, 6, 96, 76]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_size_only(pool: ConversionPool, tmp_path: Path) -> None:
    src = write(tmp_path, "a.png", bordered())
    assert pool.trim_box(src) == {"width": 120, "height": 90, "alpha": False, "box": None}


@pytest.mark.parametrize("corner", ["UpperLeft", "UpperRight", "BottomLeft", "BottomRight"])
def test_color_border_from_each_corner(pool: ConversionPool, tmp_path: Path, corner: str) -> None:
    src = write(tmp_path, "a.png", bordered())
    assert pool.trim_box(src, mode="color", corner=corner)["box"] == CONTENT


def test_tolerance_matters_on_a_noisy_border(pool: ConversionPool, tmp_path: Path) -> None:
    src = write(tmp_path, "noisy.png", bordered(border=(200, 200, 200), noise=12))
    exact = pool.trim_box(src, mode="color", fuzz=0.0)["box"]
    lenient = pool.trim_box(src, mode="color", fuzz=0.1)["box"]
    assert exact != CONTENT  # a noisy border is not one color
    assert lenient == CONTENT


def test_everything_matches_leaves_nothing(pool: ConversionPool, tmp_path: Path) -> None:
    src = write(tmp_path, "a.png", bordered())
    assert pool.trim_box(src, mode="color", fuzz=1.0)["box"] == []


def test_no_border_no_box(pool: ConversionPool, tmp_path: Path) -> None:
    src = write(tmp_path, "a.png", bordered(left=0, top=0, right=0, bottom=0))
    assert pool.trim_box(src, mode="color")["box"] is None


def test_transparent_border(pool: ConversionPool, tmp_path: Path) -> None:
    src = write(tmp_path, "t.png", bordered(transparent=True))
    answer = pool.trim_box(src, mode="transparent")
    assert answer["alpha"] is True
    assert answer["box"] == CONTENT


def test_transparent_without_alpha_trims_nothing(pool: ConversionPool, tmp_path: Path) -> None:
    src = write(tmp_path, "a.jpg", bordered(fmt="JPEG"))
    assert pool.trim_box(src, mode="transparent") == {
        "width": 120,
        "height": 90,
        "alpha": False,
        "box": None,
    }


def test_oriented_jpeg_is_measured_as_shown(pool: ConversionPool, samples: Samples) -> None:
    answer = pool.trim_box(samples.oriented)  # 400x200 stored, EXIF rotates it to 200x400
    assert (answer["width"], answer["height"]) == (200, 400)


def test_hostile_inputs(pool: ConversionPool, samples: Samples, tmp_path: Path) -> None:
    bomb = samples.write("bomb.png", png_header_bomb(60000, 60000))
    with pytest.raises(ConversionFailed, match="pixels"):
        pool.trim_box(bomb, mode="color")
    with pytest.raises(ConversionFailed):
        pool.trim_box(write(tmp_path, "cut.png", corrupt_png()), mode="color")
    with pytest.raises(UnsupportedInput):
        pool.trim_box(samples.pdf)
    assert pool.trim_box(samples.jpeg)["width"] == 640  # the pool is still usable


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    src = write(tmp_path, "a.png", bordered())
    for kwargs in ({"mode": "smart"}, {"corner": "Middle"}, {"fuzz": 2.0}):
        with pytest.raises(ConversionFailed):
            trim_box(src, tmp_path, "x.json", **kwargs)  # type: ignore[arg-type]


def test_pyramid_of_a_crop(pool: ConversionPool, tmp_path: Path) -> None:
    from PIL import Image

    src = write(tmp_path, "a.png", bordered(600, 400))
    out = tmp_path / "out"
    out.mkdir()
    path = pool.pyramid(src, out, "1.ptif", crop=(10, 6, 300, 200))
    with Image.open(path) as img:
        assert img.size == (300, 200)
    clipped = pool.pyramid(src, out, "2.ptif", crop=(500, 300, 300, 300))  # clipped to the image
    with Image.open(clipped) as img:
        assert img.size == (100, 100)
    with pytest.raises(ConversionFailed, match="leaves nothing"):
        pool.pyramid(src, out, "3.ptif", crop=(700, 0, 10, 10))
    assert sorted(p.name for p in out.iterdir()) == ["1.ptif", "2.ptif"]
