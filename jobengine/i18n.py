"""Languages: the gettext catalogs of job e-mails and job log messages, and the safe formatting
of log messages.

A job log row (``log_details``) stores its message as a message id, the English text with named
placeholders (``"published {path}"``), and its arguments, each already a string; ``message``
keeps the English text. getJobLogDetails and getAssetJobLogs render ``logMessage`` at read
time in the operation locale (``authHeader/locale``, else ``Accept-Language``: see
:func:`operation_locale`), else the job's ``locale`` (submitJob.locale), else the server default
(:data:`DEFAULT_LOCALE`). ``ll-CC`` falls back to ``ll``, then to English.

Every log message id is one of :data:`LogMessage` (mypy checks each call site): a message used in
code is always in the catalogs (``config/locale``), which a test checks. Arguments (asset names,
paths, exception texts) are never translated and never interpreted: :func:`fill` replaces plain
``{name}`` fields only, and a catalog template with anything else (attributes, indexes, format
specs, conversions, unknown names, unbalanced braces) falls back to the English text.
"""

from __future__ import annotations

import functools
import gettext
import re
import string
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, get_args

from jobengine.locales import DOMAIN, LOCALE_DIR

__all__ = [
    "CATALOG_MESSAGES",
    "DEFAULT_LOCALE",
    "LOG_MESSAGES",
    "MAX_ARG_CHARS",
    "PROGRESS_MESSAGE",
    "LogMessage",
    "english",
    "fill",
    "languages",
    "log_message",
    "message_args",
    "operation_locale",
    "progress_message",
    "translator",
]

DEFAULT_LOCALE = "en"  # the server default locale
MAX_ARG_CHARS = 4000  # one argument of a log message, as stored
_LOCALE = re.compile(r"([A-Za-z]{2,3})(?:[-_]([A-Za-z0-9]{2,8}))?")
_FORMATTER = string.Formatter()

# Every job log message id: the English text, with named placeholders for its arguments.
LogMessage = Literal[
    # the run's life (jobengine/engine/runner.py)
    "job {job} started",
    "job stopped before it started",
    "cannot process {item}: {error}",
    "{item} cancelled: job stopped",
    "job done: {success} succeeded, {errors} failed, {warnings} warnings of {total} file(s)",
    "job stopped: {success} succeeded, {errors} failed, {warnings} warnings of {total} file(s)",
    "the job could not start: {error}",
    "the job could not finish: {error}",
    # the control operations (jobengine/operations/control.py)
    "stop requested",
    "job deleted before it started",
    "job deleted: stopping",
    # the job kinds (jobengine/kinds/)
    "asset {asset} no longer exists",
    "skipped {name}: {type} assets cannot be exported",
    "cannot convert {name}: {reason}",
    "cannot read {name}: {error}",
    "no space left on device writing {name}",
    "converted {files}",
    "exported {files}",
    "exported {type} as original {files}",
    "cannot publish {name}: {error}",
    "published {path}",
    # UploadUrlsJob, UploadDirectoryJob (jobengine/kinds/uploading.py, upload_*.py, follow_on.py)
    "uploaded {source} as {path}",
    "replaced {path} with {source}",
    "skipped {path}: an asset of that name exists and overwrite is false",
    "cannot upload {source}: {reason}",
    "no files to upload in {folder}",
    "submitted follow-on job {kind} {handle}",
    "follow-on job {kind} not submitted: no files were processed",
    "follow-on job {kind} not submitted: {reason}",
    # RipPdfsJob, OptimizeImagesJob, ReprocessAssetsJob (jobengine/kinds/rip_pdfs.py...)
    "cannot rip {name}: {reason}",
    "{name} is managed only: pdfOptions/process is None",
    "ripped {name} into {pages} page(s)",
    "ripped {name} into {pages} page(s) and the eCatalog {catalog}",
    "skipped {name}: {type} assets are not optimized",
    "{name} is already optimized",
    "cannot optimize {name}: {reason}",
    "optimized {name}",
    "skipped {name}: {type} assets have nothing to reprocess",
    # upload crops (jobengine/assets/crops.py): uploads and ReprocessAssetsJob
    "{name} is not cropped: {reason}",
    # the publish kinds (jobengine/kinds/publish.py)
    "skipped {name}: its type or publish state changed since the job started",
    # AutomatedSetGenerationJob (jobengine/kinds/automated_set_generation.py)
    "no set preset matches {name}",
    "skipped {name}: {type} assets cannot be set members",
    "skipped {handle}: the asset no longer exists",
    "cannot run set preset {preset}: {reason}",
    "skipped set {name} of set preset {preset}: an earlier preset of the job makes it",
    "set {name} has no members left",
    "cannot make set {name}: {reason}",
    "made {type} {name} with {members} member(s)",
    "replaced {type} {name} with {members} member(s)",
]
LOG_MESSAGES: tuple[str, ...] = get_args(LogMessage)

