"""Security and resource limits of a conversion, in one frozen object with safe defaults.

Every limit is checked before any pixel is decoded (header sniff, then ImageMagick ping, then the
size plan), and again by the operating system in the worker (RLIMIT_AS) and by ImageMagick's own
resource limits. Environment overrides use the ``JOBENGINE_IMAGING_`` prefix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from jobengine.errors import ConfigurationError

__all__ = ["ENV_PREFIX", "MAX_RIP_DPI", "MIN_RIP_DPI", "Limits"]

ENV_PREFIX = "JOBENGINE_IMAGING_"
MiB = 1024 * 1024
# The resolutions a PDF rip may ask for (PDFOptions/resolution): a quarter of 72 dpi to print
# resolution; the page raster is lowered further to stay under max_source_pixels.
MIN_RIP_DPI, MAX_RIP_DPI = 18.0, 600.0


@dataclass(frozen=True)
class Limits:
    """Per-conversion limits (pixels, bytes, seconds, pages) and worker resource caps."""

    max_source_pixels: int = 100_000_000  # decoded source (or PDF page raster) at most 100 MP
    max_output_pixels: int = 100_000_000  # Image Serving attribute::MaxPix (DMC exports ~100 MP)
    max_file_bytes: int = 512 * MiB  # input file size
    max_pdf_pages: int = 500  # more pages fail fast with LimitExceeded
    pdf_dpi: float = 150.0  # page raster resolution (lowered to stay under the page cap)
    # The work one PDF may cost, whatever its page count says: a page raster is lowered to at
    # most max_pdf_page_pixels (an A4 or Letter page at 600 dpi fits); a document whose pages
    # would raster to more than max_pdf_pixels in all fails before the first page; a rip ends
    # after max_pdf_seconds of wall clock in all (each page also has timeout_seconds).
    max_pdf_page_pixels: int = 40_000_000
    max_pdf_pixels: int = 2_000_000_000
    max_pdf_seconds: float = 900.0
    timeout_seconds: float = 120.0  # wall clock per output image (each PDF page gets its own)
    memory_bytes: int = 5120 * MiB  # RLIMIT_AS of a worker process (address space, maps too)
    # ImageMagick's pixel cache: on the heap up to magick_memory_bytes, then in memory-mapped
    # temporary files (page cache) up to magick_map_bytes, then read and written row by row on
    # disk, far slower; magick_disk_bytes bounds all file-backed caches. A 100 MP resize holds
    # about 2.4 GB of Q16 caches (source, filtered pass, result): it must fit the map.
    magick_memory_bytes: int = 256 * MiB
    magick_map_bytes: int = 4096 * MiB
    magick_disk_bytes: int = 4096 * MiB
    max_tasks_per_worker: int = 500  # a worker is replaced after this many conversions

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ConfigurationError(f"imaging limit {f.name} must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """Defaults overridden by ``JOBENGINE_IMAGING_<FIELD>`` (``..._TIMEOUT_SECONDS=60``)."""
        env = os.environ if env is None else env
        changes: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw.strip() == "":
                continue
            kind = float if f.type in ("float", float) else int
            try:
                changes[f.name] = kind(raw)
            except ValueError:
                raise ConfigurationError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a number"
                ) from None
        return cls(**changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (sent to the workers as JSON)."""
        return asdict(self)
