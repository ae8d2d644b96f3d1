"""The options of the processing payloads (RipPdfsJob, ReprocessAssetsJob) that ask for work this
server does not do: refused at submit with NotSupported naming the field path
(``ripPdfsJob/manualCropOptions``).

Every field of a payload is classified: honoured by its kind (the kind names those), harmless
(a flag that asks for nothing here, :data:`IGNORED`), or refused when its value asks for work
(:data:`REFUSED`). A field in none of them is refused too (fail closed), so a field added to a
model later cannot slip through unnoticed.

UploadUrlsJob and UploadDirectoryJob use it too (their own fields are in the same tables);
:func:`unsupported_fields` lists every refused field of a payload.

``postHttpUrl`` is honoured by every payload that has it (:data:`CALLBACK`): the run's end calls
it (:mod:`jobengine.notices.callbacks`); :func:`refuse_unsupported` checks the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from pydantic import BaseModel

from jobengine.errors import NotSupported
from jobengine.net.callback_url import check_completion_url

__all__ = ["CALLBACK", "IGNORED", "REFUSED", "refuse_unsupported", "unsupported_fields"]


def _given(value: Any) -> bool:
    return value is not None


def _true(value: Any) -> bool:
    return value is True


def _rasterizes(value: Any) -> bool:
    """A process option other than ``None`` (absent means IPS's default: Rasterize)."""
    return value is not None and str(value.process or "Rasterize") != "None"


def _keeps_layers(value: Any) -> bool:
    """PhotoshopOptions asking for MaintainLayers or layer options (``None`` flattens)."""
    if value is None:
        return False
    return str(value.process or "None") != "None" or value.layer_options is not None


def _not_default(value: Any) -> bool:
    return value is not None and str(value.color_management) != "Default"


# UploadUrlsJob / UploadDirectoryJob fields (the other payloads do not have them)
def _crops(value: Any) -> bool:
    """ManualCropOptions cutting anything (0, 0, 0, 0 asks for nothing)."""
    return value is not None and any((value.left, value.right, value.top, value.bottom))


def _text(value: Any) -> bool:
    return value is not None and bool(str(value).strip())


def _uncompresses(value: Any) -> bool:
    return value is not None and str(value.process) != "None"


def _pdf_work(value: Any) -> bool:
    """PDFOptions asking for more than keeping the PDF (absent process means Rasterize)."""
    return _rasterizes(value) or bool(value.extract_search_words or value.extract_links)


# field -> (does this value ask for work?, what is not done)
REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "create_mask": (_true, "masks are not made"),
    "overwrite_avs": (_true, "adaptive video sets are not made"),
    "knockout_background_options": (_given, "backgrounds are not knocked out"),
    # Upload crops are honoured by UploadUrlsJob, UploadDirectoryJob and ReprocessAssetsJob
    # (jobengine/assets/crops.py); only RipPdfsJob, whose pages they would crop, still refuses them.
    "manual_crop_options": (_crops, "crops are not applied to ripped pages"),
    "auto_color_crop_options": (_given, "crops are not applied to ripped pages"),
    "auto_transparent_crop_options": (_given, "crops are not applied to ripped pages"),
    "auto_smart_crop_options_array": (_given, "smart crops are not made"),
    "photoshop_options": (_keeps_layers, "Photoshop layers are not kept"),
    "post_script_options": (_rasterizes, "PostScript/EPS files are not rasterized"),
    "illustrator_options": (_rasterizes, "Illustrator files are not rasterized"),
    "in_design_options": (_rasterizes, "InDesign files are not processed"),
    "color_management_options": (_not_default, "only Default color management is done"),
    "css_options": (_given, "CSS is not processed"),
    "auto_set_creation_options": (_given, "set-generation scripts are not run"),
    "media_options": (_given, "video is not encoded"),
    "project_handle_array": (_given, "projects are not kept"),
    "post_image_serving_publish_job": (_given, "follow-on publish jobs are not run here"),
    "post_image_rendering_publish_job": (_given, "follow-on publish jobs are not run here"),
    "post_video_publish_job": (_given, "follow-on publish jobs are not run here"),
    "unsharp_mask_options": (_given, "optimized images are not sharpened"),
    "metadata_options": (_given, "metadata is not updated"),
    "jwt_token": (_given, "Adobe I/O services are not called"),
    "ims_org": (_given, "Adobe I/O services are not called"),
    "apikey": (_given, "Adobe I/O services are not called"),
    # UploadUrlsJob / UploadDirectoryJob (RipPdfsJob and ReprocessAssetsJob honour pdfOptions)
    "pdf_options": (_pdf_work, "PDF files are stored as they are, not rasterized"),
    "process_metadata_files": (_true, "metadata files are not applied"),
    "xmp_keywords": (_text, "XMP keywords are not written"),
    "un_compress_options": (_uncompresses, "archives are not extracted"),
}

# The completion URL, called when a run ends (jobengine/notices/callbacks.py), whatever the kind.
CALLBACK = frozenset({"post_http_url"})

# Flags that ask for nothing this server would do differently (see docs/jobs.md).
IGNORED = frozenset(
    {
        "synchronization_complete",
        "preserve_publish_state",
        "post_job_only_if_files",
        "exclude_master_video_from_avs",
        "ignore_smart_crop_generation",
        "preserve_smart_crop",
    }
)


def unsupported_fields(
    element: str, job: BaseModel, honoured: Collection[str]
) -> list[tuple[str, str]]:
    """Every field of ``job`` (the ``element`` payload) that asks for work this server does not
    do, as (field path, reason), in XSD order; ``honoured`` names the fields the kind handles."""
    found: list[tuple[str, str]] = []
    for name, info in type(job).model_fields.items():
        value = getattr(job, name)
        if name in honoured or name in IGNORED or name in CALLBACK or value is None:
            continue
        path = f"{element}/{info.alias or name}"
        asks, why = REFUSED.get(name, (_given, "this field is not handled"))
        if asks(value):
            found.append((path, f"{path} is not supported by this server: {why}"))
    return found


def refuse_unsupported(element: str, job: BaseModel, honoured: Collection[str]) -> None:
    """NotSupported for the first field of ``job`` (the ``element`` payload) that asks for work
    this server does not do; ``honoured`` names the fields the kind itself handles. Then
    InvalidParameter for a ``postHttpUrl`` that could never be called."""
    for path, reason in unsupported_fields(element, job, honoured):
        raise NotSupported(reason, field=path)
    check_completion_url(element, job)