# A run's progressMessage (getActiveJobs): stored in English, rendered at read time.
PROGRESS_MESSAGE: Final = "{done} of {total} file(s) processed"

# Every message of the catalogs that is not an e-mail text (those are marked in notify.py).
CATALOG_MESSAGES: tuple[str, ...] = (*LOG_MESSAGES, PROGRESS_MESSAGE)


def _languages(locale: str | None) -> tuple[str, ...]:
    """The gettext languages of a locale, most specific first: ``de-CH`` -> de_CH, de, en."""
    match = _LOCALE.fullmatch(locale or "")
    if not match:
        return (DEFAULT_LOCALE,)
    lang, region = match.group(1).lower(), match.group(2)
    wanted = (f"{lang}_{region.upper()}", lang) if region else (lang,)
    return (*wanted, DEFAULT_LOCALE) if lang != DEFAULT_LOCALE else (*wanted,)


@functools.lru_cache(maxsize=64)
def _catalog(languages: tuple[str, ...]) -> Callable[[str], str]:
    catalog = gettext.translation(DOMAIN, LOCALE_DIR, languages=list(languages), fallback=True)
    return catalog.gettext


def translator(locale: str | None) -> Callable[[str], str]:
    """``gettext`` for a locale (``de-CH`` -> de_CH, de, en; unknown, malformed or none -> en)."""
    return _catalog(_languages(locale))


@functools.cache
def languages() -> frozenset[str]:
    """The languages with a compiled catalog (``en``, ``de``, ``fr``, ``ja``...)."""
    return frozenset(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.mo"))


def fill(template: str, args: Mapping[str, str]) -> str | None:
    """``template`` with each ``{name}`` field replaced by ``args[name]``, or None when the
    template is anything but plain text and such fields (``{{`` and ``}}`` are literal braces).

    Nothing in ``args`` is ever interpreted, and nothing but ``args`` can be reached.
    """
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError:  # unbalanced braces
        return None
    out: list[str] = []
    for literal, field, spec, conversion in parts:
        out.append(literal)
        if field is None:
            continue
        if spec or conversion or field not in args:
            return None
        out.append(args[field])
    return "".join(out)


def message_args(args: Mapping[str, object]) -> dict[str, str]:
    """A log message's arguments as stored: strings, at most :data:`MAX_ARG_CHARS` each."""
    return {str(k): str(v)[:MAX_ARG_CHARS] for k, v in args.items()}


def english(message_id: str, args: Mapping[str, str]) -> str:
    """The English text of a log message (the id itself, filled); never raises."""
    text = fill(message_id, args)
    if text is None:  # a call site whose arguments miss a placeholder: keep everything
        return " ".join([message_id, *(f"{k}={v}" for k, v in args.items())])
    return text


def log_message(message: str, message_id: str | None, args: Any, locale: str | None) -> str:
    """A log row's ``logMessage`` in ``locale``: its stored English ``message`` when the row has
    no message id, the catalogs have no translation, or the translation cannot be filled."""
    if not message_id or not isinstance(args, dict):
        return message
    template = translator(locale)(message_id)
    if template == message_id:  # English, or not in the catalogs
        return message
    text = fill(template, {str(k): str(v) for k, v in args.items()})
    return message if text is None else text


def progress_message(done: int, total: int, locale: str | None = DEFAULT_LOCALE) -> str:
    """A planned run's progressMessage, ``done`` of its ``total`` items finished, in ``locale``."""
    args = {"done": str(done), "total": str(total)}
    text = fill(translator(locale)(PROGRESS_MESSAGE), args)
    return english(PROGRESS_MESSAGE, args) if text is None else text


def _accepted(accept_language: str) -> list[str]:
    """The language tags of an ``Accept-Language`` header, best first (q=0 and ``*`` left out)."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language[:1000].split(",")[:50]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        tag = tag.strip()
        if tag and tag != "*" and 0.0 < quality <= 1.0:
            ranked.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(ranked)]


def operation_locale(header_locale: str | None, accept_language: str | None) -> str | None:
    """The locale of one web service request: ``authHeader/locale`` when given, else the best
    language of ``Accept-Language`` that has a catalog (``de-CH`` counts for ``de``), else None
    (the job's locale, then the server default, apply)."""
    if header_locale and header_locale.strip():
        return header_locale.strip()
    available = languages()
    for tag in _accepted(accept_language or ""):
        match = _LOCALE.fullmatch(tag)
        if match and match.group(1).lower() in available:
            return tag
    return None
