"""The files jobengine ships beside its code: the repository's ``config/`` directory (the
ImageMagick policy, default presets, gettext catalogs).

It installs as the data package ``jobengine.config`` (pyproject.toml maps it), so a user's
site-packages holds no top-level ``config``; the same name finds it in a checkout (an editable
install maps it there) and in a wheel.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

__all__ = ["config_dir"]


@cache
def config_dir() -> Path:
    """The directory of the shipped configuration files."""
    return Path(str(resources.files("jobengine.config")))
