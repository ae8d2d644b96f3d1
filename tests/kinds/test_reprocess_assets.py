"""ReprocessAssetsJob through submit() and a real worker on SQLite and PostgreSQL: images are
optimized again even when up to date, PDFs ripped again with the job's pdfOptions, other types
get a warning; readyForPublish marks the results; options this server does not do are refused
at submit, naming the field."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select

from jobengine import errors, submit
from jobengine.assets.catalog import add_set, company_by_handle
from jobengine.kinds.optimize_images import is_optimized
from jobengine.kinds.processing_options import CALLBACK, IGNORED, REFUSED, refuse_unsupported
from jobengine.kinds.reprocess_assets import ReprocessAssetsKind
from jobengine.kinds.rip_pdfs import RipPdfsKind
from jobengine.model.upload import ReprocessAssetsJob, RipPdfsJob
from jobengine.runtime import get_runtime
from jobengine.store.schema import Asset, Run
from tests.support.helpers import reprocess_request
from tests.support.lookups import asset, assets_in
from tests.support.processing_samples import add_files, pdf_pages, photo_file
from tests.support.stack import Stack


def test_mixed_assets_are_reprocessed_by_type(stack: Stack) -> None:
    company, _ = stack.company(0)
    files = add_files(
        company,
        {"photo.jpg": photo_file, "guide.pdf": partial(pdf_pages, pages=2)},
        folder="/docs",
    )
    with get_runtime().store.write() as session:
        image_set = add_set(session, company_by_handle(session, company), "looks", "ImageSet")
        set_handle = image_set.handle
    handles = [files["photo.jpg"], files["guide.pdf"], set_handle]
    request = reprocess_request(
        company, handles, readyForPublish="true", pdfOptions={"resolution": "36"}
    )
    log = stack.wait(company, submit(request))
    assert log.state == "Done"
    assert (log.file_success_count, log.file_warning_count, log.file_error_count) == (2, 1, 0)
    rows = {d.asset_name: (d.log_type, d.log_message) for d in log.details if d.asset_name}
    assert rows == {
        "photo.jpg": ("ReoptimizeSuccess", "optimized photo.jpg"),
        "guide.pdf": (
            "UploadSuccess",
            "ripped guide.pdf into 2 page(s) and the eCatalog guide",
        ),
        "looks": ("FileCancel", "skipped looks: ImageSet assets have nothing to reprocess"),
    }
    assert [log.details[0].log_type, log.details[-1].log_type] == [
        "BeginReoptimize",
        "endReoptimize",
    ]
    assert log.output == {"optimized": 1, "pages": 2, "catalogs": 1}
    made = assets_in(company)
    assert sorted(made) == ["guide", "guide-1.jpg", "guide-2.jpg", "guide.pdf", "photo.jpg"]
    marked = {n for n, a in made.items() if a.publish_state == "MarkedForPublish"}
    assert marked == {"guide", "guide-1.jpg", "guide-2.jpg", "photo.jpg"}  # not the PDF itself
    photo = asset(files["photo.jpg"])
    assert is_optimized(photo)

    # again, without readyForPublish: the up-to-date image is optimized anyway (forced)
    again = stack.wait(company, submit(reprocess_request(company, handles[:2], "Again")))
    rows = {d.asset_name: d.log_message for d in again.details if d.asset_name}
    assert rows["photo.jpg"] == "optimized photo.jpg"  # not "is already optimized"
    assert rows["guide.pdf"] == "ripped guide.pdf into 2 page(s) and the eCatalog guide"
    assert {n: a.handle for n, a in assets_in(company).items()} == {
        n: a.handle for n, a in made.items()
    }
    assert all(a.publish_state == "MarkedForPublish" for a in made.values() if a.type != "Pdf")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"createMask": "true"}, "reprocessAssetsJob/createMask"),
        ({"overwriteAVS": "true"}, "reprocessAssetsJob/overwriteAVS"),
        ({"unsharpMaskOptions": {"amount": "1"}}, "reprocessAssetsJob/unsharpMaskOptions"),
        ({"mediaOptions": {"generateThumbnail": "true"}}, "reprocessAssetsJob/mediaOptions"),
        ({"metadataOptions": {}}, "reprocessAssetsJob/metadataOptions"),
        ({"autoSetCreationOptions": {}}, "reprocessAssetsJob/autoSetCreationOptions"),
        ({"cssOptions": {"forceStaticImages": "1"}}, "reprocessAssetsJob/cssOptions"),
        (
            {"photoshopOptions": {"process": "MaintainLayers"}},
            "reprocessAssetsJob/photoshopOptions",
        ),
        ({"illustratorOptions": {"process": "Rasterize"}}, "reprocessAssetsJob/illustratorOptions"),
        ({"inDesignOptions": {}}, "reprocessAssetsJob/inDesignOptions"),
        ({"jwtToken": "t"}, "reprocessAssetsJob/jwtToken"),
        ({"imsOrg": "o"}, "reprocessAssetsJob/imsOrg"),
        ({"apikey": "k"}, "reprocessAssetsJob/apikey"),
        (
            {
                "autoSmartCropOptionsArray": {
                    "items": [{"name": "s", "width": 1, "height": 1, "type": "t"}]
                }
            },
            "reprocessAssetsJob/autoSmartCropOptionsArray",
        ),
        (
            {"postVideoPublishJob": {"emailSetting": "None"}},
            "reprocessAssetsJob/postVideoPublishJob",
        ),
        ({"pdfOptions": {"colorspace": "Cmyk"}}, "reprocessAssetsJob/pdfOptions/colorspace"),
    ],
)
def test_work_this_server_does_not_do_is_refused_at_submit(
    stack: Stack, change: dict[str, Any], field: str
) -> None:
    company, images = stack.company(1)
    with get_runtime().store.read() as session:
        before = session.scalar(select(func.count()).select_from(Run))
    with pytest.raises(errors.NotSupported) as caught:
        submit(reprocess_request(company, images, **change))
    assert caught.value.field == field and caught.value.reason.startswith(field)
    with get_runtime().store.read() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == before


def test_flags_that_ask_for_nothing_are_accepted(stack: Stack) -> None:
    company, images = stack.company(1)
    request = reprocess_request(
        company,
        images,
        "Flags",
        readyForPublish="false",
        preservePublishState="true",
        preserveCrop="true",
        overwriteAVS="false",
        photoshopOptions={"process": "None"},
        illustratorOptions={"process": "None"},
        colorManagementOptions={"colorManagement": "Default"},
        postJobOnlyIfFiles="true",
        ignoreSmartCropGeneration="true",
    )
    log = stack.wait(company, submit(request))
    assert (log.state, log.file_success_count) == ("Done", 1)
    with get_runtime().store.read() as session:
        state = session.scalar(select(Asset.publish_state).where(Asset.handle == images[0]))
    assert state == "MarkedForPublish"  # stack.company marks its images; left as it was


def test_unknown_and_foreign_handles_are_refused(stack: Stack) -> None:
    company, _ = stack.company(0)
    _, theirs = stack.company(1)
    with pytest.raises(errors.IllegalCompany):
        submit(reprocess_request(company, theirs))
    with pytest.raises(errors.InvalidParameter, match="unknown assetHandle"):
        submit(reprocess_request(company, ["a|1|1|999999"]))


# --- the option table itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "honoured"),
    [
        (RipPdfsJob, RipPdfsKind.honoured),
        (ReprocessAssetsJob, ReprocessAssetsKind.honoured),
    ],
)
def test_every_field_is_honoured_ignored_or_refused(model: Any, honoured: Any) -> None:
    unclassified = set(model.model_fields) - set(honoured) - IGNORED - CALLBACK - set(REFUSED)
    assert not unclassified, f"{model.__name__}: {sorted(unclassified)}"


def test_an_unclassified_field_is_refused() -> None:
    job = RipPdfsJob.model_validate(
        {"pdfHandleArray": ["a|1|2|3"], "createMask": "0", "emailSetting": "None"}
    )
    refuse_unsupported("ripPdfsJob", job, RipPdfsKind.honoured)  # nothing asked
    with pytest.raises(errors.NotSupported, match="ripPdfsJob/pdfHandleArray is not supported"):
        refuse_unsupported("ripPdfsJob", job, frozenset({"email_setting"}))
