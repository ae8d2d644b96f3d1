"""The shared option types of the upload, reprocess and rip jobs (IPS data types, XSD order)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from jobengine.model.base import (
    Array,
    HttpUrlText,
    IpsModel,
    NonEmptyText,
    Text,
    XsdBool,
    XsdDateTime,
    XsdInt,
    XsdLong,
)
from jobengine.model.constants import (
    ColorManagement,
    ColorSpace,
    Corner,
    FillMethod,
    LayerAnchor,
    LayerNaming,
    PdfProcess,
    PhotoshopProcess,
    RasterizeProcess,
    UnCompressProcess,
)

__all__ = [
    "AutoColorCropOptions",
    "AutoSetCreationOptions",
    "AutoSmartCropOptions",
    "AutoTransparentCropOptions",
    "ColorManagementOptions",
    "CssOptions",
    "IllustratorOptions",
    "InDesignOptions",
    "KnockoutBackgroundOptions",
    "ManualCropOptions",
    "MetadataOptions",
    "MetadataUpdate",
    "PdfOptions",
    "PhotoshopLayerOptions",
    "PhotoshopOptions",
    "PostScriptOptions",
    "UnCompressOptions",
    "UnsharpMaskOptions",
    "UploadUrl",
]

Tolerance = Annotated[float, Field(ge=0.0, le=1.0)]
Pixels = Annotated[XsdInt, Field(ge=0)]
Resolution = Annotated[float, Field(gt=0.0)]


class ManualCropOptions(IpsModel):
    """Pixels to cut from each edge."""

    left: Pixels
    right: Pixels
    top: Pixels
    bottom: Pixels


class AutoColorCropOptions(IpsModel):
    """Trims borders of the corner's color; tolerance 0 is an exact match, 1 the most lenient."""

    corner: Corner
    tolerance: Tolerance


class AutoTransparentCropOptions(IpsModel):
    """Trims transparent borders."""

    tolerance: Tolerance


class AutoSmartCropOptions(IpsModel):
    """One smart-crop rendition to generate (XSD only)."""

    name: NonEmptyText
    width: Annotated[XsdInt, Field(ge=1)]
    height: Annotated[XsdInt, Field(ge=1)]
    type: Text


class KnockoutBackgroundOptions(IpsModel):
    """Clears the background sampled at ``corner``."""

    corner: Corner
    tolerance: Tolerance | None = None
    fill_method: FillMethod


class PhotoshopLayerOptions(IpsModel):
    """How layers of a PSD kept with MaintainLayers become assets."""

    layer_naming: LayerNaming | None = None
    anchor: LayerAnchor | None = None
    create_template: XsdBool | None = None
    extract_text: XsdBool | None = None
    extend_layers: XsdBool | None = None


class PhotoshopOptions(IpsModel):
    """How PSD files are processed."""

    process: PhotoshopProcess | None = None
    layer_options: PhotoshopLayerOptions | None = None


class PostScriptOptions(IpsModel):
    """How EPS/PS (and AI without illustratorOptions) files are rasterized."""

    process: RasterizeProcess | None = None
    resolution: Resolution | None = None
    colorspace: ColorSpace | None = None
    alpha: XsdBool | None = None
    extract_search_words: XsdBool | None = None


class PdfOptions(IpsModel):
    """How PDF files are processed (IPS type PDFOptions)."""

    process: PdfProcess | None = None
    resolution: Resolution | None = None
    colorspace: ColorSpace | None = None
    pdf_catalog: XsdBool | None = None
    extract_search_words: XsdBool | None = None
    extract_links: XsdBool | None = None


class IllustratorOptions(IpsModel):
    """How Illustrator files are rasterized."""

    process: RasterizeProcess | None = None
    resolution: Resolution | None = None
    colorspace: ColorSpace | None = None
    alpha: XsdBool | None = None


class InDesignOptions(IpsModel):
    """How InDesign files are processed; IPS documents no process values."""

    process: Text | None = None


class CssOptions(IpsModel):
    """CSS processing (XSD only)."""

    force_static_images: XsdBool | None = None


class ColorManagementOptions(IpsModel):
    """Color management of the optimized images."""

    color_management: ColorManagement
    source_profile_handle: Text | None = None
    output_profile_handle: Text | None = None


class AutoSetCreationOptions(IpsModel):
    """PropertySet handles naming the set-generation scripts to run on every file."""

    auto_sets_array: Array[Text] | None = None


class UnsharpMaskOptions(IpsModel):
    """Sharpening of the optimized pyramid TIFF, as IS ``op_usm``."""

    amount: Annotated[float, Field(ge=0.0, le=5.0)] | None = None
    radius: Annotated[float, Field(ge=0.0, le=250.0)] | None = None
    threshold: Annotated[XsdInt, Field(ge=0, le=255)] | None = None
    monochrome: Annotated[XsdInt, Field(ge=0, le=1)] | None = None


class UnCompressOptions(IpsModel):
    """Whether an uploaded archive is kept as an asset or extracted."""

    process: UnCompressProcess


class MetadataUpdate(IpsModel):
    """One metadata field value to set on the uploaded assets."""

    field_handle: NonEmptyText
    value: Text | None = None
    bool_val: XsdBool | None = None
    long_val: XsdLong | None = None
    double_val: float | None = None
    date_val: XsdDateTime | None = None
    add_tag_value_array: Array[Text] | None = None
    set_tag_value_array: Array[Text] | None = None
    delete_tag_value_array: Array[Text] | None = None


class MetadataOptions(IpsModel):
    """Metadata applied to the uploaded assets (XSD only)."""

    update_array: Array[MetadataUpdate] | None = None


class UploadUrl(IpsModel):
    """One file of an UploadUrlsJob: where to fetch it and its IPS path and name."""

    source_url: HttpUrlText
    dest_path: NonEmptyText
