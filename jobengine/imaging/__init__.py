"""Image conversion for ExportJob ``fmt=convert`` (see docs/imaging.md).

* :mod:`.modifiers` parses Image Serving modifiers and macros into an :class:`ImageRequest`
  (``parse_modifiers``, ``export_request``, ``format_query``); :func:`output_name` names files.
* :mod:`.pool` converts in isolated worker processes (``ConversionPool``, ``convert``); the same
  workers rip PDFs into page images (``rip_pdf``, :mod:`.rip`) and write pyramid TIFFs
  (``pyramid``, :mod:`.ptif`) and measure images for upload crops (``trim_box``,
  :mod:`.trim`).
* :mod:`.sniff`, :mod:`.convert`, :mod:`.steps`, :mod:`.encode`, :mod:`.pdf` do the work inside a
  worker; importing this package does not load ImageMagick.
"""

from jobengine.imaging.errors import ConversionFailed, ConversionTimeout, UnsupportedInput
from jobengine.imaging.limits import Limits
from jobengine.imaging.modifiers import (
    default_presets,
    export_request,
    format_query,
    parse_modifiers,
)
from jobengine.imaging.pool import (
    ConversionPool,
    convert,
    default_pool,
    pyramid,
    rip_pdf,
    shutdown_default_pool,
    trim_box,
)
from jobengine.imaging.request import ImageRequest, output_name, page_name

__all__ = [
    "ConversionFailed",
    "ConversionPool",
    "ConversionTimeout",
    "ImageRequest",
    "Limits",
    "UnsupportedInput",
    "convert",
    "default_pool",
    "default_presets",
    "export_request",
    "format_query",
    "output_name",
    "page_name",
    "parse_modifiers",
    "pyramid",
    "rip_pdf",
    "shutdown_default_pool",
    "trim_box",
]
