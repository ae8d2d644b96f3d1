"""IPS XML: the seed example, all eleven job types, hostile documents, and round trips."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobengine import errors
from jobengine.model import (
    AutomatedSetGenerationJob,
    ColorSpace,
    Corner,
    EmailSetting,
    ExportFormat,
    ExportJob,
    FillMethod,
    IpsModel,
    JobKind,
    LayerNaming,
    PdfProcess,
    PhotoshopProcess,
    PublishType,
    RasterizeProcess,
    ReprocessAssetsJob,
    RipPdfsJob,
    SortDirection,
    SubmitJobRequest,
    SubmitJobReturn,
    UnCompressProcess,
    UploadDirectoryJob,
    UploadUrlsJob,
    parse_submit_job,
    to_ips_dict,
)
from jobengine.model.base import Array, XsdDateTime
from jobengine.model.ipsxml import (
    IPS_NAMESPACE,
    MAX_DOCUMENT_BYTES,
    is_ips_namespace,
    parse_document,
    parse_element,
    parse_submit_job_xml,
    read_xml,
    to_xml,
)

SEED = """<submitJobParam xmlns="http://www.scene7.com/IpsApi/xsd">
   <companyHandle>47</companyHandle>
   <jobName>My Test Job</jobName>
   <imageServingPublishJob>
      <publishType>Full</publishType>
      <emailSetting>Error</emailSetting>
   </imageServingPublishJob>
</submitJobParam>"""

DATED = "http://www.scene7.com/IpsApi/xsd/2014-04-03"


def document(job: str, namespace: str = IPS_NAMESPACE, head: str = "") -> str:
    """A submitJobParam document for company 47 holding ``job`` (and ``head`` elements)."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<submitJobParam xmlns="{namespace}">'
        f"<companyHandle>47</companyHandle><jobName>Spring</jobName>{head}{job}</submitJobParam>"
    )


