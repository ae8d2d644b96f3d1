"""Images for the upload-crop tests, generated with Pillow: a picture framed by a border of a
known color and width (solid, transparent, or noisy), and helpers to read sizes back."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

__all__ = ["bordered", "corrupt_png", "size_of"]

INNER = (30, 160, 220)


def bordered(
    width: int = 120,
    height: int = 90,
    *,
    left: int = 10,
    top: int = 6,
    right: int = 14,
    bottom: int = 8,
    border: tuple[int, ...] = (250, 250, 250),
    noise: int = 0,
    transparent: bool = False,
    fmt: str = "PNG",
) -> bytes:
    """A ``width`` x ``height`` image whose content (a blue rectangle with a red mark) is framed
    by a border ``left``/``top``/``right``/``bottom`` pixels wide: of the color ``border``, each
    pixel varied by up to ``noise`` per channel, or fully transparent."""
    mode = "RGBA" if transparent else "RGB"
    fill = (0, 0, 0, 0) if transparent else border
    img = Image.new(mode, (width, height), fill)
    if noise:
        rng = random.Random(7)
        px = img.load()
        assert px is not None
        for y in range(height):
            for x in range(width):
                px[x, y] = tuple(max(0, min(255, c + rng.randint(-noise, noise))) for c in fill)
    box = (left, top, width - right - 1, height - bottom - 1)
    draw = ImageDraw.Draw(img)
    draw.rectangle(box, fill=INNER + ((255,) if transparent else ()))
    draw.rectangle(
        (left, top, left + 3, top + 3), fill=(200, 20, 20) + ((255,) if transparent else ())
    )
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def corrupt_png() -> bytes:
    """A PNG cut in the middle of its pixel data."""
    return bordered(400, 300, noise=40)[:900]
