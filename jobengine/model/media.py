"""MediaOptions and the video encoding types it holds (IPS data types, XSD order)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from jobengine.model.base import Array, IpsModel, NonEmptyText, Text, XsdBool, XsdInt, XsdLong

__all__ = [
    "AvsEncoding",
    "MediaOptions",
    "Property",
    "ThumbnailOptions",
    "VideoEncoding",
    "VideoSmartCropAspectRatio",
]

Count = Annotated[XsdInt, Field(ge=0)]
Size = Annotated[XsdInt, Field(ge=1)]


class Property(IpsModel):
    """A name and value pair."""

    name: NonEmptyText
    value: Text


class VideoEncoding(IpsModel):
    """One video encoding to produce."""

    name: NonEmptyText
    file_suffix: Text
    playback_target: Text | None = None
    width: Size | None = None
    height: Size | None = None
    video_codec: Text | None = None
    video_bitrate: Count
    min_bitrate: Count | None = None
    max_bitrate: Count | None = None
    constant_bitrate: XsdBool | None = None
    frame_rate: Annotated[float, Field(gt=0.0)] | None = None
    keyframe_interval: Count | None = None
    h264_profile: Text | None = None
    h264_level: Text | None = None
    two_pass: XsdBool | None = None
    audio_codec: Text | None = None
    audio_bitrate: Count
    audio_sample_rate: Count | None = None
    advanced_settings: Array[Property] | None = None


class AvsEncoding(IpsModel):
    """An adaptive video set and the encodings in it."""

    name: NonEmptyText
    aspect_ratio: Text | None = None
    video_encoding_array: Array[VideoEncoding]


class VideoSmartCropAspectRatio(IpsModel):
    """An aspect ratio for video smart crop."""

    width: Size | None = None
    height: Size | None = None


class ThumbnailOptions(IpsModel):
    """Where the video thumbnail is taken, in milliseconds."""

    thumbnail_time: Annotated[XsdLong, Field(ge=0)] | None = None


class MediaOptions(IpsModel):
    """Video processing of uploaded media."""

    video_encoding_presets_array: Array[Text] | None = None
    video_encoding_array: Array[VideoEncoding] | None = None
    video_smart_crop_array: Array[VideoSmartCropAspectRatio] | None = None
    video_smart_crop_sample_rate: Count | None = None
    avs_encoding_array: Array[AvsEncoding] | None = None
    generate_thumbnail: XsdBool | None = None
    thumbnail_options: ThumbnailOptions | None = None
