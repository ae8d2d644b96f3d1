"""The submitJob request model: the eleven payloads, every rule's fault, round trips, XSD order."""

from __future__ import annotations

import copy
import json
import operator
import sys
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import jobengine.model as model
from jobengine import errors
from jobengine.model import (
    Corner,
    EmailSetting,
    ExportFormat,
    ExportJob,
    JobKind,
    JobLogType,
    LayerAnchor,
    OptimizeImagesJob,
    PdfProcess,
    PublishType,
    SubmitJobRequest,
    parse_submit_job,
    parse_submit_jobs,
    to_ips_dict,
    to_ips_json,
)
from jobengine.model.request import CONTROLS

XSD_SEQUENCES: dict[str, str] = {
    "AutoColorCropOptions": "corner tolerance",
    "AutoSetCreationOptions": "autoSetsArray",
    "AutoSmartCropOptions": "name width height type",
    "AutoTransparentCropOptions": "tolerance",
    "AutomatedSetGenerationJob": (
        "assetHandleArray destFolder readyForPublish synchronizationComplete "
        "autoSetCreationOptions emailSetting"
    ),
    "AvsEncoding": "name aspectRatio videoEncodingArray",
    "ColorManagementOptions": "colorManagement sourceProfileHandle outputProfileHandle",
    "CreateVideoSitemapJob": "forceUpdate",
    "CssOptions": "forceStaticImages",
    "ExportJob": "assetHandleArray fmt is_modifier macro emailSetting clientId",
    "IllustratorOptions": "process resolution colorspace alpha",
    "ImageRenderingPublishJob": "emailSetting httpCompletionUrl contextHandle",
    "ImageServingPublishJob": "publishType emailSetting httpCompletionUrl contextHandle",
    "InDesignOptions": "process",
    "KnockoutBackgroundOptions": "corner tolerance fillMethod",
    "ManualCropOptions": "left right top bottom",
    "MediaOptions": (
        "videoEncodingPresetsArray videoEncodingArray videoSmartCropArray "
        "videoSmartCropSampleRate avsEncodingArray generateThumbnail thumbnailOptions"
    ),
    "MetadataOptions": "updateArray",
    "MetadataPublishJob": "forcePublish",
    "MetadataUpdate": (
        "fieldHandle value boolVal longVal doubleVal dateVal addTagValueArray "
        "setTagValueArray deleteTagValueArray"
    ),
    "OptimizeImagesJob": "emailSetting",
    "PdfOptions": "process resolution colorspace pdfCatalog extractSearchWords extractLinks",
    "PhotoshopLayerOptions": "layerNaming anchor createTemplate extractText extendLayers",
    "PhotoshopOptions": "process layerOptions",
    "PostScriptOptions": "process resolution colorspace alpha extractSearchWords",
    "Property": "name value",
    "ReprocessAssetsJob": (
        "assetHandleArray readyForPublish synchronizationComplete preservePublishState "
        "createMask preserveCrop overwriteAVS knockoutBackgroundOptions "
        "manualCropOptions autoColorCropOptions autoTransparentCropOptions "
        "autoSmartCropOptionsArray photoshopOptions postScriptOptions pdfOptions "
        "mediaOptions illustratorOptions cssOptions colorManagementOptions "
        "autoSetCreationOptions projectHandleArray emailSetting postJobOnlyIfFiles "
        "postHttpUrl postImageServingPublishJob postImageRenderingPublishJob "
        "postVideoPublishJob inDesignOptions unsharpMaskOptions "
        "excludeMasterVideoFromAVS metadataOptions jwtToken imsOrg apikey "
        "ignoreSmartCropGeneration preserveSmartCrop"
    ),
    "RipPdfsJob": (
        "pdfHandleArray createMask knockoutBackgroundOptions manualCropOptions "
        "autoColorCropOptions autoTransparentCropOptions autoSmartCropOptionsArray "
        "postScriptOptions pdfOptions illustratorOptions colorManagementOptions "
        "projectHandleArray emailSetting postHttpUrl postImageServingPublishJob "
        "postImageRenderingPublishJob postVideoPublishJob inDesignOptions"
    ),
    "ServerDirectoryPublishJob": "emailSetting httpCompletionUrl",
    "SubmitJobRequest": (
        "companyHandle userHandle jobName locale execTime execSchedule description "
        "imageServingPublishJob imageRenderingPublishJob videoPublishJob "
        "serverDirectoryPublishJob metadataPublishJob uploadDirectoryJob uploadUrlsJob "
        "optimizeImagesJob ripPdfsJob reprocessAssetsJob createVideoSitemapJob exportJob "
        "automatedSetGenerationJob"
    ),
    "SubmitJobReturn": "jobHandle",
    "ThumbnailOptions": "thumbnailTime",
    "UnCompressOptions": "process",
    "UnsharpMaskOptions": "amount radius threshold monochrome",
    "UploadDirectoryJob": (
        "destFolder serverDir overwrite readyForPublish preservePublishState "
        "synchronizationComplete includeSubfolders createMask processMetadataFiles "
        "preserveCrop knockoutBackgroundOptions manualCropOptions autoColorCropOptions "
        "autoTransparentCropOptions autoSmartCropOptionsArray photoshopOptions "
        "postScriptOptions pdfOptions illustratorOptions cssOptions "
        "colorManagementOptions autoSetCreationOptions projectHandleArray emailSetting "
        "postJobOnlyIfFiles postHttpUrl postImageServingPublishJob "
        "postImageRenderingPublishJob postVideoPublishJob mediaOptions inDesignOptions "
        "xmpKeywords unsharpMaskOptions unCompressOptions excludeMasterVideoFromAVS "
        "metadataOptions jwtToken imsOrg apikey ignoreSmartCropGeneration "
        "preserveSmartCrop"
    ),
    "UploadPostJob": (
        "overwrite readyForPublish preservePublishState synchronizationComplete "
        "createMask preserveCrop knockoutBackgroundOptions manualCropOptions "
        "autoColorCropOptions autoTransparentCropOptions autoSmartCropOptionsArray "
        "photoshopOptions postScriptOptions pdfOptions illustratorOptions cssOptions "
        "colorManagementOptions autoSetCreationOptions projectHandleArray emailSetting "
        "postHttpUrl mediaOptions inDesignOptions xmpKeywords unsharpMaskOptions "
        "unCompressOptions excludeMasterVideoFromAVS metadataOptions jwtToken imsOrg "
        "apikey ignoreSmartCropGeneration preserveSmartCrop"
    ),
    "UploadUrl": "sourceUrl destPath",
    "UploadUrlsJob": (
        "urlArray numUrls overwrite readyForPublish preservePublishState "
        "synchronizationComplete createMask preserveCrop knockoutBackgroundOptions "
        "manualCropOptions autoColorCropOptions autoTransparentCropOptions "
        "autoSmartCropOptionsArray photoshopOptions postScriptOptions pdfOptions "
        "illustratorOptions cssOptions colorManagementOptions autoSetCreationOptions "
        "projectHandleArray emailSetting postJobOnlyIfFiles postHttpUrl "
        "postImageServingPublishJob postImageRenderingPublishJob postVideoPublishJob "
        "mediaOptions inDesignOptions xmpKeywords unsharpMaskOptions unCompressOptions "
        "excludeMasterVideoFromAVS metadataOptions jwtToken imsOrg apikey "
        "ignoreSmartCropGeneration preserveSmartCrop"
    ),
    "VideoEncoding": (
        "name fileSuffix playbackTarget width height videoCodec videoBitrate minBitrate "
        "maxBitrate constantBitrate frameRate keyframeInterval h264Profile h264Level "
        "twoPass audioCodec audioBitrate audioSampleRate advancedSettings"
    ),
    "VideoPublishJob": "emailSetting httpCompletionUrl contextHandle",
    "VideoSmartCropAspectRatio": "width height",
}

