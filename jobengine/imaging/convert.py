"""Convert one file in this process: sniff, check limits, decode, run the pipeline, encode.

This is what a pool worker runs (:mod:`jobengine.imaging.worker`); call it directly only in a
process you can afford to lose (ImageMagick can ``abort()`` on hostile input). The order:

1. the output format can be written here (``NotSupported`` otherwise);
2. the file is a regular file under ``max_file_bytes``; its format comes from its first bytes;
3. header size, then ImageMagick ``ping``, then the size plan are checked against the limits,
   all before any pixel is decoded; JPEG is decoded at reduced size when shrinking;
4. the explicit coder prefix from step 2 is always used (``jpeg:/path``), never the file name;
5. :data:`~jobengine.imaging.steps.PIPELINE`, then an atomic write (PDF: one file per page).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from wand.exceptions import CorruptImageWarning, PolicyError, WandException
from wand.image import Image

from jobengine.imaging.encode import OutputFiles, require_encoder
from jobengine.imaging.errors import ConversionFailed, UnsupportedInput
from jobengine.imaging.geometry import check_plan, jpeg_size_hint, plan
from jobengine.imaging.limits import Limits
from jobengine.imaging.pdf import open_pdf, render_page
from jobengine.imaging.request import ImageRequest, output_name, page_name
from jobengine.imaging.sniff import Sniffed, jpeg_is_complete, sniff_file
from jobengine.imaging.steps import Job, run_pipeline

__all__ = ["convert_file", "open_raster"]

log = logging.getLogger(__name__)

_SWAPPED = frozenset({"left_top", "right_top", "right_bottom", "left_bottom"})


def convert_file(
    src: Path,
    dst_dir: Path,
    req: ImageRequest,
    base_name: str,
    limits: Limits | None = None,
    *,
    token: str = "",
    progress: Callable[[Path], None] | None = None,
    durable: bool = True,
) -> list[Path]:
    """Convert ``src`` into ``dst_dir`` as ``output_name(base_name, req)`` (PDF sources give
    ``name-<page>.ext`` per page); returns the written paths. ``progress`` is called after each
    file; on failure nothing this call wrote is left behind. ``durable=False``: the files are
    not flushed to disk before they are renamed into place (scratch made again if lost)."""
    limits = limits or Limits()
    require_encoder(req)
    if not dst_dir.is_dir():
        raise ConversionFailed("the destination directory does not exist")
    _check_file(src, limits)
    sniffed = sniff_file(src)
    if sniffed.size is not None:
        _check_header_size(sniffed.size, limits)
    if sniffed.kind == "jpeg" and not jpeg_is_complete(src):
        raise ConversionFailed("the JPEG file is truncated or corrupt (no end-of-image marker)")
    name = output_name(base_name, req)
    out = OutputFiles(dst_dir, token, progress, durable=durable)
    try:
        with _magick_errors(), warnings.catch_warnings():
            warnings.simplefilter("error", CorruptImageWarning)
            if sniffed.kind == "pdf":
                _convert_pdf(src, req, limits=limits, name=name, out=out)
            else:
                _convert_raster(src, sniffed, req, limits=limits, name=name, out=out)
    except BaseException:
        out.discard()
        raise
    return out.paths


def _check_file(src: Path, limits: Limits) -> None:
    try:
        info = src.stat()
    except OSError as exc:
        raise ConversionFailed(f"the source file cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConversionFailed("the source is not a regular file")
    if info.st_size > limits.max_file_bytes:
        raise ConversionFailed(
            f"the source file has {info.st_size} bytes; the limit is "
            f"{limits.max_file_bytes} (max_file_bytes)"
        )


def _check_header_size(size: tuple[int, int], limits: Limits) -> None:
    width, height = size
    if width * height > limits.max_source_pixels:
        raise ConversionFailed(
            f"source image header says {width}x{height} = {width * height} "
            f"pixels; the limit is {limits.max_source_pixels} "
            "(max_source_pixels)"
        )


@contextmanager
def _magick_errors() -> Iterator[None]:
    """ImageMagick exceptions and warnings-as-errors become ConversionFailed."""
    try:
        yield
    except PolicyError as exc:
        raise ConversionFailed(
            f"refused by the ImageMagick security policy: {_clean(exc)}"
        ) from None
    except (WandException, CorruptImageWarning) as exc:
        raise ConversionFailed(f"ImageMagick cannot convert the image: {_clean(exc)}") from None
    except MemoryError:
        raise ConversionFailed("the conversion ran out of memory (memory_bytes)") from None


def _clean(exc: BaseException) -> str:
    """The message without ImageMagick's source location and our private paths."""
    text = str(exc).split(" @ ", 1)[0]
    return text.strip() or type(exc).__name__


