"""``icc=profile[,intent]``: convert to a named ICC output profile (LittleCMS inside ImageMagick).

Profile names are looked up, case-insensitively, as ``<name>``, ``<name>.icc`` or ``<name>.icm``
in the directories of ``JOBENGINE_IMAGING_ICC_DIRS`` (``os.pathsep``-separated; default
``/usr/share/color/icc``). ``sRGB`` is built in. An image without an embedded profile is taken
as sRGB (RGB and gray sources); a CMYK source needs its own profile.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from wand.image import Image

from jobengine.errors import NotSupported
from jobengine.imaging.errors import ConversionFailed
from jobengine.imaging.request import Icc

__all__ = ["apply_icc", "find_profile", "srgb_profile"]

DEFAULT_DIRS = "/usr/share/color/icc"


@cache
def srgb_profile() -> bytes:
    """A built-in sRGB profile (made by LittleCMS through Pillow)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _dirs() -> list[Path]:
    raw = os.environ.get("JOBENGINE_IMAGING_ICC_DIRS", DEFAULT_DIRS)
    return [Path(d) for d in raw.split(os.pathsep) if d]


def find_profile(name: str) -> bytes:
    """The bytes of the profile called ``name``; NotSupported when it is not installed."""
    if name.lower() in ("srgb", "srgb.icc"):
        return srgb_profile()
    wanted = {name.lower(), f"{name.lower()}.icc", f"{name.lower()}.icm"}
    for directory in _dirs():
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.name.lower() in wanted and entry.is_file():
                return entry.read_bytes()
    raise NotSupported(f"ICC profile {name!r} is not installed on this server")


def apply_icc(img: Image, icc: Icc) -> None:
    """Convert ``img`` to the profile of ``icc`` (an untagged RGB/gray image counts as sRGB)."""
    target = find_profile(icc.profile)
    if not img.profiles["icc"]:
        if img.colorspace == "cmyk":
            raise ConversionFailed("icc= needs the CMYK source's own ICC profile, and it has none")
        if img.colorspace != "srgb":
            img.transform_colorspace("srgb")
        img.profiles["icc"] = srgb_profile()
    if icc.intent:
        img.rendering_intent = icc.intent
    img.profiles["icc"] = target