# One realistic payload per job type, with IPS names, and what it must parse to.
PAYLOADS: dict[JobKind, tuple[dict[str, Any], dict[str, Any]]] = {
    JobKind.IMAGE_SERVING_PUBLISH: (
        {
            "publishType": "FullWithSearch",
            "emailSetting": "ErrorAndWarning",
            "httpCompletionUrl": "https://hooks.example.com/published?company=47",
            "contextHandle": "ctx|47|live",
        },
        {"publish_type": PublishType.FULL_WITH_SEARCH, "context_handle": "ctx|47|live"},
    ),
    JobKind.IMAGE_RENDERING_PUBLISH: (
        {"emailSetting": "All", "contextHandle": "ctx|47|ir"},
        {"email_setting": EmailSetting.ALL, "http_completion_url": None},
    ),
    JobKind.VIDEO_PUBLISH: (
        {"emailSetting": "JobCompletion", "httpCompletionUrl": "http://example.com/video-done"},
        {"http_completion_url": "http://example.com/video-done"},
    ),
    JobKind.SERVER_DIRECTORY_PUBLISH: ({"emailSetting": "None"}, {"email_setting": "None"}),
    JobKind.UPLOAD_DIRECTORY: (
        {
            "destFolder": "47/catalog/spring/",
            "serverDir": "incoming/spring",
            "overwrite": True,
            "readyForPublish": "true",
            "includeSubfolders": "1",
            "createMask": False,
            "processMetadataFiles": "0",
            "knockoutBackgroundOptions": {
                "corner": "UpperLeft",
                "tolerance": 0.05,
                "fillMethod": "FloodFill",
            },
            "photoshopOptions": {
                "process": "MaintainLayers",
                "layerOptions": {
                    "layerNaming": "AppendName",
                    "anchor": "Center",
                    "createTemplate": "true",
                    "extractText": False,
                },
            },
            "pdfOptions": {
                "process": "Rasterize",
                "resolution": 150,
                "colorspace": "Rgb",
                "pdfCatalog": True,
                "extractSearchWords": False,
            },
            "colorManagementOptions": {"colorManagement": "Convert", "outputProfileHandle": "p|1"},
            "emailSetting": "Error",
            "postJobOnlyIfFiles": True,
            "postImageServingPublishJob": {"publishType": "Incremental", "emailSetting": "Error"},
            "xmpKeywords": r"spring,sale\,2030",
            "unsharpMaskOptions": {"amount": 1.5, "radius": 2, "threshold": 6, "monochrome": 0},
            "unCompressOptions": {"process": "UnCompress"},
        },
        {
            "include_subfolders": True,
            "process_metadata_files": False,
            "photoshop_options.layer_options.anchor": LayerAnchor.CENTER,
            "pdf_options.resolution": 150.0,
            "post_image_serving_publish_job.publish_type": PublishType.INCREMENTAL,
            "unsharp_mask_options.threshold": 6,
        },
    ),
    JobKind.UPLOAD_URLS: (
        {
            "urlArray": {
                "items": [
                    {"sourceUrl": "https://cdn.example.com/a/shoe.jpg", "destPath": "47/shoe.jpg"},
                    {"sourceUrl": "http://cdn.example.com/b/bag.tif", "destPath": "47/bag.tif"},
                ]
            },
            "numUrls": 2,
            "overwrite": "false",
            "readyForPublish": True,
            "createMask": "0",
            "autoColorCropOptions": {"corner": "BottomRight", "tolerance": 0.1},
            "mediaOptions": {
                "videoEncodingPresetsArray": ["vp|1", "vp|2"],
                "generateThumbnail": True,
                "thumbnailOptions": {"thumbnailTime": 1500},
            },
            "metadataOptions": {
                "updateArray": {"items": [{"fieldHandle": "f|47|1", "value": "Spring"}]}
            },
            "emailSetting": "All",
        },
        {
            "url_array.__len__": 2,
            "auto_color_crop_options.corner": Corner.BOTTOM_RIGHT,
            "media_options.thumbnail_options.thumbnail_time": 1500,
            "metadata_options.update_array.__len__": 1,
        },
    ),
    JobKind.OPTIMIZE_IMAGES: ({"emailSetting": "Error"}, {"email_setting": EmailSetting.ERROR}),
    JobKind.RIP_PDFS: (
        {
            "pdfHandleArray": {"items": ["a|47|1|101", "a|47|1|102"]},
            "createMask": False,
            "manualCropOptions": {"left": 10, "right": 10, "top": 0, "bottom": 5},
            "pdfOptions": {"process": "Thumbnail", "extractLinks": True},
            "emailSetting": "ErrorAndWarning",
            "postHttpUrl": "https://hooks.example.com/ripped",
        },
        {
            "pdf_handle_array": ("a|47|1|101", "a|47|1|102"),
            "manual_crop_options.bottom": 5,
            "pdf_options.process": PdfProcess.THUMBNAIL,
        },
    ),
    JobKind.REPROCESS_ASSETS: (
        {
            "assetHandleArray": ["a|47|1|201"],
            "readyForPublish": True,
            "preservePublishState": True,
            "createMask": True,
            "preserveCrop": False,
            "overwriteAVS": True,
            "autoSmartCropOptionsArray": [
                {"name": "square", "width": 500, "height": 500, "type": "Image"}
            ],
            "illustratorOptions": {
                "process": "Rasterize",
                "resolution": 300,
                "colorspace": "Cmyk",
                "alpha": True,
            },
            "emailSetting": "All",
            "postVideoPublishJob": {"emailSetting": "Error"},
        },
        {
            "overwrite_avs": True,
            "auto_smart_crop_options_array.__len__": 1,
            "post_video_publish_job.email_setting": EmailSetting.ERROR,
        },
    ),
    JobKind.EXPORT: (
        {
            "assetHandleArray": {"items": ["a|47|1|1", "a|47|1|2"]},
            "fmt": "convert",
            "is_modifier": "&fmt=png",
            "macro": "$test$",
            "emailSetting": "None",
            "clientId": "203.0.113.9",
        },
        {"fmt": ExportFormat.CONVERT, "is_modifier": "&fmt=png", "macro": "$test$"},
    ),
    JobKind.AUTOMATED_SET_GENERATION: (
        {
            "assetHandleArray": [f"a|47|1|{n}" for n in range(1, 1001)],
            "destFolder": "47/sets/",
            "readyForPublish": False,
            "autoSetCreationOptions": {"autoSetsArray": {"items": ["ps|47|swatch-script"]}},
            "emailSetting": "JobCompletion",
        },
        {
            "asset_handle_array.__len__": 1000,
            "auto_set_creation_options.auto_sets_array": ("ps|47|swatch-script",),
        },
    ),
}