_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.+=, -]+")


@contextmanager
def _plain_path(src: Path) -> Iterator[Path]:
    """``src``, or a private hard link/copy of it when its path has characters ImageMagick
    interprets (``[0]``, ``%d``, ``@``, ``:``, ``*`` ...). Symbolic links are refused by the
    hardened ImageMagick build, so they are not an option."""
    path = src.resolve()
    if _PLAIN_PATH.fullmatch(str(path)):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="jobengine-src-") as tmp:
        plain = Path(tmp) / "src"
        try:
            os.link(path, plain)
        except OSError:
            shutil.copyfile(path, plain)
        yield plain


@contextmanager
def open_raster(src: Path, limits: Limits, *, pdf_refusal: str) -> Iterator[Image]:
    """The first frame of the raster image ``src``, decoded only after the conversion gate: a
    regular file under ``max_file_bytes``, its format sniffed from the bytes (a PDF raises
    UnsupportedInput with ``pdf_refusal``), header and ``ping`` sizes under
    ``max_source_pixels``, a truncated JPEG refused, an explicit coder prefix. ImageMagick errors
    and corrupt-image warnings, also those of the caller's work on the image, become
    ConversionFailed."""
    _check_file(src, limits)
    sniffed = sniff_file(src)
    if sniffed.kind == "pdf":
        raise UnsupportedInput(pdf_refusal)
    if sniffed.size is not None:
        _check_header_size(sniffed.size, limits)
    if sniffed.kind == "jpeg" and not jpeg_is_complete(src):
        raise ConversionFailed("the JPEG file is truncated or corrupt (no end-of-image marker)")
    with _magick_errors(), warnings.catch_warnings(), _plain_path(src) as path:
        warnings.simplefilter("error", CorruptImageWarning)
        spec = f"{sniffed.coder}:{path}[0]"
        with Image.ping(filename=spec) as probe:
            width, height = probe.width, probe.height
        if min(width, height) < 1:
            raise ConversionFailed("the image has no size (corrupt header)")
        _check_header_size((width, height), limits)
        with Image(filename=spec) as img:
            yield img


def _convert_raster(
    src: Path, sniffed: Sniffed, req: ImageRequest, *, limits: Limits, name: str, out: OutputFiles
) -> None:
    with _plain_path(src) as path:
        spec = f"{sniffed.coder}:{path}[0]"
        with Image.ping(filename=spec) as probe:
            raw = (probe.width, probe.height)
            swapped = probe.orientation in _SWAPPED
        if min(raw) < 1:
            raise ConversionFailed("the image has no size (corrupt header)")
        p = plan(*(raw[::-1] if swapped else raw), req)
        check_plan(p, limits)
        with Image() as img:
            hint = jpeg_size_hint(p, req, raw) if sniffed.kind == "jpeg" else None
            if hint:
                img.options["jpeg:size"] = f"{hint[0]}x{hint[1]}"
            img.read(filename=spec)
            log.debug(
                "decoded %s %sx%s (hint %s) -> %sx%s",
                sniffed.kind,
                img.width,
                img.height,
                hint,
                *p.output,
            )
            run_pipeline(Job(img, req, p, limits))
            out.write(img, req, name)


def _convert_pdf(
    src: Path, req: ImageRequest, *, limits: Limits, name: str, out: OutputFiles
) -> None:
    with open_pdf(src, limits) as doc:
        for index in range(len(doc)):
            with render_page(doc, index, limits, req.spec.alpha) as img:
                p = plan(img.width, img.height, req)
                check_plan(p, limits)
                run_pipeline(Job(img, req, p, limits))
                out.write(img, req, page_name(name, index + 1))