JOBS: dict[JobKind, str] = {
    JobKind.IMAGE_SERVING_PUBLISH: """<imageServingPublishJob>
        <publishType>Incremental</publishType><emailSetting>All</emailSetting>
        <httpCompletionUrl>https://hooks.example.com/is?x=1&amp;y=2</httpCompletionUrl>
        <contextHandle>ctx|47|live</contextHandle></imageServingPublishJob>""",
    JobKind.IMAGE_RENDERING_PUBLISH: """<imageRenderingPublishJob>
        <emailSetting>Error</emailSetting></imageRenderingPublishJob>""",
    JobKind.VIDEO_PUBLISH: """<videoPublishJob><emailSetting>None</emailSetting>
        <contextHandle>ctx|47|video</contextHandle></videoPublishJob>""",
    JobKind.SERVER_DIRECTORY_PUBLISH: """<serverDirectoryPublishJob>
        <emailSetting>JobCompletion</emailSetting>
        <httpCompletionUrl>http://example.com/sd</httpCompletionUrl>
        </serverDirectoryPublishJob>""",
    JobKind.UPLOAD_DIRECTORY: """<uploadDirectoryJob>
        <destFolder>47/spring/</destFolder>
        <serverDir>incoming/spring</serverDir>
        <overwrite>true</overwrite>
        <readyForPublish>1</readyForPublish>
        <includeSubfolders>false</includeSubfolders>
        <createMask>0</createMask>
        <processMetadataFiles>true</processMetadataFiles>
        <knockoutBackgroundOptions>
          <corner>BottomLeft</corner><tolerance>0.25</tolerance><fillMethod>MatchPixel</fillMethod>
        </knockoutBackgroundOptions>
        <photoshopOptions>
          <process>MaintainLayers</process>
          <layerOptions>
            <layerNaming>Folders</layerNaming><anchor>Northwest</anchor>
            <createTemplate>true</createTemplate><extractText>true</extractText>
            <extendLayers>false</extendLayers>
          </layerOptions>
        </photoshopOptions>
        <pdfOptions>
          <process>Rasterize</process><resolution>150.5</resolution><colorspace>Cmyk</colorspace>
          <pdfCatalog>false</pdfCatalog><extractSearchWords>true</extractSearchWords>
          <extractLinks>1</extractLinks>
        </pdfOptions>
        <emailSetting>ErrorAndWarning</emailSetting>
        <postImageServingPublishJob>
          <publishType>Full</publishType><emailSetting>None</emailSetting>
        </postImageServingPublishJob>
        <unCompressOptions><process>UnCompress</process></unCompressOptions>
        </uploadDirectoryJob>""",
    JobKind.UPLOAD_URLS: """<uploadUrlsJob>
        <urlArray>
          <items><sourceUrl>https://cdn.example.com/a/shoe.jpg</sourceUrl>
                 <destPath>47/shoes/shoe.jpg</destPath></items>
          <items><sourceUrl>http://cdn.example.com/b/bag.tif?v=2&amp;s=1</sourceUrl>
                 <destPath>47/bags/bag.tif</destPath></items>
        </urlArray>
        <numUrls>2</numUrls>
        <overwrite>false</overwrite><readyForPublish>true</readyForPublish>
        <createMask>false</createMask>
        <autoTransparentCropOptions><tolerance>0.3</tolerance></autoTransparentCropOptions>
        <projectHandleArray><items>pr|47|1</items></projectHandleArray>
        <emailSetting>All</emailSetting>
        <postJobOnlyIfFiles>true</postJobOnlyIfFiles>
        <postImageRenderingPublishJob><emailSetting>Error</emailSetting></postImageRenderingPublishJob>
        <mediaOptions>
          <avsEncodingArray><items>
            <name>AVS</name><aspectRatio>16:9</aspectRatio>
            <videoEncodingArray><items>
              <name>720p</name><fileSuffix>_720</fileSuffix><width>1280</width>
              <videoBitrate>2500</videoBitrate><frameRate>29.97</frameRate>
              <audioBitrate>128</audioBitrate>
              <advancedSettings><items><name>preset</name><value>slow</value></items>
              </advancedSettings>
            </items></videoEncodingArray>
          </items></avsEncodingArray>
          <generateThumbnail>true</generateThumbnail>
        </mediaOptions>
        <xmpKeywords>shoes,bags</xmpKeywords>
        </uploadUrlsJob>""",
    JobKind.OPTIMIZE_IMAGES: (
        "<optimizeImagesJob><emailSetting>Error</emailSetting></optimizeImagesJob>"
    ),
    JobKind.RIP_PDFS: """<ripPdfsJob>
        <pdfHandleArray><items>a|47|1|301</items><items>a|47|1|302</items></pdfHandleArray>
        <createMask>false</createMask>
        <autoColorCropOptions><corner>UpperRight</corner><tolerance>0</tolerance></autoColorCropOptions>
        <postScriptOptions><process>Rasterize</process><resolution>72</resolution>
          <colorspace>Gray</colorspace><alpha>true</alpha></postScriptOptions>
        <pdfOptions><process>None</process></pdfOptions>
        <emailSetting>All</emailSetting>
        <postHttpUrl>https://hooks.example.com/ripped</postHttpUrl>
        </ripPdfsJob>""",
    JobKind.REPROCESS_ASSETS: """<reprocessAssetsJob>
        <assetHandleArray><items>a|47|1|201</items><items>a|47|1|202</items></assetHandleArray>
        <readyForPublish>true</readyForPublish>
        <createMask>true</createMask>
        <preserveCrop>true</preserveCrop>
        <overwriteAVS>false</overwriteAVS>
        <manualCropOptions><left>4</left><right>4</right><top>0</top><bottom>12</bottom>
        </manualCropOptions>
        <autoSmartCropOptionsArray>
          <items><name>square</name><width>600</width><height>600</height><type>Image</type></items>
          <items><name>banner</name><width>1200</width><height>300</height><type>Image</type></items>
        </autoSmartCropOptionsArray>
        <illustratorOptions><process>None</process></illustratorOptions>
        <colorManagementOptions><colorManagement>MaintainOriginal</colorManagement>
        </colorManagementOptions>
        <emailSetting>Error</emailSetting>
        <unsharpMaskOptions><amount>0.8</amount><radius>1.2</radius><threshold>6</threshold>
          <monochrome>1</monochrome></unsharpMaskOptions>
        <excludeMasterVideoFromAVS>true</excludeMasterVideoFromAVS>
        </reprocessAssetsJob>""",
    JobKind.EXPORT: """<exportJob>
        <assetHandleArray><items>a|47|1|1</items><items>a|47|1|2</items></assetHandleArray>
        <fmt>convert</fmt>
        <is_modifier>&amp;fmt=png</is_modifier>
        <macro>$test$</macro>
        <emailSetting>None</emailSetting>
        </exportJob>""",
    JobKind.AUTOMATED_SET_GENERATION: """<automatedSetGenerationJob>
        <assetHandleArray><items>a|47|1|11</items><items>a|47|1|12</items></assetHandleArray>
        <destFolder>47/sets/</destFolder>
        <readyForPublish>true</readyForPublish>
        <synchronizationComplete>false</synchronizationComplete>
        <autoSetCreationOptions>
          <autoSetsArray><items>ps|47|swatches</items><items>ps|47|views</items></autoSetsArray>
        </autoSetCreationOptions>
        <emailSetting>ErrorAndWarning</emailSetting>
        </automatedSetGenerationJob>""",
}