def request(kind: JobKind = JobKind.EXPORT, **top: Any) -> dict[str, Any]:
    """A valid submitJob dict of ``kind``, with ``top`` merged in."""
    return {
        "companyHandle": "47",
        "jobName": "My Test Job",
        kind.element: copy.deepcopy(PAYLOADS[kind][0]),
        **top,
    }


def check(job: BaseModel, expected: dict[str, Any]) -> None:
    for path, want in expected.items():
        attr, _, call = path.partition(".__")
        value = operator.attrgetter(attr)(job)
        assert (len(value) if call else value) == want, path


@pytest.mark.parametrize("kind", list(JobKind), ids=str)
def test_every_job_type_parses_from_a_dict(kind: JobKind) -> None:
    req = parse_submit_job(request(kind, locale="en-US", description="nightly"))
    assert req.kind is kind
    assert type(req.job).__name__ == kind.value
    assert req.company_handle == "47" and req.job_name == "My Test Job"
    check(req.job, PAYLOADS[kind][1])


@pytest.mark.parametrize("kind", list(JobKind), ids=str)
def test_to_ips_dict_round_trips(kind: JobKind) -> None:
    at = datetime(2030, 5, 1, 8, 30, tzinfo=timezone(timedelta(hours=-7)))
    req = parse_submit_job(request(kind, execTime=at.isoformat(), userHandle="u|9"))
    data = to_ips_dict(req)
    assert data[kind.element] is not None and data["execTime"] == "2030-05-01T08:30:00-07:00"
    assert parse_submit_job(data) == req
    assert parse_submit_job(req) == req


