"""Input images for the imaging tests, generated at run time (no binary fixtures in the
repository): a photo-like picture, header bombs that claim huge sizes, PDFs, and the session's
set of sample files."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw


def photo(width: int = 640, height: int = 480) -> Image.Image:
    """A colourful test picture: gradients, shapes and some noise (compresses like a photo)."""
    img = Image.radial_gradient("L").resize((width, height))
    rgb = Image.merge(
        "RGB",
        (
            img,
            img.rotate(90).resize((width, height)),
            img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        ),
    )
    draw = ImageDraw.Draw(rgb)
    draw.rectangle((width // 8, height // 8, width // 3, height // 3), fill=(220, 30, 30))
    draw.ellipse((width // 2, height // 2, width - 20, height - 20), fill=(30, 200, 60))
    noise = Image.effect_noise((width, height), 24).convert("RGB")
    return Image.blend(rgb, noise, 0.15)


def png_header_bomb(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` with a tiny (invalid) body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    body = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + body + chunk(b"IEND", b"")


def gif_header_bomb(width: int, height: int) -> bytes:
    """A GIF whose screen and frame descriptors claim ``width`` x ``height`` (max 65535)."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 6
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00;"
    return screen + frame


def tiff_header_bomb(width: int, height: int) -> bytes:
    """A little-endian TIFF whose IFD claims ``width`` x ``height`` 8-bit gray pixels."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, 16)]  # fmt: skip
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        ifd += struct.pack("<HHII", tag, kind, 1, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 24) + b"\x00" * 16 + ifd


def make_pdf(path: Path, pages: int, *, with_image: bool = True) -> Path:
    """A Letter-size PDF of ``pages`` pages made with pypdfium2 (page 1 shows a JPEG)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    jpeg = io.BytesIO()
    photo(300, 200).save(jpeg, "JPEG", quality=80)
    for index in range(pages):
        page = doc.new_page(612, 792)
        if with_image and index == 0:
            image = pdfium.PdfImage.new(doc)
            jpeg.seek(0)
            image.load_jpeg(jpeg, inline=True)
            image.set_matrix(pdfium.PdfMatrix().scale(300, 200).translate(100, 400))
            page.insert_obj(image)
            page.gen_content()
        page.close()
    doc.save(str(path))
    doc.close()
    return path


class Samples:
    """Generated inputs, written once per test session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jpeg = self._save("photo.jpg", photo(), "JPEG", quality=92)
        self.big_jpeg = self._save("big.jpg", photo(3000, 2000), "JPEG", quality=90)
        alpha = photo(320, 240).convert("RGBA")
        ImageDraw.Draw(alpha).rectangle((0, 0, 159, 239), fill=(0, 0, 0, 0))  # left half clear
        self.alpha_png = self._save("alpha.png", alpha, "PNG")
        self.gif = self._save("anim.gif", photo(200, 100).convert("P"), "GIF")
        self.tiff = self._save("scan.tif", photo(300, 200), "TIFF", compression="tiff_lzw")
        self.webp = self._save("pic.webp", photo(300, 200), "WEBP", quality=80)
        self.bmp = self._save("pic.bmp", photo(120, 80), "BMP")
        self.cmyk_jpeg = self._save("print.jpg", photo(120, 80).convert("CMYK"), "JPEG")
        rotated = photo(400, 200)
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 CW to display
        self.oriented = self._save("oriented.jpg", rotated, "JPEG", exif=exif.tobytes())
        self.pdf = make_pdf(root / "two-pages.pdf", 2)

    def _save(self, name: str, img: Image.Image, fmt: str, **kw: object) -> Path:
        path = self.root / name
        img.save(path, fmt, **kw)
        return path

    def write(self, name: str, data: bytes) -> Path:
        """A file of raw bytes in a fresh directory (for hostile inputs)."""
        directory = self.root / "raw" / f"{random.getrandbits(48):012x}"
        directory.mkdir(parents=True)
        path = directory / name
        path.write_bytes(data)
        return path
