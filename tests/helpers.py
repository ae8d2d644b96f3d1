"""Test data made at run time: companies, users and images (no binary fixtures)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from PIL import Image

from jobengine.assets.catalog import add_set, create_company, create_user, import_files
from jobengine.runtime import get_runtime

PASSWORD = "secret-password"


def make_images(folder: Path, n: int, size: tuple[int, int] = (64, 48), pad: int = 0) -> list[Path]:
    """``n`` small distinct JPEGs (``pad`` adds that many bytes of comment to each)."""
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.jpg"
        Image.new("RGB", size, (i * 7 % 256, 80, 160)).save(path, "JPEG", quality=80)
        if pad:
            with path.open("ab") as fh:
                fh.write(b"\0" * pad)
        paths.append(path)
    return paths


def make_company(
    n_images: int = 3,
    *,
    ready: bool = True,
    sets: int = 0,
    pad: int = 0,
    user_type: str = "IpsUser",
    size: tuple[int, int] = (64, 48),
) -> tuple[str, list[str]]:
    """A fresh company (unique handle) with a user ``<handle>@example.com``; (handle, assets)."""
    runtime = get_runtime()
    handle = f"t{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp, runtime.store.write() as session:
        company = create_company(session, handle, f"Test {handle}")
        create_user(session, f"{handle}@example.com", PASSWORD, user_type, [company])
        files = make_images(Path(tmp), n_images, size=size, pad=pad)
        assets = import_files(
            session,
            runtime.storage,
            company,
            files,
            folder="/pics",
            ready_for_publish=ready,
            max_bytes=pad + 1024 * 1024,  # padded test images may pass the tests' upload cap
        )
        handles = [a.handle for a in assets]
        handles += [add_set(session, company, f"set{i}", "ImageSet").handle for i in range(sets)]
    return handle, handles


def export_request(
    company: str, assets: list[str], name: str = "Export", **extra: Any
) -> dict[str, Any]:
    """A submitJob dict for an ExportJob of ``assets`` as originals."""
    return {
        "companyHandle": company,
        "jobName": name,
        "exportJob": {"assetHandleArray": {"items": assets}, "fmt": "orig", "emailSetting": "None"},
        **extra,
    }


def publish_request(
    company: str, name: str = "Publish", publish_type: str = "Full", **extra: Any
) -> dict[str, Any]:
    """A submitJob dict for an ImageServingPublishJob."""
    return {
        "companyHandle": company,
        "jobName": name,
        "imageServingPublishJob": {"publishType": publish_type, "emailSetting": "Error"},
        **extra,
    }
