"""The job kinds this server runs, as one table: submitJob element -> handler.

:data:`KINDS` is the only list of kinds. Everything else that names a kind is derived from it:
the Celery task modules (``tasks.<slug>``, :func:`task_modules`, read by ``config/celery.py``),
the task names (``jobengine.<slug>.start|item|finish``), the queue routing names of
``JOBENGINE_QUEUES`` and the element names; each handler declares its ``JobKind`` once.

A job type that is valid IPS but not in this table is refused at submit with NotSupported
(30001) naming the type; no task ever pretends to run it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from jobengine.errors import IpsFault, NotSupported
from jobengine.kinds.automated_set_generation import AutomatedSetGenerationKind
from jobengine.kinds.base import (
    Finished,
    ItemOutcome,
    JobKindHandler,
    PlannedItem,
    RunContext,
    SubmitReads,
)
from jobengine.kinds.export import ExportKind
from jobengine.kinds.follow_on import follow_on, within_follow_on
from jobengine.kinds.image_rendering_publish import ImageRenderingPublishKind
from jobengine.kinds.image_serving_publish import ImageServingPublishKind
from jobengine.kinds.optimize_images import OptimizeImagesKind
from jobengine.kinds.reprocess_assets import ReprocessAssetsKind
from jobengine.kinds.rip_pdfs import RipPdfsKind
from jobengine.kinds.server_directory_publish import ServerDirectoryPublishKind
from jobengine.kinds.upload_directory import UploadDirectoryKind
from jobengine.kinds.upload_urls import UploadUrlsKind
from jobengine.kinds.video_publish import VideoPublishKind

__all__ = [
    "KINDS",
    "Finished",
    "ItemOutcome",
    "JobKindHandler",
    "PlannedItem",
    "RunContext",
    "check_request",
    "kind_by_slug",
    "kind_for",
    "kind_slugs",
    "task_modules",
]

KINDS: dict[str, JobKindHandler[Any]] = {
    kind.element: kind
    for kind in (
        ExportKind(),
        ImageServingPublishKind(),
        RipPdfsKind(),
        OptimizeImagesKind(),
        ReprocessAssetsKind(),
        VideoPublishKind(),
        ServerDirectoryPublishKind(),
        UploadUrlsKind(),
        UploadDirectoryKind(),
        AutomatedSetGenerationKind(),
        ImageRenderingPublishKind(),
    )
}
_BY_SLUG = {kind.slug: kind for kind in KINDS.values()}


def kind_for(element: str) -> JobKindHandler[Any]:
    """The handler of a submitJob job-type element; NotSupported when this server lacks it."""
    try:
        return KINDS[element]
    except KeyError:
        type_name = element[:1].upper() + element[1:]
        raise NotSupported(
            f"{type_name} is not supported by this server yet "
            f"(supported: {', '.join(k[:1].upper() + k[1:] for k in KINDS)})",
            field=element,
        ) from None


def kind_by_slug(slug: str) -> JobKindHandler[Any]:
    """The handler whose tasks are named ``jobengine.<slug>.*``."""
    return _BY_SLUG[slug]


def kind_slugs() -> list[str]:
    """The task name part of every job kind (``export``: ``jobengine.export.*``)."""
    return list(_BY_SLUG)


def task_modules() -> list[str]:
    """The Celery task module of every job kind: ``jobengine.tasks.<slug>`` (the repository's
    ``tasks/<slug>.py``), one per kind."""
    return [f"jobengine.tasks.{slug}" for slug in _BY_SLUG]


def check_request(reads: SubmitReads, kind: JobKindHandler[Any], job: BaseModel) -> None:
    """Submit-time checks of a job: its kind's own, then those of its follow-on job's kind (a
    kind this server must run; its faults named from the follow-on field)."""
    kind.check(reads, job)
    found = follow_on(job)
    if found is None:
        return
    try:
        kind_for(found.element).check(reads, found.payload)
    except IpsFault as fault:
        raise within_follow_on(fault, kind.element, found) from None