@pytest.mark.parametrize("namespace", [IPS_NAMESPACE, DATED, f"{IPS_NAMESPACE}/2021-04-26-beta"])
def test_the_seed_example_parses(namespace: str) -> None:
    req, used = parse_document(
        SEED.replace(IPS_NAMESPACE, namespace), root="submitJobParam", model=SubmitJobRequest
    )
    assert used == namespace
    assert (req.company_handle, req.job_name) == ("47", "My Test Job")
    assert req.kind is JobKind.IMAGE_SERVING_PUBLISH
    assert req.job.publish_type is PublishType.FULL  # type: ignore[union-attr]
    assert req.job.email_setting is EmailSetting.ERROR
    assert req.user_handle is None and req.exec_time is None and req.exec_schedule is None


def test_the_seed_parses_through_parse_submit_job_as_str_and_bytes() -> None:
    assert parse_submit_job(SEED) == parse_submit_job(SEED.encode()) == parse_submit_job_xml(SEED)


@pytest.mark.parametrize("kind", list(JobKind), ids=str)
def test_every_job_type_parses_from_xml(kind: JobKind) -> None:
    head = "<locale>de-DE</locale><execTime>2030-03-01T06:00:00+01:00</execTime>"
    req = parse_submit_job_xml(document(JOBS[kind], DATED, head))
    assert req.kind is kind and type(req.job).__name__ == kind.value
    assert req.locale == "de-DE"
    assert req.exec_time == datetime(2030, 3, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize("kind", list(JobKind), ids=str)
def test_every_job_type_round_trips_through_xml_and_dict(kind: JobKind) -> None:
    req = parse_submit_job_xml(document(JOBS[kind]))
    assert parse_submit_job_xml(to_xml(req, root="submitJobParam")) == req
    assert parse_submit_job_xml(to_xml(req, root="submitJobParam", namespace=DATED)) == req
    assert parse_submit_job(to_ips_dict(req)) == req


def test_upload_urls_job_details() -> None:
    job = parse_submit_job_xml(document(JOBS[JobKind.UPLOAD_URLS])).job
    assert isinstance(job, UploadUrlsJob)
    assert [(u.source_url, u.dest_path) for u in job.url_array] == [
        ("https://cdn.example.com/a/shoe.jpg", "47/shoes/shoe.jpg"),
        ("http://cdn.example.com/b/bag.tif?v=2&s=1", "47/bags/bag.tif"),
    ]
    assert (job.num_urls, job.overwrite, job.ready_for_publish) == (2, False, True)
    assert job.auto_transparent_crop_options is not None
    assert job.auto_transparent_crop_options.tolerance == 0.3
    assert job.project_handle_array == ("pr|47|1",)
    assert job.post_image_rendering_publish_job is not None
    assert job.media_options is not None and job.media_options.avs_encoding_array is not None
    encoding = job.media_options.avs_encoding_array[0].video_encoding_array[0]
    assert (encoding.name, encoding.width, encoding.frame_rate) == ("720p", 1280, 29.97)
    assert encoding.advanced_settings is not None
    assert encoding.advanced_settings[0].value == "slow"


def test_upload_directory_job_details() -> None:
    job = parse_submit_job_xml(document(JOBS[JobKind.UPLOAD_DIRECTORY])).job
    assert isinstance(job, UploadDirectoryJob)
    assert (job.dest_folder, job.server_dir) == ("47/spring/", "incoming/spring")
    flags = (job.overwrite, job.ready_for_publish, job.include_subfolders, job.create_mask)
    assert flags == (True, True, False, False) and job.process_metadata_files is True
    ko = job.knockout_background_options
    assert ko is not None
    assert (ko.corner, ko.tolerance, ko.fill_method) == (
        Corner.BOTTOM_LEFT,
        0.25,
        FillMethod.MATCH_PIXEL,
    )
    ps = job.photoshop_options
    assert ps is not None and ps.process is PhotoshopProcess.MAINTAIN_LAYERS
    assert ps.layer_options is not None and ps.layer_options.layer_naming is LayerNaming.FOLDERS
    assert ps.layer_options.extend_layers is False
    pdf = job.pdf_options
    assert pdf is not None
    assert (pdf.process, pdf.resolution, pdf.colorspace) == (
        PdfProcess.RASTERIZE,
        150.5,
        ColorSpace.CMYK,
    )
    assert (pdf.pdf_catalog, pdf.extract_search_words, pdf.extract_links) == (False, True, True)
    assert job.un_compress_options is not None
    assert job.un_compress_options.process is UnCompressProcess.UN_COMPRESS


def test_reprocess_and_rip_details() -> None:
    job = parse_submit_job_xml(document(JOBS[JobKind.REPROCESS_ASSETS])).job
    assert isinstance(job, ReprocessAssetsJob)
    assert job.asset_handle_array == ("a|47|1|201", "a|47|1|202")
    assert (job.overwrite_avs, job.exclude_master_video_from_avs) == (False, True)
    assert job.auto_smart_crop_options_array is not None
    assert [c.name for c in job.auto_smart_crop_options_array] == ["square", "banner"]
    assert job.unsharp_mask_options is not None and job.unsharp_mask_options.monochrome == 1
    rip = parse_submit_job_xml(document(JOBS[JobKind.RIP_PDFS])).job
    assert isinstance(rip, RipPdfsJob)
    assert rip.pdf_handle_array == ("a|47|1|301", "a|47|1|302")
    assert rip.post_script_options is not None
    assert rip.post_script_options.process is RasterizeProcess.RASTERIZE
    assert rip.pdf_options is not None and rip.pdf_options.process is PdfProcess.NONE


def test_export_and_automated_set_details() -> None:
    job = parse_submit_job_xml(document(JOBS[JobKind.EXPORT])).job
    assert isinstance(job, ExportJob)
    assert (job.fmt, job.is_modifier, job.macro) == (ExportFormat.CONVERT, "&fmt=png", "$test$")
    auto = parse_submit_job_xml(document(JOBS[JobKind.AUTOMATED_SET_GENERATION])).job
    assert isinstance(auto, AutomatedSetGenerationJob)
    assert auto.auto_set_creation_options.auto_sets_array == ("ps|47|swatches", "ps|47|views")
    assert (auto.dest_folder, auto.ready_for_publish) == ("47/sets/", True)


def test_xml_and_dict_give_the_same_model() -> None:
    xml = document(JOBS[JobKind.EXPORT])
    data = {
        "companyHandle": "47",
        "jobName": "Spring",
        "exportJob": {
            "assetHandleArray": {"items": ["a|47|1|1", "a|47|1|2"]},
            "fmt": "convert",
            "is_modifier": "&fmt=png",
            "macro": "$test$",
            "emailSetting": "None",
        },
    }
    assert parse_submit_job(xml) == parse_submit_job(data)


def test_element_order_is_lenient_on_input() -> None:
    xml = (
        f'<submitJobParam xmlns="{IPS_NAMESPACE}"><exportJob><emailSetting>None</emailSetting>'
        "<fmt>orig</fmt><assetHandleArray><items>a|1</items></assetHandleArray></exportJob>"
        "<jobName>Late</jobName><companyHandle>47</companyHandle></submitJobParam>"
    )
    req = parse_submit_job_xml(xml)
    assert req.job_name == "Late" and req.job == ExportJob(
        asset_handle_array=("a|1",), fmt=ExportFormat.ORIG, email_setting=EmailSetting.NONE
    )


def test_to_xml_writes_xsd_order_items_booleans_and_offsets() -> None:
    req = parse_submit_job(
        {
            "jobName": "Nightly",
            "companyHandle": "47",
            "execTime": datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            "reprocessAssetsJob": {
                "emailSetting": "All",
                "createMask": "1",
                "assetHandleArray": ["a|1", "a|2"],
                "autoTransparentCropOptions": {"tolerance": 0.5},
            },
        }
    )
    xml = to_xml(req, root="submitJobParam", namespace=DATED)
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(xml)
    assert root.tag == f"{{{DATED}}}submitJobParam"
    names = [child.tag.split("}")[1] for child in root]
    assert names == ["companyHandle", "jobName", "execTime", "reprocessAssetsJob"]
    assert root[2].text == "2030-01-02T03:04:05+02:00"
    job = root[3]
    assert [c.tag.split("}")[1] for c in job] == [
        "assetHandleArray",
        "createMask",
        "autoTransparentCropOptions",
        "emailSetting",
    ]
    assert [i.text for i in job[0]] == ["a|1", "a|2"]
    assert {i.tag for i in job[0]} == {f"{{{DATED}}}items"}
    assert job[1].text == "true" and job[2][0].text == "0.5" and job[3].text == "All"
    assert b"xmlns:ns0" not in xml


def test_to_xml_writes_a_return() -> None:
    xml = to_xml(SubmitJobReturn(job_handle="47|My Test Job|"), root="submitJobReturn")
    assert xml.endswith(
        b'<submitJobReturn xmlns="http://www.scene7.com/IpsApi/xsd">'
        b"<jobHandle>47|My Test Job|</jobHandle></submitJobReturn>"
    )


def test_text_is_kept_for_strings_and_trimmed_for_other_types() -> None:
    xml = document(
        "<optimizeImagesJob><emailSetting>\n  Error\n  </emailSetting></optimizeImagesJob>",
        head="<description>  two  spaces  </description>"
        "<execTime> 2030-01-01T00:00:00Z </execTime>",
    )
    req = parse_submit_job_xml(xml)
    assert req.description == "  two  spaces  "
    assert req.job.email_setting is EmailSetting.ERROR
    assert req.exec_time == datetime(2030, 1, 1, tzinfo=UTC)


def test_xsi_nil_means_absent_and_comments_are_ignored() -> None:
    xsi = "http://www.w3.org/2001/XMLSchema-instance"
    xml = (
        f'<submitJobParam xmlns="{IPS_NAMESPACE}" xmlns:xsi="{xsi}"><!-- a note -->'
        '<companyHandle>47</companyHandle><userHandle xsi:nil="true"/><jobName>N</jobName>'
        '<execTime xsi:nil="true"/><optimizeImagesJob><emailSetting>None</emailSetting>'
        "</optimizeImagesJob></submitJobParam>"
    )
    req = parse_submit_job_xml(xml)
    assert req.user_handle is None and req.exec_time is None


def test_an_empty_array_element_is_an_empty_array() -> None:
    xml = document(
        "<exportJob><assetHandleArray/><fmt>orig</fmt><emailSetting>None</emailSetting></exportJob>"
    )
    with pytest.raises(errors.InvalidParameter, match="assetHandleArray must hold at least one"):
        parse_submit_job_xml(xml)


def test_latin1_documents_with_a_declaration_parse() -> None:
    xml = document(JOBS[JobKind.OPTIMIZE_IMAGES]).replace("UTF-8", "ISO-8859-1")
    xml = xml.replace("Spring", "Café")
    assert parse_submit_job_xml(xml.encode("latin-1")).job_name == "Café"
    assert parse_submit_job_xml(xml).job_name == "Café"


@pytest.mark.parametrize(
    "raw",
    [b"\xef\xbb\xbf" + SEED.encode(), SEED.encode("utf-16")],
    ids=["utf-8 BOM", "utf-16"],
)
def test_byte_order_marks_are_honoured(raw: bytes) -> None:
    assert parse_submit_job_xml(raw).job_name == "My Test Job"


# Bad values inside a well-formed document are the same faults as from a dict.
VALUE_FAULTS = [
    (
        "no fmt",
        JOBS[JobKind.EXPORT].replace("<fmt>convert</fmt>", ""),
        errors.MissingParameter,
        "submitJobParam/exportJob/fmt is required",
    ),
    (
        "bad boolean",
        JOBS[JobKind.RIP_PDFS].replace("<createMask>false", "<createMask>no"),
        errors.InvalidParameter,
        "ripPdfsJob/createMask must be an xsd:boolean",
    ),
    (
        "bad enum",
        JOBS[JobKind.EXPORT].replace(">convert<", ">Convert<"),
        errors.InvalidParameter,
        "exportJob/fmt must be one of 'orig', 'convert'; got 'Convert'",
    ),
    (
        "bad double",
        JOBS[JobKind.UPLOAD_URLS].replace("<tolerance>0.3", "<tolerance>lots"),
        errors.InvalidParameter,
        "autoTransparentCropOptions/tolerance: input should be a valid number",
    ),
    (
        "bad int in an item",
        JOBS[JobKind.REPROCESS_ASSETS].replace("<width>600", "<width>wide"),
        errors.InvalidParameter,
        "autoSmartCropOptionsArray/items[1]/width",
    ),
    (
        "unknown element",
        JOBS[JobKind.EXPORT].replace("<fmt>", "<format>x</format><fmt>"),
        errors.InvalidParameter,
        "submitJobParam/exportJob/format is not a known element",
    ),
    (
        "python name",
        JOBS[JobKind.EXPORT].replace("emailSetting>", "email_setting>"),
        errors.InvalidParameter,
        "exportJob/email_setting is not a known element",
    ),
    (
        "item misnamed",
        JOBS[JobKind.EXPORT].replace("<items>a|47|1|1</items>", "<item>x</item>"),
        errors.InvalidParameter,
        "assetHandleArray/item is not a known element; an array holds",
    ),
    (
        "leaf with elements",
        JOBS[JobKind.EXPORT].replace("<fmt>convert</fmt>", "<fmt><a/></fmt>"),
        errors.InvalidParameter,
        "exportJob/fmt must hold text, not elements",
    ),
    (
        "two job types",
        JOBS[JobKind.EXPORT] + JOBS[JobKind.OPTIMIZE_IMAGES],
        errors.InvalidParameter,
        "got optimizeImagesJob and exportJob",
    ),
    ("no job type", "", errors.MissingParameter, "a job type element is required"),
    (
        "restricted",
        "<createVideoSitemapJob><forceUpdate>true</forceUpdate></createVideoSitemapJob>",
        errors.NotSupported,
        "createVideoSitemapJob is a restricted IPS job type",
    ),
]


@pytest.mark.parametrize(
    ("job", "fault", "text"), [pytest.param(*c[1:], id=c[0]) for c in VALUE_FAULTS]
)
def test_bad_values_in_xml(job: str, fault: type[errors.IpsFault], text: str) -> None:
    with pytest.raises(errors.IpsFault) as caught:
        parse_submit_job_xml(document(job))
    assert type(caught.value) is fault and text in caught.value.reason


def test_exec_rules_in_xml() -> None:
    naive = document(JOBS[JobKind.OPTIMIZE_IMAGES], head="<execTime>2030-01-01T00:00:00</execTime>")
    with pytest.raises(errors.InvalidParameter, match="has no timezone"):
        parse_submit_job_xml(naive)
    cron = document(JOBS[JobKind.OPTIMIZE_IMAGES], head="<execSchedule>0 0 12 * * *</execSchedule>")
    with pytest.raises(errors.InvalidParameter, match="not a valid Quartz cron expression"):
        parse_submit_job_xml(cron)
    both = "<execTime>2030-01-01T00:00:00Z</execTime><execSchedule>0 0 12 * * ?</execSchedule>"
    with pytest.raises(errors.InvalidParameter, match="at most one of execTime and execSchedule"):
        parse_submit_job_xml(document(JOBS[JobKind.OPTIMIZE_IMAGES], head=both))


def _deep(levels: int) -> str:
    return document("<a>" * levels + "</a>" * levels)


OPTIMIZE = JOBS[JobKind.OPTIMIZE_IMAGES]
HOSTILE: list[tuple[str, str | bytes, str]] = [
    (
        "xxe external entity",
        '<?xml version="1.0"?><!DOCTYPE submitJobParam [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        + document(OPTIMIZE).split("?>", 1)[1].replace("Spring", "&xxe;"),
        "DTD",
    ),
    (
        "billion laughs",
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
        ).replace("&lol0;", "&lol;")
        + "]>"
        + document(OPTIMIZE).split("?>", 1)[1].replace("Spring", "&lol9;"),
        "DTD",
    ),
    ("internal DTD", "<!DOCTYPE submitJobParam>" + document(OPTIMIZE).split("?>", 1)[1], "DTD"),
    (
        "external DTD",
        '<!DOCTYPE submitJobParam SYSTEM "http://evil.example.com/x.dtd">'
        + document(OPTIMIZE).split("?>", 1)[1],
        "DTD",
    ),
    (
        "6 MB document",
        document(OPTIMIZE, head=f"<description>{'x' * 6_000_000}</description>"),
        "at most 5242880",
    ),
    ("deep nesting", _deep(5000), "nested deeper than 32 levels"),
    (
        "wrong root",
        SEED.replace("submitJobParam", "getJobLogsParam"),
        "the root element is <getJobLogsParam>; expected <submitJobParam>",
    ),
    ("no namespace", SEED.replace(f' xmlns="{IPS_NAMESPACE}"', ""), "has no namespace"),
    (
        "wrong namespace",
        SEED.replace(IPS_NAMESPACE, "http://example.com/IpsApi/xsd"),
        "is not an IPS namespace",
    ),
    (
        "undated suffix",
        SEED.replace(IPS_NAMESPACE, IPS_NAMESPACE + "/latest"),
        "is not an IPS namespace",
    ),
    (
        "child in another namespace",
        SEED.replace("<jobName>", '<jobName xmlns="urn:x">'),
        "submitJobParam/jobName is in namespace urn:x",
    ),
    (
        "child without namespace",
        SEED.replace("<jobName>", '<jobName xmlns="">'),
        "submitJobParam/jobName is in no namespace",
    ),
    ("non-UTF-8 garbage", b"\x80\x81\xfe\xffgarbage\x00\x9c<submitJobParam/>", "malformed XML"),
    (
        "latin-1 bytes without a declaration",
        SEED.replace("My Test", "Caf\xe9").encode("latin-1"),
        "malformed XML",
    ),
    ("lone surrogate", SEED.replace("My Test", "\ud800"), "not valid text"),
    ("not XML", "hello world", "malformed XML"),
    ("empty", b"", "empty"),
    ("truncated", SEED[:-10], "malformed XML"),
    ("undefined entity", SEED.replace("My Test Job", "&nbsp;"), "malformed XML: undefined entity"),
    (
        "repeated element",
        SEED.replace("<jobName>", "<jobName>a</jobName><jobName>"),
        "submitJobParam/jobName appears more than once",
    ),
    ("mixed content", SEED.replace("<jobName>", "loose text<jobName>"), "holds text between"),
    (
        "text in an array",
        document(JOBS[JobKind.EXPORT].replace("<items>a|47|1|1", "x<items>a")),
        "assetHandleArray holds text between elements",
    ),
]


