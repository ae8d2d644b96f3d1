"""The upload, reprocess and rip job payloads (IPS data types, XSD order).

They share the option types of :mod:`jobengine.model.options` and two rules: at most one crop
option (manual, auto color, auto transparent) and at most one follow-on ``post*PublishJob``.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from jobengine.model.base import (
    Array,
    HttpUrlText,
    IpsModel,
    NonEmptyArray,
    NonEmptyText,
    Text,
    XsdBool,
    XsdInt,
    ips_error,
)
from jobengine.model.constants import EmailSetting
from jobengine.model.jobs import ImageRenderingPublishJob, ImageServingPublishJob, VideoPublishJob
from jobengine.model.media import MediaOptions
from jobengine.model.options import (
    AutoColorCropOptions,
    AutoSetCreationOptions,
    AutoSmartCropOptions,
    AutoTransparentCropOptions,
    ColorManagementOptions,
    CssOptions,
    IllustratorOptions,
    InDesignOptions,
    KnockoutBackgroundOptions,
    ManualCropOptions,
    MetadataOptions,
    PdfOptions,
    PhotoshopOptions,
    PostScriptOptions,
    UnCompressOptions,
    UnsharpMaskOptions,
    UploadUrl,
)

__all__ = [
    "ProcessingJob",
    "ReprocessAssetsJob",
    "RipPdfsJob",
    "UploadDirectoryJob",
    "UploadPostJob",
    "UploadUrlsJob",
]

_CROPS = ("manual_crop_options", "auto_color_crop_options", "auto_transparent_crop_options")
_POSTS = (
    "post_image_serving_publish_job",
    "post_image_rendering_publish_job",
    "post_video_publish_job",
)


class ProcessingJob(IpsModel):
    """Base of the jobs that process files: checks the one-crop and one-follow-on rules."""

    @model_validator(mode="after")
    def _at_most_one_crop_and_post_job(self) -> Self:
        fields = type(self).model_fields
        for group, what in ((_CROPS, "crop option"), (_POSTS, "post*PublishJob")):
            given = [fields[n].alias or n for n in group if getattr(self, n, None) is not None]
            if len(given) > 1:
                names = " and ".join(given)
                raise ips_error("invalid", f"give at most one {what}; got {names}", given[1])
        return self


class UploadDirectoryJob(ProcessingJob):
    """Uploads the files of a directory under the company's FTP root."""

    dest_folder: Text | None = None
    server_dir: NonEmptyText
    overwrite: XsdBool
    ready_for_publish: XsdBool
    preserve_publish_state: XsdBool | None = None
    synchronization_complete: XsdBool | None = None
    include_subfolders: XsdBool
    create_mask: XsdBool
    process_metadata_files: XsdBool
    preserve_crop: XsdBool | None = None
    knockout_background_options: KnockoutBackgroundOptions | None = None
    manual_crop_options: ManualCropOptions | None = None
    auto_color_crop_options: AutoColorCropOptions | None = None
    auto_transparent_crop_options: AutoTransparentCropOptions | None = None
    auto_smart_crop_options_array: Array[AutoSmartCropOptions] | None = None
    photoshop_options: PhotoshopOptions | None = None
    post_script_options: PostScriptOptions | None = None
    pdf_options: PdfOptions | None = None
    illustrator_options: IllustratorOptions | None = None
    css_options: CssOptions | None = None
    color_management_options: ColorManagementOptions | None = None
    auto_set_creation_options: AutoSetCreationOptions | None = None
    project_handle_array: Array[Text] | None = None
    email_setting: EmailSetting
    post_job_only_if_files: XsdBool | None = None
    post_http_url: HttpUrlText | None = None
    post_image_serving_publish_job: ImageServingPublishJob | None = None
    post_image_rendering_publish_job: ImageRenderingPublishJob | None = None
    post_video_publish_job: VideoPublishJob | None = None
    media_options: MediaOptions | None = None
    in_design_options: InDesignOptions | None = None
    xmp_keywords: Text | None = None
    unsharp_mask_options: UnsharpMaskOptions | None = None
    un_compress_options: UnCompressOptions | None = None
    exclude_master_video_from_avs: XsdBool | None = Field(
        default=None, alias="excludeMasterVideoFromAVS"
    )
    metadata_options: MetadataOptions | None = None
    jwt_token: Text | None = None
    ims_org: Text | None = None
    apikey: Text | None = None
    ignore_smart_crop_generation: XsdBool | None = None
    preserve_smart_crop: XsdBool | None = None


