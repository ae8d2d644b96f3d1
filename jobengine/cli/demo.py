"""The demo company ``47``: a user, sample images and presets, so the IPS examples work."""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image, ImageDraw
from sqlalchemy import select

from jobengine.assets.catalog import add_set, create_company, create_user, import_files
from jobengine.runtime import get_runtime
from jobengine.store.schema import Asset, ImageFormat

__all__ = ["DEMO_COMPANY", "SEED_EXAMPLE_XML", "seed_demo"]

DEMO_COMPANY = "47"

# The submitJob example of the IPS documentation, exactly as written there.
SEED_EXAMPLE_XML = """<submitJobParam xmlns="http://www.scene7.com/IpsApi/xsd">
   <companyHandle>47</companyHandle>
   <jobName>My Test Job</jobName>
   <imageServingPublishJob>
      <publishType>Full</publishType>
      <emailSetting>Error</emailSetting>
   </imageServingPublishJob>
</submitJobParam>"""

_SAMPLES = (
    ("sunrise.jpg", "JPEG", (1200, 800), (250, 140, 60)),
    ("ocean.jpg", "JPEG", (1600, 1000), (30, 90, 170)),
    ("forest.png", "PNG", (800, 800), (40, 130, 60)),
    ("logo.png", "PNG", (400, 200), (200, 30, 90)),
)


def _sample(path: Path, fmt: str, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    img = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(img)
    w, h = size
    for i in range(0, w, 40):
        shade = tuple(min(255, c + i * 60 // w) for c in color)
        draw.rectangle([i, 0, i + 20, h], fill=shade)
    draw.ellipse([w // 4, h // 4, 3 * w // 4, 3 * h // 4], outline=(255, 255, 255), width=8)
    img.save(path, fmt, quality=90) if fmt == "JPEG" else img.save(path, fmt)


def seed_demo(user: str, password: str) -> list[str]:
    """Create (or refresh) company 47 with the demo user, sample images and presets.

    Returns the handles of the sample image assets.
    """
    runtime = get_runtime()
    with tempfile.TemporaryDirectory() as tmp, runtime.store.write() as session:
        company = create_company(session, DEMO_COMPANY, "Demo Company")
        create_user(
            session, user, password, "IpsUser", [company], first_name="Demo", last_name="User"
        )
        files = []
        for name, fmt, size, color in _SAMPLES:
            path = Path(tmp) / name
            _sample(path, fmt, size, color)
            files.append(path)
        assets = import_files(
            session, runtime.storage, company, files, folder="/samples", ready_for_publish=True
        )
        if session.scalar(select(Asset.id).where(Asset.name == "Spring Look")) is None:
            add_set(session, company, "Spring Look", "ImageSet")
        for name, definition in (("test", "fmt=tif"), ("thumb", "wid=200&hei=200&fmt=jpeg")):
            key = name.lower()
            existing = session.scalar(
                select(ImageFormat).where(
                    ImageFormat.company_id == company.id, ImageFormat.name_key == key
                )
            )
            if existing is None:
                session.add(
                    ImageFormat(
                        company_id=company.id, name=name, name_key=key, url_modifier=definition
                    )
                )
        return [a.handle for a in assets]
