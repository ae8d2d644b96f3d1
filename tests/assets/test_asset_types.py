"""Asset types come from the first bytes of a file (``asset_type_of``)."""

from __future__ import annotations

import pytest

from jobengine.assets.catalog import asset_type_of


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0rest", "Image"),
        (b"\x89PNG\r\n\x1a\nrest", "Image"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "Image"),
        (b"%PDF-1.7", "Pdf"),
        (b"%!PS-Adobe-3.0 EPSF", "PostScript"),
        (b"\x00\x00\x00\x18ftypmp42", "Video"),
        (b"\x00\x00\x00\x18ftypavif", "Image"),
        (b"<svg xmlns=", "File"),
    ],
)
def test_asset_types_come_from_bytes(head: bytes, kind: str) -> None:
    assert asset_type_of(head) == kind