class UploadUrlsJob(ProcessingJob):
    """Uploads files fetched from http(s) URLs."""

    url_array: NonEmptyArray[UploadUrl]
    num_urls: Annotated[XsdInt, Field(ge=0)] | None = None
    overwrite: XsdBool
    ready_for_publish: XsdBool
    preserve_publish_state: XsdBool | None = None
    synchronization_complete: XsdBool | None = None
    create_mask: XsdBool
    preserve_crop: XsdBool | None = None
    knockout_background_options: KnockoutBackgroundOptions | None = None
    manual_crop_options: ManualCropOptions | None = None
    auto_color_crop_options: AutoColorCropOptions | None = None
    auto_transparent_crop_options: AutoTransparentCropOptions | None = None
    auto_smart_crop_options_array: Array[AutoSmartCropOptions] | None = None
    photoshop_options: PhotoshopOptions | None = None
    post_script_options: PostScriptOptions | None = None
    pdf_options: PdfOptions | None = None
    illustrator_options: IllustratorOptions | None = None
    css_options: CssOptions | None = None
    color_management_options: ColorManagementOptions | None = None
    auto_set_creation_options: AutoSetCreationOptions | None = None
    project_handle_array: Array[Text] | None = None
    email_setting: EmailSetting
    post_job_only_if_files: XsdBool | None = None
    post_http_url: HttpUrlText | None = None
    post_image_serving_publish_job: ImageServingPublishJob | None = None
    post_image_rendering_publish_job: ImageRenderingPublishJob | None = None
    post_video_publish_job: VideoPublishJob | None = None
    media_options: MediaOptions | None = None
    in_design_options: InDesignOptions | None = None
    xmp_keywords: Text | None = None
    unsharp_mask_options: UnsharpMaskOptions | None = None
    un_compress_options: UnCompressOptions | None = None
    exclude_master_video_from_avs: XsdBool | None = Field(
        default=None, alias="excludeMasterVideoFromAVS"
    )
    metadata_options: MetadataOptions | None = None
    jwt_token: Text | None = None
    ims_org: Text | None = None
    apikey: Text | None = None
    ignore_smart_crop_generation: XsdBool | None = None
    preserve_smart_crop: XsdBool | None = None


class UploadPostJob(ProcessingJob):
    """The upload options of the HTTP UploadFile servlet; not a submitJob job type."""

    overwrite: XsdBool
    ready_for_publish: XsdBool
    preserve_publish_state: XsdBool | None = None
    synchronization_complete: XsdBool | None = None
    create_mask: XsdBool
    preserve_crop: XsdBool | None = None
    knockout_background_options: KnockoutBackgroundOptions | None = None
    manual_crop_options: ManualCropOptions | None = None
    auto_color_crop_options: AutoColorCropOptions | None = None
    auto_transparent_crop_options: AutoTransparentCropOptions | None = None
    auto_smart_crop_options_array: Array[AutoSmartCropOptions] | None = None
    photoshop_options: PhotoshopOptions | None = None
    post_script_options: PostScriptOptions | None = None
    pdf_options: PdfOptions | None = None
    illustrator_options: IllustratorOptions | None = None
    css_options: CssOptions | None = None
    color_management_options: ColorManagementOptions | None = None
    auto_set_creation_options: AutoSetCreationOptions | None = None
    project_handle_array: Array[Text] | None = None
    email_setting: EmailSetting
    post_http_url: HttpUrlText | None = None
    media_options: MediaOptions | None = None
    in_design_options: InDesignOptions | None = None
    xmp_keywords: Text | None = None
    unsharp_mask_options: UnsharpMaskOptions | None = None
    un_compress_options: UnCompressOptions | None = None
    exclude_master_video_from_avs: XsdBool | None = Field(
        default=None, alias="excludeMasterVideoFromAVS"
    )
    metadata_options: MetadataOptions | None = None
    jwt_token: Text | None = None
    ims_org: Text | None = None
    apikey: Text | None = None
    ignore_smart_crop_generation: XsdBool | None = None
    preserve_smart_crop: XsdBool | None = None


