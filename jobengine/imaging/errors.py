"""Conversion failures (subclasses of the engine's fault tree).

::

    ServerError (30000)
     +-- ConversionFailed        the file could not be converted (refused input, corrupt data,
          |                      source limits, ImageMagick error, worker crash)
          +-- UnsupportedInput   the bytes are not an allowed raster/PDF format (SVG, EPS, MVG...)
          +-- ConversionTimeout  the wall-clock limit passed; the worker was killed and replaced

Request faults stay in :mod:`jobengine.errors`: ``InvalidParameter`` (bad modifier),
``NotSupported`` (valid IS but not produced here), ``LimitExceeded`` (output above MaxPix).
"""

from __future__ import annotations

from jobengine.errors import (
    InvalidParameter,
    IpsFault,
    LimitExceeded,
    NotSupported,
    ServerError,
)

__all__ = [
    "FAULTS_BY_NAME",
    "ConversionFailed",
    "ConversionTimeout",
    "UnsupportedInput",
]


class ConversionFailed(ServerError):
    """Raised when a file cannot be converted; the reason says why, for a person."""


class UnsupportedInput(ConversionFailed):
    """Raised when the input bytes are not an allowed format (detected from content, not name)."""


class ConversionTimeout(ConversionFailed):
    """Raised when a conversion passes its wall-clock limit; the worker is killed and replaced."""


# Faults a worker may report, by class name (the worker protocol carries names, never pickles).
FAULTS_BY_NAME: dict[str, type[IpsFault]] = {
    cls.__name__: cls
    for cls in (
        ConversionFailed,
        UnsupportedInput,
        ConversionTimeout,
        InvalidParameter,
        NotSupported,
        LimitExceeded,
    )
}