@pytest.mark.parametrize(("xml", "text"), [pytest.param(*c[1:], id=c[0]) for c in HOSTILE])
def test_hostile_or_malformed_xml_is_invalid_request_xml(xml: str | bytes, text: str) -> None:
    with pytest.raises(errors.IpsFault) as caught:
        parse_submit_job(xml)
    assert type(caught.value) is errors.InvalidRequestXml
    assert caught.value.code == 30003 and caught.value.fault == "ipsApiFault"
    assert text in caught.value.reason


def test_limits_can_be_set_per_call() -> None:
    with pytest.raises(errors.InvalidRequestXml, match="at most 100 are allowed"):
        parse_document(SEED, root="submitJobParam", model=SubmitJobRequest, max_bytes=100)
    with pytest.raises(errors.InvalidRequestXml, match="deeper than 2 levels"):
        parse_document(SEED, root="submitJobParam", model=SubmitJobRequest, max_depth=2)
    with pytest.raises(errors.InvalidRequestXml, match="more than 3 elements"):
        read_xml(SEED, max_elements=3)
    assert len(SEED.encode()) < MAX_DOCUMENT_BYTES


def test_namespaces() -> None:
    assert is_ips_namespace(IPS_NAMESPACE) and is_ips_namespace(DATED)
    assert is_ips_namespace(f"{IPS_NAMESPACE}/2021-04-26-beta")
    assert not is_ips_namespace(f"{IPS_NAMESPACE}/")
    assert not is_ips_namespace(f"{IPS_NAMESPACE}/2014-4-3")
    assert not is_ips_namespace("https://www.scene7.com/IpsApi/xsd")