class ReprocessAssetsJob(ProcessingJob):
    """Re-rips PDFs and re-optimizes images already uploaded."""

    asset_handle_array: NonEmptyArray[NonEmptyText]
    ready_for_publish: XsdBool | None = None
    synchronization_complete: XsdBool | None = None
    preserve_publish_state: XsdBool | None = None
    create_mask: XsdBool
    preserve_crop: XsdBool | None = None
    overwrite_avs: XsdBool | None = Field(default=None, alias="overwriteAVS")
    knockout_background_options: KnockoutBackgroundOptions | None = None
    manual_crop_options: ManualCropOptions | None = None
    auto_color_crop_options: AutoColorCropOptions | None = None
    auto_transparent_crop_options: AutoTransparentCropOptions | None = None
    auto_smart_crop_options_array: Array[AutoSmartCropOptions] | None = None
    photoshop_options: PhotoshopOptions | None = None
    post_script_options: PostScriptOptions | None = None
    pdf_options: PdfOptions | None = None
    media_options: MediaOptions | None = None
    illustrator_options: IllustratorOptions | None = None
    css_options: CssOptions | None = None
    color_management_options: ColorManagementOptions | None = None
    auto_set_creation_options: AutoSetCreationOptions | None = None
    project_handle_array: Array[Text] | None = None
    email_setting: EmailSetting
    post_job_only_if_files: XsdBool | None = None
    post_http_url: HttpUrlText | None = None
    post_image_serving_publish_job: ImageServingPublishJob | None = None
    post_image_rendering_publish_job: ImageRenderingPublishJob | None = None
    post_video_publish_job: VideoPublishJob | None = None
    in_design_options: InDesignOptions | None = None
    unsharp_mask_options: UnsharpMaskOptions | None = None
    exclude_master_video_from_avs: XsdBool | None = Field(
        default=None, alias="excludeMasterVideoFromAVS"
    )
    metadata_options: MetadataOptions | None = None
    jwt_token: Text | None = None
    ims_org: Text | None = None
    apikey: Text | None = None
    ignore_smart_crop_generation: XsdBool | None = None
    preserve_smart_crop: XsdBool | None = None


class RipPdfsJob(ProcessingJob):
    """Rips PDFs into pages (deprecated in IPS in favour of ReprocessAssetsJob)."""

    pdf_handle_array: NonEmptyArray[NonEmptyText]
    create_mask: XsdBool
    knockout_background_options: KnockoutBackgroundOptions | None = None
    manual_crop_options: ManualCropOptions | None = None
    auto_color_crop_options: AutoColorCropOptions | None = None
    auto_transparent_crop_options: AutoTransparentCropOptions | None = None
    auto_smart_crop_options_array: Array[AutoSmartCropOptions] | None = None
    post_script_options: PostScriptOptions | None = None
    pdf_options: PdfOptions | None = None
    illustrator_options: IllustratorOptions | None = None
    color_management_options: ColorManagementOptions | None = None
    project_handle_array: Array[Text] | None = None
    email_setting: EmailSetting
    post_http_url: HttpUrlText | None = None
    post_image_serving_publish_job: ImageServingPublishJob | None = None
    post_image_rendering_publish_job: ImageRenderingPublishJob | None = None
    post_video_publish_job: VideoPublishJob | None = None
    in_design_options: InDesignOptions | None = None
