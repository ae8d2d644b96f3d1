"""The job kinds this server runs, as one table: submitJob element -> handler.

A job type that is valid IPS but not in this table is refused at submit with NotSupported
(30001) naming the type; no task ever pretends to run it.
"""

from __future__ import annotations

from jobengine.errors import NotSupported
from jobengine.kinds.automated_set_generation import AutomatedSetGenerationKind
from jobengine.kinds.base import ItemOutcome, JobKindHandler, PlannedItem, RunContext
from jobengine.kinds.export import ExportKind
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
    "ItemOutcome",
    "JobKindHandler",
    "PlannedItem",
    "RunContext",
    "kind_by_slug",
    "kind_for",
]

KINDS: dict[str, JobKindHandler] = {
    kind.element: kind
    for kind in (
        ExportKind(),
        ImageServingPublishKind(),
        # RipPdfsJob, OptimizeImagesJob and ReprocessAssetsJob
        RipPdfsKind(),
        OptimizeImagesKind(),
        ReprocessAssetsKind(),
        # VideoPublishJob and ServerDirectoryPublishJob
        VideoPublishKind(),
        ServerDirectoryPublishKind(),
        # UploadUrlsJob and UploadDirectoryJob
        UploadUrlsKind(),
        UploadDirectoryKind(),
        # AutomatedSetGenerationJob
        AutomatedSetGenerationKind(),
        # ImageRenderingPublishJob
        ImageRenderingPublishKind(),
    )
}
_BY_SLUG = {kind.slug: kind for kind in KINDS.values()}


def kind_for(element: str) -> JobKindHandler:
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


def kind_by_slug(slug: str) -> JobKindHandler:
    """The handler whose tasks are named ``jobengine.<slug>.*``."""
    return _BY_SLUG[slug]
