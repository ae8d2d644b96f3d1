"""The publish, export, optimize and set-generation job payloads (IPS data types, XSD order).

The upload, reprocess and rip payloads are in :mod:`jobengine.model.upload`.
"""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from jobengine.model.base import (
    HttpUrlText,
    IpsModel,
    NonEmptyArray,
    NonEmptyText,
    Text,
    XsdBool,
    ips_error,
    show,
)
from jobengine.model.constants import EmailSetting, ExportFormat, PublishType
from jobengine.model.options import AutoSetCreationOptions
from jobengine.model.presets import MACRO_NAME

__all__ = [
    "MAX_AUTO_SET_ASSETS",
    "AutomatedSetGenerationJob",
    "CreateVideoSitemapJob",
    "ExportJob",
    "ImageRenderingPublishJob",
    "ImageServingPublishJob",
    "MetadataPublishJob",
    "OptimizeImagesJob",
    "ServerDirectoryPublishJob",
    "VideoPublishJob",
]

MAX_AUTO_SET_ASSETS = 1000
_MACRO = re.compile(rf"\$(?:{MACRO_NAME})\$")


def _macro(value: str) -> str:
    if not _MACRO.fullmatch(value):
        raise ips_error(
            "invalid",
            f"must be an image preset name in dollar delimiters, like $test$; got {show(value)}",
        )
    return value


class ImageServingPublishJob(IpsModel):
    """Publishes the images marked for publish to Image Serving."""

    publish_type: PublishType
    email_setting: EmailSetting
    http_completion_url: HttpUrlText | None = None
    context_handle: Text | None = None


class ImageRenderingPublishJob(IpsModel):
    """Publishes to Image Rendering."""

    email_setting: EmailSetting
    http_completion_url: HttpUrlText | None = None
    context_handle: Text | None = None


class VideoPublishJob(IpsModel):
    """Publishes videos."""

    email_setting: EmailSetting
    http_completion_url: HttpUrlText | None = None
    context_handle: Text | None = None


class ServerDirectoryPublishJob(IpsModel):
    """Publishes the assets marked for publish into a server directory."""

    email_setting: EmailSetting
    http_completion_url: HttpUrlText | None = None


class MetadataPublishJob(IpsModel):
    """XSD-only, restricted: modelled so it parses; submitJob refuses it."""

    force_publish: XsdBool | None = None


class OptimizeImagesJob(IpsModel):
    """Optimizes the images not yet optimized ("Optimize Remaining Files")."""

    email_setting: EmailSetting


class CreateVideoSitemapJob(IpsModel):
    """XSD-only, restricted: modelled so it parses; submitJob refuses it."""

    force_update: XsdBool | None = None


class ExportJob(IpsModel):
    """Exports assets as originals (``orig``) or converted by Image Serving (``convert``)."""

    asset_handle_array: NonEmptyArray[NonEmptyText]
    fmt: ExportFormat
    is_modifier: Text | None = Field(default=None, alias="is_modifier")
    macro: Annotated[Text, AfterValidator(_macro)] | None = None
    email_setting: EmailSetting
    client_id: Text | None = None


class AutomatedSetGenerationJob(IpsModel):
    """Groups assets into sets by running set-generation scripts on each."""

    asset_handle_array: NonEmptyArray[NonEmptyText]
    dest_folder: Text | None = None
    ready_for_publish: XsdBool
    synchronization_complete: XsdBool | None = None
    auto_set_creation_options: AutoSetCreationOptions
    email_setting: EmailSetting

    @field_validator("asset_handle_array")
    @classmethod
    def _at_most_1000(cls, handles: tuple[str, ...]) -> tuple[str, ...]:
        if len(handles) > MAX_AUTO_SET_ASSETS:
            raise ips_error(
                "limit",
                f"holds {len(handles)} handles; at most {MAX_AUTO_SET_ASSETS} are allowed",
            )
        return handles

    @model_validator(mode="after")
    def _scripts_given(self) -> Self:
        scripts = self.auto_set_creation_options.auto_sets_array
        field = "autoSetCreationOptions/autoSetsArray"
        if scripts is None:
            raise ips_error("missing", "is required: the set-generation scripts to run", field)
        if not scripts:
            raise ips_error("invalid", "must hold at least one set-generation script", field)
        return self
