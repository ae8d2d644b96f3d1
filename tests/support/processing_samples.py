"""Files and assets made at run time for the rip, optimize and reprocess tests: PDFs, good
(pypdfium2) and hostile (by hand), images, and a way to add them to a company."""

from __future__ import annotations

import hashlib
import io
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image


def pdf_pages(
    path: Path, pages: int, *, size: tuple[float, float] = (612, 792), image: bool = True
) -> Path:
    """A PDF of ``pages`` pages of ``size`` points; page 1 shows a JPEG when ``image``."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    jpeg = io.BytesIO()
    Image.new("RGB", (120, 80), (200, 40, 40)).save(jpeg, "JPEG", quality=80)
    for index in range(pages):
        page = doc.new_page(*size)
        if image and index == 0:
            picture = pdfium.PdfImage.new(doc)
            jpeg.seek(0)
            picture.load_jpeg(jpeg, inline=True)
            picture.set_matrix(pdfium.PdfMatrix().scale(120, 80).translate(20, 20))
            page.insert_obj(picture)
            page.gen_content()
        page.close()
    doc.save(str(path))
    doc.close()
    return path


# The password padding string of the PDF standard security handler (ISO 32000-1, 7.6.3.3).
_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    box = list(range(256))
    j = 0
    for i in range(256):
        j = (j + box[i] + key[i % len(key)]) % 256
        box[i], box[j] = box[j], box[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + box[i]) % 256
        box[i], box[j] = box[j], box[i]
        out.append(byte ^ box[(box[i] + box[j]) % 256])
    return bytes(out)


def _objects_pdf(objects: list[bytes], trailer: bytes) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += b"trailer\n" + trailer + f"\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def encrypted_pdf(path: Path, user_password: bytes = b"secret") -> Path:
    """A one-page PDF under the standard security handler (RC4 40-bit, revision 2) with a user
    password: it cannot be opened without it."""
    doc_id = b"jobengine-test-1"
    permissions = -4
    owner_key = hashlib.md5((b"owner" + _PAD)[:32]).digest()[:5]  # the PDF spec's algorithm
    owner = _rc4(owner_key, (user_password + _PAD)[:32])
    key = hashlib.md5(  # the PDF spec's algorithm
        (user_password + _PAD)[:32] + owner + struct.pack("<i", permissions) + doc_id
    ).digest()[:5]
    user = _rc4(key, _PAD)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        f"<< /Filter /Standard /V 1 /R 2 /O <{owner.hex()}> /U <{user.hex()}> "
        f"/P {permissions} >>".encode(),
    ]
    ident = doc_id.hex()
    trailer = f"<< /Size 5 /Root 1 0 R /Encrypt 4 0 R /ID [<{ident}> <{ident}>] >>".encode()
    path.write_bytes(_objects_pdf(objects, trailer))
    return path


def empty_pdf(path: Path) -> Path:
    """A well-formed PDF whose page tree has no pages."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    path.write_bytes(_objects_pdf(objects, b"<< /Size 3 /Root 1 0 R >>"))
    return path


def corrupt_pdf(path: Path) -> Path:
    """A PDF header followed by bytes that are no PDF structure at all."""
    path.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 16)
    return path


def wide_page_pdf(path: Path) -> Path:
    """One page 200 inches wide and half an inch high: 30,000 pixels wide at 150 dpi."""
    return pdf_pages(path, 1, size=(14400, 36), image=False)


def photo_file(path: Path, size: tuple[int, int] = (640, 480), shade: int = 0) -> Path:
    """A JPEG with some structure (a gradient and a block), ``shade`` making it distinct."""
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    block = Image.new("RGB", (size[0] // 3, size[1] // 3), (200, shade % 256, 60))
    img.paste(block, (size[0] // 4, size[1] // 4))
    img.save(path, "JPEG", quality=90)
    return path


def corrupt_jpeg(path: Path) -> Path:
    """JPEG magic bytes, then junk: an Image asset that cannot be decoded."""
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9")
    return path


def add_files(
    company: str, makers: dict[str, Callable[[Path], Path]], folder: str = "/docs"
) -> dict[str, str]:
    """Files made by ``makers`` (name -> maker(path)) added as assets; name -> handle."""
    from jobengine.assets.catalog import add_asset, company_by_handle
    from jobengine.runtime import get_runtime

    runtime = get_runtime()
    handles = {}
    with tempfile.TemporaryDirectory() as tmp, runtime.store.write() as session:
        owner = company_by_handle(session, company)
        for name, make in makers.items():
            path = make(Path(tmp) / name)
            asset = add_asset(session, runtime.storage, owner, path, folder=folder, name=name)
            handles[name] = asset.handle
    return handles
