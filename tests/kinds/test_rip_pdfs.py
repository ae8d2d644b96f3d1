"""RipPdfsJob: submit() through a real worker on SQLite and PostgreSQL (pages, eCatalog, options,
re-rips, hostile PDFs, refusals at submit), and the pure parts (options, names, the catalog's
sets) on their own."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from jobengine import errors, submit
from jobengine.assets.catalog import (
    add_set,
    create_company,
    ensure_folder,
    put_asset_file,
    remove_assets,
    save_set,
    set_members,
)
from jobengine.kinds import PlannedItem, kind_for
from jobengine.kinds.rip_pdfs import RipOptions, catalog_name, check_pdf_options, page_name
from jobengine.model.options import PdfOptions
from jobengine.runtime import get_runtime
from jobengine.store.schema import Asset, Run
from tests.support.helpers import rip_request
from tests.support.lookups import assets_in, run_context
from tests.support.processing_samples import (
    add_files,
    corrupt_pdf,
    empty_pdf,
    encrypted_pdf,
    pdf_pages,
    wide_page_pdf,
)
from tests.support.stack import Stack


def members(catalog: Asset) -> list[str]:
    with get_runtime().store.read() as session:
        return [a.name for a in set_members(session, catalog)]


def jpeg_of(asset: Asset) -> Image.Image:
    assert asset.file_key is not None
    img = Image.open(get_runtime().storage.path(asset.file_key))
    img.load()
    return img


def test_rip_makes_page_assets_and_an_ecatalog_and_rerips_in_place(stack: Stack) -> None:
    company, _ = stack.company(0)
    pdfs = add_files(company, {"brochure.pdf": partial(pdf_pages, pages=3)})
    pdf = pdfs["brochure.pdf"]
    log = stack.wait(company, submit(rip_request(company, [pdf], resolution="36")))
    assert log.state == "Done"
    assert (log.total_file_count, log.file_success_count, log.file_error_count) == (1, 1, 0)
    assert [d.log_type for d in log.details] == [
        "BeginPdfRip",
        "OriginalJobName",
        "UploadSuccess",
        "EndUpload",
    ]
    assert log.details[2].log_message == (
        "ripped brochure.pdf into 3 page(s) and the eCatalog brochure"
    )
    assert log.details[2].asset_handle == pdf
    first = assets_in(company)
    names = ["brochure-1.jpg", "brochure-2.jpg", "brochure-3.jpg"]
    assert sorted(first) == sorted(["brochure.pdf", "brochure", *names])
    pdf_id = first["brochure.pdf"].id
    for name in names:
        page = first[name]
        assert (page.type, page.derived_from) == ("Image", pdf_id)
        assert page.publish_state == "NotMarkedForPublish"
        img = jpeg_of(page)
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (306, 396))  # 36 dpi
        assert page.size == get_runtime().storage.size(str(page.file_key))
    catalog = first["brochure"]
    assert (catalog.type, catalog.derived_from, catalog.file_key) == ("ECatalog", pdf_id, None)
    assert members(catalog) == names
    assert log.output == {"pages": 3, "catalogs": 1}

    # a second rip replaces the same assets in place: same handles, new files, old files gone
    again = stack.wait(company, submit(rip_request(company, [pdf], "Rip again")))
    assert again.file_success_count == 1
    second = assets_in(company)
    assert {n: a.handle for n, a in second.items()} == {n: a.handle for n, a in first.items()}
    storage = get_runtime().storage
    for name in names:
        assert second[name].file_key != first[name].file_key
        assert not storage.exists(str(first[name].file_key))
        assert jpeg_of(second[name]).width == 1275  # the default 150 dpi
    assert members(second["brochure"]) == names

    # the same item done once more, as after a worker died before it was counted: no change
    ctx = run_context(company, again.job_name)
    outcome = kind_for("ripPdfsJob").process(ctx, PlannedItem(key=pdf))
    assert outcome.status == "success"
    assert outcome.result["pages"] == [second[n].handle for n in names]
    assert sorted(assets_in(company)) == sorted(second)

    # the PDF now has one page less: the page the earlier rips made beyond it is removed
    add_files(company, {"brochure.pdf": partial(pdf_pages, pages=2)})
    third = stack.wait(company, submit(rip_request(company, [pdf], "Rip shorter")))
    assert third.details[2].log_message == (
        "ripped brochure.pdf into 2 page(s) and the eCatalog brochure"
    )
    now = assets_in(company)
    assert sorted(now) == sorted(["brochure.pdf", "brochure", *names[:2]])
    assert not storage.exists(str(second["brochure-3.jpg"].file_key))
    assert members(now["brochure"]) == names[:2]


def test_pdf_options_choose_what_is_made(stack: Stack) -> None:
    company, _ = stack.company(0)
    pdfs = add_files(
        company,
        {
            "none.pdf": partial(pdf_pages, pages=2),
            "thumb.pdf": partial(pdf_pages, pages=3),
            "plain.pdf": partial(pdf_pages, pages=2),
            "gray.pdf": partial(pdf_pages, pages=1),
        },
    )
    logs = {
        name: stack.wait(company, submit(rip_request(company, [pdfs[name]], name, **opts)))
        for name, opts in {
            "none.pdf": {"process": "None"},
            "thumb.pdf": {"process": "Thumbnail", "resolution": "36"},
            "plain.pdf": {"pdfCatalog": "false", "resolution": "36"},
            "gray.pdf": {"colorspace": "Gray", "resolution": "36"},
        }.items()
    }
    assert logs["none.pdf"].file_warning_count == 1
    [managed] = [d for d in logs["none.pdf"].details if d.log_type == "UploadWarning"]
    assert managed.log_message == "none.pdf is managed only: pdfOptions/process is None"
    assert logs["thumb.pdf"].details[2].log_message == "ripped thumb.pdf into 1 page(s)"
    assert logs["plain.pdf"].details[2].log_message == "ripped plain.pdf into 2 page(s)"
    assert logs["gray.pdf"].details[2].log_message == (
        "ripped gray.pdf into 1 page(s) and the eCatalog gray"
    )
    made = assets_in(company)
    assert sorted(made) == sorted(
        [*pdfs, "thumb-1.jpg", "plain-1.jpg", "plain-2.jpg", "gray-1.jpg", "gray"]
    )
    assert jpeg_of(made["gray-1.jpg"]).mode == "L"
    assert jpeg_of(made["thumb-1.jpg"]).mode == "RGB"


def test_hostile_pdfs_fail_their_own_item_and_leave_nothing(stack: Stack) -> None:
    company, _ = stack.company(0)
    pdfs = add_files(
        company,
        {
            "locked.pdf": encrypted_pdf,
            "junk.pdf": corrupt_pdf,
            "empty.pdf": empty_pdf,
            "many.pdf": partial(pdf_pages, pages=501, image=False),
            "wide.pdf": wide_page_pdf,
            "good.pdf": partial(pdf_pages, pages=1),
        },
    )
    log = stack.wait(company, submit(rip_request(company, list(pdfs.values()))))
    assert log.state == "Done"
    assert (log.file_success_count, log.file_error_count) == (1, 5)
    errors_by_asset = {
        d.asset_name: d.log_message for d in log.details if d.log_type == "PdfRipError"
    }
    assert "Incorrect password" in errors_by_asset["locked.pdf"]
    assert "cannot be opened" in errors_by_asset["junk.pdf"]
    assert "cannot be opened" in errors_by_asset["empty.pdf"]
    assert "501 pages; at most 500" in errors_by_asset["many.pdf"]
    assert "width or height exceeds limit" in errors_by_asset["wide.pdf"]
    assert all(m.startswith(f"cannot rip {n}: ") for n, m in errors_by_asset.items())
    assert sorted(assets_in(company)) == sorted([*pdfs, "good-1.jpg", "good"])
    storage = get_runtime().storage
    made = assets_in(company)
    for name in ("locked.pdf", "junk.pdf", "empty.pdf", "many.pdf", "wide.pdf"):
        folder = storage.path(f"{company}/pages/{made[name].id}")
        assert not folder.exists() or not any(p.is_file() for p in folder.rglob("*")), name


def test_a_name_in_the_way_fails_the_item_and_records_nothing(stack: Stack) -> None:
    company, _ = stack.company(0)
    pdfs = add_files(
        company,
        {"report.pdf": partial(pdf_pages, pages=2), "report-2.jpg": partial(pdf_pages, pages=1)},
    )  # "report-2.jpg" is a PDF asset: page 2 cannot replace it
    log = stack.wait(company, submit(rip_request(company, [pdfs["report.pdf"]], resolution="36")))
    [failed] = [d for d in log.details if d.log_type == "PdfRipError"]
    assert "'report-2.jpg' of type Pdf is in the way" in failed.log_message
    assert sorted(assets_in(company)) == ["report-2.jpg", "report.pdf"]  # no page 1, no catalog
    pdf_id = assets_in(company)["report.pdf"].id
    with get_runtime().store.read() as session:
        derived = select(func.count()).select_from(Asset).where(Asset.derived_from == pdf_id)
        assert session.scalar(derived) == 0


@pytest.mark.parametrize(
    ("change", "fault", "field"),
    [
        ({"createMask": "true"}, errors.NotSupported, "ripPdfsJob/createMask"),
        (
            {"manualCropOptions": {"left": 1, "right": 1, "top": 1, "bottom": 1}},
            errors.NotSupported,
            "ripPdfsJob/manualCropOptions",
        ),
        (
            {"knockoutBackgroundOptions": {"corner": "UpperLeft", "fillMethod": "FloodFill"}},
            errors.NotSupported,
            "ripPdfsJob/knockoutBackgroundOptions",
        ),
        (
            {"colorManagementOptions": {"colorManagement": "Convert"}},
            errors.NotSupported,
            "ripPdfsJob/colorManagementOptions",
        ),
        ({"postScriptOptions": {}}, errors.NotSupported, "ripPdfsJob/postScriptOptions"),
        (
            {"projectHandleArray": {"items": ["p|1"]}},
            errors.NotSupported,
            "ripPdfsJob/projectHandleArray",
        ),
        (
            {"postHttpUrl": "https://example.com:0/done"},  # a URL is honoured; this one is bad
            errors.InvalidParameter,
            "ripPdfsJob/postHttpUrl",
        ),
        (
            {"postImageServingPublishJob": {"publishType": "Full", "emailSetting": "None"}},
            errors.NotSupported,
            "ripPdfsJob/postImageServingPublishJob",
        ),
        (
            {"pdfOptions": {"colorspace": "Cmyk"}},
            errors.NotSupported,
            "ripPdfsJob/pdfOptions/colorspace",
        ),
        (
            {"pdfOptions": {"extractLinks": "true"}},
            errors.NotSupported,
            "ripPdfsJob/pdfOptions/extractLinks",
        ),
        (
            {"pdfOptions": {"extractSearchWords": "1"}},
            errors.NotSupported,
            "ripPdfsJob/pdfOptions/extractSearchWords",
        ),
        (
            {"pdfOptions": {"resolution": "1200"}},
            errors.LimitExceeded,
            "ripPdfsJob/pdfOptions/resolution",
        ),
    ],
)
def test_options_this_server_does_not_do_are_refused_at_submit(
    stack: Stack, change: dict[str, Any], fault: type[errors.IpsFault], field: str
) -> None:
    company, _ = stack.company(0)
    pdfs = add_files(company, {"a.pdf": partial(pdf_pages, pages=1)})
    request = rip_request(company, list(pdfs.values()))
    request["ripPdfsJob"].update(change)
    with get_runtime().store.read() as session:
        before = session.scalar(select(func.count()).select_from(Run))
    with pytest.raises(fault) as caught:
        submit(request)
    assert caught.value.field == field and caught.value.code == 30001
    assert field in caught.value.reason
    with get_runtime().store.read() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == before


def test_handles_are_checked_at_submit(stack: Stack) -> None:
    company, images = stack.company(1)
    foreign, _ = stack.company(0)
    theirs = add_files(foreign, {"theirs.pdf": partial(pdf_pages, pages=1)})
    mine = add_files(company, {"mine.pdf": partial(pdf_pages, pages=1)})
    with pytest.raises(errors.InvalidParameter, match="is of type Image, not Pdf"):
        submit(rip_request(company, [*mine.values(), images[0]]))
    with pytest.raises(errors.InvalidParameter, match="unknown assetHandle"):
        submit(rip_request(company, ["a|0|2|999999"]))
    with pytest.raises(errors.IllegalCompany):
        submit(rip_request(company, list(theirs.values())))
    with pytest.raises(errors.LimitExceeded, match="at most 1000"):
        submit(rip_request(company, [f"a|0|2|{n}" for n in range(1001)]))


# --- pure parts -------------------------------------------------------------------------------


def test_rip_options_from_pdf_options() -> None:
    assert RipOptions.of(None) == RipOptions("Rasterize", 150.0, False, True)
    opts = PdfOptions.model_validate(
        {"process": "Thumbnail", "resolution": "72", "colorspace": "Gray", "pdfCatalog": "0"}
    )
    assert RipOptions.of(opts) == RipOptions("Thumbnail", 72.0, True, False)
    assert RipOptions.of(PdfOptions.model_validate({"colorspace": "Rgb"})).gray is False
    assert RipOptions.of(PdfOptions.model_validate({"colorspace": "Auto"})).gray is False
    check_pdf_options("ripPdfsJob", PdfOptions.model_validate({"extractLinks": "false"}))
    check_pdf_options("ripPdfsJob", PdfOptions.model_validate({"resolution": "18"}))
    with pytest.raises(errors.LimitExceeded, match=r"18 to 600 dpi; got 17\.5"):
        check_pdf_options("x", PdfOptions.model_validate({"resolution": "17.5"}))


def test_page_and_catalog_names() -> None:
    assert page_name("brochure.pdf", 3) == "brochure-3.jpg"
    assert page_name("a.b.PDF", 1) == "a.b-1.jpg"
    assert page_name("noext", 2) == "noext-2.jpg"
    assert page_name(".pdf", 1) == ".pdf-1.jpg"
    assert len(page_name("x" * 600 + ".pdf", 500)) <= 512
    assert catalog_name("brochure.pdf") == "brochure"
    assert catalog_name("noext") == "noext-eCatalog"
    assert len(catalog_name("y" * 600)) <= 400


def test_sets_keep_their_order_and_close_up_when_members_go(store_only: dict[str, str]) -> None:
    runtime = get_runtime()
    with runtime.store.write() as session:
        company = create_company(session, f"sets{id(session)}", "Sets")
        folder = ensure_folder(session, company, "/x")
        pages = [
            put_asset_file(session, folder, f"p{n}.jpg", "Image", key=f"k/{n}", size=n)[0]
            for n in range(4)
        ]
        catalog = save_set(session, folder, "cat", "ECatalog", [pages[2], pages[0], pages[1]])
        assert [a.name for a in set_members(session, catalog)] == ["p2.jpg", "p0.jpg", "p1.jpg"]
        again = save_set(session, folder, "cat", "ECatalog", [pages[3], pages[2]])
        assert again.id == catalog.id
        assert [a.name for a in set_members(session, catalog)] == ["p3.jpg", "p2.jpg"]
        other = save_set(session, folder, "other", "ECatalog", pages)
        assert remove_assets(session, [pages[2]]) == ["k/2"]
        assert [a.name for a in set_members(session, catalog)] == ["p3.jpg"]
        assert [a.name for a in set_members(session, other)] == ["p0.jpg", "p1.jpg", "p3.jpg"]
        replaced, old_key = put_asset_file(session, folder, "p0.jpg", "Image", key="k/new", size=9)
        assert (replaced.id, old_key, replaced.size) == (pages[0].id, "k/0", 9)
        with pytest.raises(errors.InvalidParameter, match="of type ECatalog is in the way"):
            put_asset_file(session, folder, "cat", "Image", key="k/x", size=1)
        add_set(session, company, "root-set", "ImageSet")
        root = ensure_folder(session, company, "/")
        with pytest.raises(errors.InvalidParameter, match="of type ImageSet is in the way"):
            save_set(session, root, "root-set", "ECatalog", [])