@pytest.mark.parametrize("kind", list(JobKind), ids=str)
def test_to_ips_json_is_to_ips_dict_as_json(kind: JobKind) -> None:
    """What a bulk submission stores as a job's payload: the same data as to_ips_dict."""
    at = datetime(2030, 5, 1, 8, 30, 0, 250000, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    req = parse_submit_job(
        request(kind, execTime=at.isoformat(), description="Ünïcode \"q\" 'x' \u2028 ✓")
    )
    text = to_ips_json(req)
    assert json.loads(text) == to_ips_dict(req)
    assert parse_submit_job(json.loads(text)) == req


def test_parse_submit_jobs_is_parse_submit_job_of_each_plain_dict() -> None:
    dicts = [request(kind, description=f"n{n}") for n, kind in enumerate(JobKind)]
    dicts.append({"submitJobParam": request(JobKind.EXPORT)})
    parsed = parse_submit_jobs(dicts)
    assert parsed == [parse_submit_job(one) for one in dicts]
    assert parsed is not None and [r.kind for r in parsed] == [*JobKind, JobKind.EXPORT]
    assert parse_submit_jobs([*dicts, {**dicts[0], "jobName": ""}]) is None  # one invalid
    model_in = parse_submit_job(dicts[0])
    assert parse_submit_jobs([dicts[0], model_in]) is None  # not all dicts: one by one


def test_to_ips_dict_uses_ips_names_items_and_omits_none() -> None:
    data = to_ips_dict(parse_submit_job(request(JobKind.UPLOAD_URLS)))
    job = data["uploadUrlsJob"]
    assert job["urlArray"]["items"][0] == {
        "sourceUrl": "https://cdn.example.com/a/shoe.jpg",
        "destPath": "47/shoe.jpg",
    }
    assert job["overwrite"] is False and job["readyForPublish"] is True
    assert "userHandle" not in data and "preserveCrop" not in job
    assert job["mediaOptions"]["videoEncodingPresetsArray"] == {"items": ["vp|1", "vp|2"]}


def test_python_names_and_plain_lists_are_accepted() -> None:
    req = parse_submit_job(
        {
            "company_handle": 47,
            "job_name": "Export",
            "export_job": {"asset_handle_array": ["a|1"], "fmt": "orig", "email_setting": "All"},
        }
    )
    assert req.company_handle == "47"
    assert req.job == ExportJob(asset_handle_array=("a|1",), fmt="orig", email_setting="All")


def test_a_submit_job_param_wrapper_is_unwrapped() -> None:
    assert parse_submit_job({"submitJobParam": request()}) == parse_submit_job(request())


def test_the_seed_example_as_a_dict() -> None:
    req = parse_submit_job(
        {
            "companyHandle": "47",
            "jobName": "My Test Job",
            "imageServingPublishJob": {"publishType": "Full", "emailSetting": "Error"},
        }
    )
    assert req.kind is JobKind.IMAGE_SERVING_PUBLISH
    assert req.job.publish_type is PublishType.FULL  # type: ignore[union-attr]
    assert req.job.email_setting is EmailSetting.ERROR
    assert req.exec_time is None and req.exec_schedule is None


def test_a_model_is_validated_again() -> None:
    sneaky = SubmitJobRequest.model_construct(
        company_handle="47",
        job_name="a|b",
        optimize_images_job=OptimizeImagesJob(email_setting=EmailSetting.NONE),
    )
    with pytest.raises(errors.InvalidParameter, match=r"jobName must not contain '\|'"):
        parse_submit_job(sneaky)


def test_models_are_frozen() -> None:
    req = parse_submit_job(request())
    with pytest.raises(ValidationError):
        req.job_name = "other"  # type: ignore[misc]
    assert hash(req) == hash(parse_submit_job(request()))


def test_export_job_fields() -> None:
    job = parse_submit_job(request()).job
    assert isinstance(job, ExportJob)
    assert job.asset_handle_array == ("a|47|1|1", "a|47|1|2")
    assert (job.fmt, job.is_modifier, job.macro) == ("convert", "&fmt=png", "$test$")
    assert job.client_id == "203.0.113.9"
    assert to_ips_dict(job)["is_modifier"] == "&fmt=png"
    orig = parse_submit_job(
        request(exportJob={"assetHandleArray": ["a|1"], "fmt": "orig", "emailSetting": "None"})
    )
    assert orig.job == ExportJob(
        asset_handle_array=("a|1",), fmt=ExportFormat.ORIG, email_setting="None"
    )
    assert orig.job.is_modifier is None and orig.job.macro is None  # type: ignore[union-attr]


def test_exec_time_keeps_its_offset_and_exec_schedule_is_trimmed() -> None:
    req = parse_submit_job(request(execTime="2030-01-01T12:00:00Z"))
    assert req.exec_time == datetime(2030, 1, 1, 12, tzinfo=UTC)
    req = parse_submit_job(request(execSchedule="  0 15 10 ? * 6L "))
    assert req.exec_schedule == "0 15 10 ? * 6L"
    assert parse_submit_job(request(execSchedule=" ")).exec_schedule is None


@pytest.mark.parametrize("locale", ["en", "en-US", "fr-CA", "ja"])
def test_good_locales(locale: str) -> None:
    assert parse_submit_job(request(locale=locale)).locale == locale


def test_job_names_at_the_limits() -> None:
    assert parse_submit_job(request(jobName="x" * 255)).job_name == "x" * 255
    assert parse_submit_job(request(jobName="Spring sale: 2030/03 (all) é")).job_name.endswith("é")


def with_job(kind: JobKind, *drop: str, **changes: Any) -> dict[str, Any]:
    """A request of ``kind`` whose payload lacks ``drop`` and has ``changes`` (IPS names)."""
    data = request(kind)
    for name in drop:
        del data[kind.element][name]
    data[kind.element].update(changes)
    return data


EXPORT = {"assetHandleArray": ["a|1"], "fmt": "orig", "emailSetting": "None"}
OPTIMIZE = {"emailSetting": "None"}
PUBLISH = {"publishType": "Full", "emailSetting": "None"}
URL = {"sourceUrl": "https://example.com/a.jpg", "destPath": "47/a.jpg"}

RULES: list[tuple[str, dict[str, Any], type[errors.IpsFault], str, str | None]] = [
    # required elements -> 30002
    (
        "no company",
        {"jobName": "j", "exportJob": EXPORT},
        errors.MissingParameter,
        "submitJobParam/companyHandle is required",
        "companyHandle",
    ),
    (
        "no job name",
        {"companyHandle": "47", "exportJob": EXPORT},
        errors.MissingParameter,
        "submitJobParam/jobName is required",
        "jobName",
    ),
    (
        "no fmt",
        with_job(JobKind.EXPORT, "fmt"),
        errors.MissingParameter,
        "submitJobParam/exportJob/fmt is required",
        "exportJob/fmt",
    ),
    (
        "no email setting",
        with_job(JobKind.OPTIMIZE_IMAGES, "emailSetting"),
        errors.MissingParameter,
        "optimizeImagesJob/emailSetting is required",
        "optimizeImagesJob/emailSetting",
    ),
    (
        "no serverDir",
        with_job(JobKind.UPLOAD_DIRECTORY, "serverDir"),
        errors.MissingParameter,
        "uploadDirectoryJob/serverDir is required",
        "uploadDirectoryJob/serverDir",
    ),
    (
        "no urlArray",
        with_job(JobKind.UPLOAD_URLS, "urlArray"),
        errors.MissingParameter,
        "uploadUrlsJob/urlArray is required",
        "uploadUrlsJob/urlArray",
    ),
    (
        "no destPath",
        with_job(JobKind.UPLOAD_URLS, urlArray=[{"sourceUrl": "http://a/b"}]),
        errors.MissingParameter,
        "urlArray/items[1]/destPath is required",
        "uploadUrlsJob/urlArray/items[1]/destPath",
    ),
    (
        "no createMask",
        with_job(JobKind.REPROCESS_ASSETS, "createMask"),
        errors.MissingParameter,
        "reprocessAssetsJob/createMask is required",
        "reprocessAssetsJob/createMask",
    ),
    (
        "no pdf handles",
        with_job(JobKind.RIP_PDFS, "pdfHandleArray"),
        errors.MissingParameter,
        "ripPdfsJob/pdfHandleArray is required",
        "ripPdfsJob/pdfHandleArray",
    ),
    (
        "no autoSetCreationOptions",
        with_job(JobKind.AUTOMATED_SET_GENERATION, "autoSetCreationOptions"),
        errors.MissingParameter,
        "automatedSetGenerationJob/autoSetCreationOptions is required",
        "automatedSetGenerationJob/autoSetCreationOptions",
    ),
    (
        "no set scripts",
        with_job(JobKind.AUTOMATED_SET_GENERATION, autoSetCreationOptions={}),
        errors.MissingParameter,
        "autoSetCreationOptions/autoSetsArray is required",
        "automatedSetGenerationJob/autoSetCreationOptions/autoSetsArray",
    ),
    (
        "no job type",
        {"companyHandle": "47", "jobName": "j"},
        errors.MissingParameter,
        "imageServingPublishJob, imageRenderingPublishJob, videoPublishJob, "
        "serverDirectoryPublishJob, uploadDirectoryJob, uploadUrlsJob, optimizeImagesJob, "
        "ripPdfsJob, reprocessAssetsJob, exportJob, automatedSetGenerationJob",
        None,
    ),
    # the request's own rules -> 30001
    (
        "two job types",
        request(optimizeImagesJob=OPTIMIZE),
        errors.InvalidParameter,
        "got optimizeImagesJob and exportJob",
        "exportJob",
    ),
    (
        "three job types",
        request(optimizeImagesJob=OPTIMIZE, imageServingPublishJob=PUBLISH),
        errors.InvalidParameter,
        "got imageServingPublishJob and optimizeImagesJob and exportJob",
        "optimizeImagesJob",
    ),
    (
        "time and schedule",
        request(execTime="2030-01-01T00:00:00Z", execSchedule="0 0 12 * * ?"),
        errors.InvalidParameter,
        "give at most one of execTime and execSchedule",
        "execSchedule",
    ),
    (
        "naive execTime",
        request(execTime="2030-01-01T00:00:00"),
        errors.InvalidParameter,
        "has no timezone",
        "execTime",
    ),
    (
        "date-only execTime",
        request(execTime="2030-01-01"),
        errors.InvalidParameter,
        "has no timezone",
        "execTime",
    ),
    (
        "numeric execTime",
        request(execTime=1893456000),
        errors.InvalidParameter,
        "must be an xsd:dateTime string; got 1893456000",
        "execTime",
    ),
    (
        "garbage execTime",
        request(execTime="next tuesday"),
        errors.InvalidParameter,
        "submitJobParam/execTime: input should be a valid datetime",
        "execTime",
    ),
    (
        "bad cron",
        request(execSchedule="0 0 12 * * *"),
        errors.InvalidParameter,
        "'0 0 12 * * *' is not a valid Quartz cron expression: ",
        "execSchedule",
    ),
    (
        "five-field cron",
        request(execSchedule="0 12 * * ?"),
        errors.InvalidParameter,
        "is not a valid Quartz cron expression",
        "execSchedule",
    ),
    (
        "empty job name",
        request(jobName=""),
        errors.InvalidParameter,
        "jobName must not be empty",
        "jobName",
    ),
    (
        "blank job name",
        request(jobName="   "),
        errors.InvalidParameter,
        "jobName must not be empty",
        "jobName",
    ),
    (
        "long job name",
        request(jobName="x" * 256),
        errors.InvalidParameter,
        "jobName is 256 characters long; at most 255",
        "jobName",
    ),
    (
        "pipe in job name",
        request(jobName="a|b"),
        errors.InvalidParameter,
        "must not contain '|'",
        "jobName",
    ),
    (
        "tab in job name",
        request(jobName="a\tb"),
        errors.InvalidParameter,
        "must not contain control characters",
        "jobName",
    ),
    (
        "C1 control in job name",
        request(jobName="a\x85b"),
        errors.InvalidParameter,
        "must not contain control characters",
        "jobName",
    ),
    (
        "NUL in description",
        request(description="a\x00b"),
        errors.InvalidParameter,
        "description holds '\\x00', a character XML cannot carry",
        "description",
    ),
    (
        "empty company",
        request(companyHandle=""),
        errors.InvalidParameter,
        "companyHandle must not be empty",
        "companyHandle",
    ),
    (
        "locale with underscore",
        request(locale="en_US"),
        errors.InvalidParameter,
        "locale must be ll or ll-CC",
        "locale",
    ),
    (
        "locale upper language",
        request(locale="EN-us"),
        errors.InvalidParameter,
        "got 'EN-us'",
        "locale",
    ),
    ("locale three letters", request(locale="eng"), errors.InvalidParameter, "got 'eng'", "locale"),
    (
        "restricted metadataPublishJob",
        {"companyHandle": "47", "jobName": "j", "metadataPublishJob": {"forcePublish": "true"}},
        errors.NotSupported,
        "metadataPublishJob is a restricted IPS job type",
        "metadataPublishJob",
    ),
    (
        "restricted createVideoSitemapJob",
        {"companyHandle": "47", "jobName": "j", "createVideoSitemapJob": {}},
        errors.NotSupported,
        "createVideoSitemapJob is a restricted",
        "createVideoSitemapJob",
    ),
    # unknown elements, enums and types -> 30001
    (
        "unknown top element",
        request(priority=5),
        errors.InvalidParameter,
        "submitJobParam/priority is not a known element",
        "priority",
    ),
    (
        "unknown payload element",
        with_job(JobKind.EXPORT, format="png"),
        errors.InvalidParameter,
        "submitJobParam/exportJob/format is not a known element",
        "exportJob/format",
    ),
    (
        "bad fmt",
        with_job(JobKind.EXPORT, fmt="zip"),
        errors.InvalidParameter,
        "exportJob/fmt must be one of 'orig', 'convert'; got 'zip'",
        "exportJob/fmt",
    ),
    (
        "fmt is case-sensitive",
        with_job(JobKind.EXPORT, fmt="ORIG"),
        errors.InvalidParameter,
        "got 'ORIG'",
        "exportJob/fmt",
    ),
    (
        "bad email setting",
        with_job(JobKind.OPTIMIZE_IMAGES, emailSetting="none"),
        errors.InvalidParameter,
        "must be one of 'All', 'Error', 'ErrorAndWarning', 'JobCompletion', 'None'; got 'none'",
        "optimizeImagesJob/emailSetting",
    ),
    (
        "bad publish type",
        with_job(JobKind.IMAGE_SERVING_PUBLISH, publishType="full"),
        errors.InvalidParameter,
        "'Full', 'FullWithSearch', 'Incremental'; got 'full'",
        "imageServingPublishJob/publishType",
    ),
    (
        "bad boolean",
        with_job(JobKind.REPROCESS_ASSETS, createMask="yes"),
        errors.InvalidParameter,
        "createMask must be an xsd:boolean (true, false, 1 or 0); got 'yes'",
        "reprocessAssetsJob/createMask",
    ),
    (
        "bad int",
        with_job(JobKind.UPLOAD_URLS, numUrls="two"),
        errors.InvalidParameter,
        "uploadUrlsJob/numUrls: input should be a valid integer",
        "uploadUrlsJob/numUrls",
    ),
    (
        "payload of the wrong type",
        request(exportJob="all of them"),
        errors.InvalidParameter,
        "submitJobParam/exportJob: input should be a valid dictionary",
        "exportJob",
    ),
    (
        "array of the wrong shape",
        with_job(JobKind.EXPORT, assetHandleArray={"item": ["a"]}),
        errors.InvalidParameter,
        "an array holds only 'items'; got item",
        "exportJob/assetHandleArray",
    ),
    (
        "array of a string",
        with_job(JobKind.EXPORT, assetHandleArray="a|1"),
        errors.InvalidParameter,
        "input should be a valid tuple",
        "exportJob/assetHandleArray",
    ),
    # payload rules
    (
        "empty handle array",
        with_job(JobKind.EXPORT, assetHandleArray={"items": []}),
        errors.InvalidParameter,
        "exportJob/assetHandleArray must hold at least one item",
        "exportJob/assetHandleArray",
    ),
    (
        "empty handle",
        with_job(JobKind.REPROCESS_ASSETS, assetHandleArray=["a|1", ""]),
        errors.InvalidParameter,
        "assetHandleArray/items[2] must not be empty",
        "reprocessAssetsJob/assetHandleArray/items[2]",
    ),
    (
        "empty pdf handles",
        with_job(JobKind.RIP_PDFS, pdfHandleArray=[]),
        errors.InvalidParameter,
        "must hold at least one item",
        "ripPdfsJob/pdfHandleArray",
    ),
    (
        "empty urlArray",
        with_job(JobKind.UPLOAD_URLS, urlArray={"items": None}),
        errors.InvalidParameter,
        "must hold at least one item",
        "uploadUrlsJob/urlArray",
    ),
    (
        "empty set scripts",
        with_job(JobKind.AUTOMATED_SET_GENERATION, autoSetCreationOptions={"autoSetsArray": []}),
        errors.InvalidParameter,
        "must hold at least one set-generation script",
        "automatedSetGenerationJob/autoSetCreationOptions/autoSetsArray",
    ),
    (
        "two crop options",
        with_job(
            JobKind.UPLOAD_DIRECTORY,
            manualCropOptions={"left": 1, "right": 1, "top": 1, "bottom": 1},
            autoTransparentCropOptions={"tolerance": 0.2},
        ),
        errors.InvalidParameter,
        "give at most one crop option; got manualCropOptions and autoTransparentCropOptions",
        "uploadDirectoryJob/autoTransparentCropOptions",
    ),
    (
        "two crop options in a rip",
        with_job(JobKind.RIP_PDFS, autoColorCropOptions={"corner": "UpperLeft", "tolerance": 0}),
        errors.InvalidParameter,
        "got manualCropOptions and autoColorCropOptions",
        "ripPdfsJob/autoColorCropOptions",
    ),
    (
        "two post jobs",
        with_job(JobKind.UPLOAD_DIRECTORY, postVideoPublishJob={"emailSetting": "None"}),
        errors.InvalidParameter,
        "give at most one post*PublishJob; got postImageServingPublishJob and postVideoPublishJob",
        "uploadDirectoryJob/postVideoPublishJob",
    ),
    (
        "two post jobs in a reprocess",
        with_job(JobKind.REPROCESS_ASSETS, postImageRenderingPublishJob={"emailSetting": "None"}),
        errors.InvalidParameter,
        "post*PublishJob",
        "reprocessAssetsJob/postVideoPublishJob",
    ),
    (
        "tolerance above 1",
        with_job(
            JobKind.UPLOAD_URLS, autoColorCropOptions={"corner": "UpperLeft", "tolerance": 1.01}
        ),
        errors.InvalidParameter,
        "tolerance: input should be less than or equal to 1; got 1.01",
        "uploadUrlsJob/autoColorCropOptions/tolerance",
    ),
    (
        "tolerance below 0",
        with_job(JobKind.REPROCESS_ASSETS, autoTransparentCropOptions={"tolerance": -0.1}),
        errors.InvalidParameter,
        "greater than or equal to 0",
        "reprocessAssetsJob/autoTransparentCropOptions/tolerance",
    ),
    (
        "knockout tolerance",
        with_job(
            JobKind.UPLOAD_DIRECTORY,
            knockoutBackgroundOptions={
                "corner": "UpperLeft",
                "tolerance": 2,
                "fillMethod": "MatchPixel",
            },
        ),
        errors.InvalidParameter,
        "less than or equal to 1",
        "uploadDirectoryJob/knockoutBackgroundOptions/tolerance",
    ),
    (
        "NaN tolerance",
        with_job(JobKind.REPROCESS_ASSETS, autoTransparentCropOptions={"tolerance": "NaN"}),
        errors.InvalidParameter,
        "finite number",
        "reprocessAssetsJob/autoTransparentCropOptions/tolerance",
    ),
    (
        "bad corner",
        with_job(JobKind.UPLOAD_URLS, autoColorCropOptions={"corner": "TopLeft", "tolerance": 0.5}),
        errors.InvalidParameter,
        "'UpperLeft', 'UpperRight', 'BottomLeft', 'BottomRight'",
        "uploadUrlsJob/autoColorCropOptions/corner",
    ),
    (
        "negative crop",
        with_job(
            JobKind.RIP_PDFS, manualCropOptions={"left": -1, "right": 0, "top": 0, "bottom": 0}
        ),
        errors.InvalidParameter,
        "greater than or equal to 0",
        "ripPdfsJob/manualCropOptions/left",
    ),
    (
        "usm amount",
        with_job(JobKind.UPLOAD_DIRECTORY, unsharpMaskOptions={"amount": 5.5}),
        errors.InvalidParameter,
        "less than or equal to 5",
        "uploadDirectoryJob/unsharpMaskOptions/amount",
    ),
    (
        "usm radius",
        with_job(JobKind.UPLOAD_DIRECTORY, unsharpMaskOptions={"radius": 251}),
        errors.InvalidParameter,
        "less than or equal to 250",
        "uploadDirectoryJob/unsharpMaskOptions/radius",
    ),
    (
        "usm threshold",
        with_job(JobKind.UPLOAD_DIRECTORY, unsharpMaskOptions={"threshold": 256}),
        errors.InvalidParameter,
        "less than or equal to 255",
        "uploadDirectoryJob/unsharpMaskOptions/threshold",
    ),
    (
        "usm monochrome",
        with_job(JobKind.UPLOAD_DIRECTORY, unsharpMaskOptions={"monochrome": 2}),
        errors.InvalidParameter,
        "less than or equal to 1",
        "uploadDirectoryJob/unsharpMaskOptions/monochrome",
    ),
    (
        "pdf resolution",
        with_job(JobKind.RIP_PDFS, pdfOptions={"resolution": 0}),
        errors.InvalidParameter,
        "greater than 0",
        "ripPdfsJob/pdfOptions/resolution",
    ),
    (
        "too many set assets",
        with_job(
            JobKind.AUTOMATED_SET_GENERATION, assetHandleArray=[f"a|{n}" for n in range(1001)]
        ),
        errors.LimitExceeded,
        "assetHandleArray holds 1001 handles; at most 1000 are allowed",
        "automatedSetGenerationJob/assetHandleArray",
    ),
    (
        "ftp source url",
        with_job(JobKind.UPLOAD_URLS, urlArray=[URL, {**URL, "sourceUrl": "ftp://x/a.jpg"}]),
        errors.InvalidParameter,
        "urlArray/items[2]/sourceUrl must be an absolute http or https URL; got 'ftp://x/a.jpg'",
        "uploadUrlsJob/urlArray/items[2]/sourceUrl",
    ),
    (
        "relative source url",
        with_job(JobKind.UPLOAD_URLS, urlArray=[{**URL, "sourceUrl": "/a.jpg"}]),
        errors.InvalidParameter,
        "must be an absolute http or https URL",
        "uploadUrlsJob/urlArray/items[1]/sourceUrl",
    ),
    (
        "file source url",
        with_job(JobKind.UPLOAD_URLS, urlArray=[{**URL, "sourceUrl": "file:///etc/passwd"}]),
        errors.InvalidParameter,
        "got 'file:///etc/passwd'",
        "uploadUrlsJob/urlArray/items[1]/sourceUrl",
    ),
    (
        "hostless source url",
        with_job(JobKind.UPLOAD_URLS, urlArray=[{**URL, "sourceUrl": "http:///a.jpg"}]),
        errors.InvalidParameter,
        "absolute http or https URL",
        "uploadUrlsJob/urlArray/items[1]/sourceUrl",
    ),
    (
        "bad completion url",
        with_job(JobKind.IMAGE_SERVING_PUBLISH, httpCompletionUrl="javascript:x"),
        errors.InvalidParameter,
        "absolute http or https URL",
        "imageServingPublishJob/httpCompletionUrl",
    ),
    (
        "macro without dollars",
        with_job(JobKind.EXPORT, macro="test"),
        errors.InvalidParameter,
        "macro must be an image preset name in dollar delimiters, like $test$; got 'test'",
        "exportJob/macro",
    ),
    (
        "bad photoshop anchor",
        with_job(JobKind.UPLOAD_DIRECTORY, photoshopOptions={"layerOptions": {"anchor": "Middle"}}),
        errors.InvalidParameter,
        "got 'Middle'",
        "uploadDirectoryJob/photoshopOptions/layerOptions/anchor",
    ),
]


@pytest.mark.parametrize(
    ("data", "fault", "text", "field"), [pytest.param(*case[1:], id=case[0]) for case in RULES]
)
def test_rules(
    data: dict[str, Any], fault: type[errors.IpsFault], text: str, field: str | None
) -> None:
    with pytest.raises(errors.IpsFault) as caught:
        parse_submit_job(data)
    assert type(caught.value) is fault
    assert caught.value.code == (30002 if fault is errors.MissingParameter else 30001)
    assert text in caught.value.reason
    assert caught.value.field == field


def test_the_offending_value_is_cut_to_100_characters() -> None:
    with pytest.raises(errors.InvalidParameter) as caught:
        parse_submit_job(with_job(JobKind.UPLOAD_URLS, numUrls="9" * 50 + "x" * 5000))
    reason = caught.value.reason
    assert reason.startswith("submitJobParam/uploadUrlsJob/numUrls: ")
    got = reason.split("; got ", 1)[1]
    assert len(got) == 100 and got.endswith("...")


def test_bad_cron_reason_carries_the_cron_module_reason() -> None:
    from jobengine.cron import CronError, validate

    with pytest.raises(CronError) as cron:
        validate("0 0 12 * * *")
    with pytest.raises(errors.InvalidParameter) as caught:
        parse_submit_job(request(execSchedule="0 0 12 * * *"))
    assert cron.value.reason in caught.value.reason
    assert "day-of-week" in caught.value.reason.lower()


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(errors.InvalidParameter, match="must be a mapping or IPS XML; got int"):
        parse_submit_job(42)  # type: ignore[arg-type]


def test_fault_to_dict_carries_code_reason_and_field() -> None:
    with pytest.raises(errors.MissingParameter) as caught:
        parse_submit_job(with_job(JobKind.EXPORT, "fmt"))
    assert caught.value.to_dict() == {
        "fault": "ipsApiFault",
        "code": 30002,
        "reason": "submitJobParam/exportJob/fmt is required",
        "field": "exportJob/fmt",
    }


@pytest.mark.parametrize("name", sorted(XSD_SEQUENCES))
def test_fields_follow_the_xsd_sequence(name: str) -> None:
    cls = getattr(model, name)
    aliases = [info.alias for info in cls.model_fields.values()]
    assert aliases == XSD_SEQUENCES[name].split()


def test_job_kinds_name_their_elements_in_xsd_order() -> None:
    assert [k.element for k in JobKind] == [
        e
        for e in XSD_SEQUENCES["SubmitJobRequest"].split()[7:]
        if e not in ("metadataPublishJob", "createVideoSitemapJob")
    ]
    assert JobKind.EXPORT.element == "exportJob" and JobKind.EXPORT.attribute == "export_job"
    assert JobKind.from_element("ripPdfsJob") is JobKind.RIP_PDFS
    fields = SubmitJobRequest.model_fields
    assert all(fields[k.attribute].alias == k.element for k in JobKind)
    assert all(model.JOB_MODELS[k].__name__ == k.value for k in JobKind)


def test_constants_keep_the_ips_spellings() -> None:
    assert EmailSetting("ErrorAndWarning") is EmailSetting.ERROR_AND_WARNING
    assert [str(v) for v in ExportFormat] == ["orig", "convert"]
    typos = {
        "FleEnd",
        "VideoPubilshSuccess",
        "endReoptimize",
        "ImageRenderingPublishCleanupsuccess",
    }
    assert typos <= {t.value for t in JobLogType}
    assert len(JobLogType) == 100 and len(model.JobLogFileType) == 31
    with pytest.raises(ValueError):
        EmailSetting("error")


def test_public_names_are_exported() -> None:
    assert set(model.__all__) <= set(dir(model))
    for name in ("SubmitJobRequest", "parse_submit_job", "to_ips_dict", "JobKind", "UploadUrl"):
        assert name in model.__all__


# Found by fuzzing the JSON API (tests/web/test_jsonapi_fuzz.py): each was a 500, not a fault.


@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00+01:00",  # before datetime.min in UTC: OverflowError in the store
        "0001-01-01T00:00:00Z",  # in range in UTC, but not in a zone west of it
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T12:00:00Z",
    ],
)
def test_datetimes_every_zone_cannot_hold_are_a_30001_fault(when: str) -> None:
    with pytest.raises(errors.InvalidParameter) as caught:
        parse_submit_job(request(execTime=when))
    assert "is out of range" in caught.value.reason
    assert caught.value.field == "execTime"
    assert parse_submit_job(request(execTime="0001-01-02T00:00:00Z")).exec_time is not None
    assert parse_submit_job(request(execTime="9999-12-30T23:59:59Z")).exec_time is not None


def test_a_schedule_longer_than_the_store_keeps_is_a_30001_fault() -> None:
    long = "0 0 0 " + ",".join(["1"] * 200) + " * ?"  # a valid expression, 409 characters
    with pytest.raises(errors.InvalidParameter, match="409 characters long; at most 255"):
        parse_submit_job(request(execSchedule=long))


def test_a_lone_surrogate_key_in_an_array_is_a_fault_that_renders() -> None:
    body = request(exportJob={"assetHandleArray": {"\ud800": 1}, "fmt": "orig",
                              "emailSetting": "None"})  # fmt: skip
    with pytest.raises(errors.InvalidParameter) as caught:
        parse_submit_job(body)
    assert "an array holds only 'items'; got '\\ud800'" in caught.value.reason
    caught.value.reason.encode()  # the JSON API sends it as UTF-8


def test_the_job_name_control_pattern_is_unicodes_control_category() -> None:
    """The job name check's pattern matches exactly the characters of category Cc."""
    wrong = [
        hex(i)
        for i in range(sys.maxunicode + 1)
        if (unicodedata.category(chr(i)) == "Cc") != (CONTROLS.match(chr(i)) is not None)
    ]
    assert wrong == []