class GetJobLogsParam(IpsModel):
    """A stand-in for a later operation, to show the reader needs no code per model."""

    company_handle: str
    sort_direction: SortDirection | None = None
    start_date: XsdDateTime | None = None
    num_rows: int | None = None
    log_type_array: Array[str] | None = None


def test_the_reader_is_generic() -> None:
    xml = (
        f'<getJobLogsParam xmlns="{DATED}"><companyHandle>47</companyHandle>'
        "<sortDirection>Descending</sortDirection><startDate>2030-01-01T00:00:00Z</startDate>"
        "<numRows> 50 </numRows><logTypeArray><items>BeginUpload</items><items>FleEnd</items>"
        "</logTypeArray></getJobLogsParam>"
    )
    param, used = parse_document(xml, root="getJobLogsParam", model=GetJobLogsParam)
    assert used == DATED
    assert param.sort_direction is SortDirection.DESCENDING and param.num_rows == 50
    assert param.log_type_array == ("BeginUpload", "FleEnd")
    again, _ = parse_element(
        ET.fromstring(to_xml(param, root="getJobLogsParam")),
        root="getJobLogsParam",
        model=GetJobLogsParam,
    )
    assert again == param
    with pytest.raises(errors.MissingParameter, match="getJobLogsParam/companyHandle is required"):
        parse_document(
            f'<getJobLogsParam xmlns="{DATED}"/>', root="getJobLogsParam", model=GetJobLogsParam
        )


def test_to_xml_of_every_kind_is_well_formed_and_ordered() -> None:
    for kind in JobKind:
        req = parse_submit_job_xml(document(JOBS[kind]))
        root = ET.fromstring(to_xml(req, root="submitJobParam"))
        payload = root.find(f"{{{IPS_NAMESPACE}}}{kind.element}")
        assert payload is not None
        model = type(req.job)
        order = [info.alias for info in model.model_fields.values()]
        written = [child.tag.split("}")[1] for child in payload]
        assert written == [name for name in order if name in written]
