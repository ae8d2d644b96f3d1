"""Upload crops (jobengine/assets/crops.py): the pure rules (preserveCrop, manual edges, the crop of
a conversion request), then UploadDirectoryJob, ReprocessAssetsJob, ExportJob, OptimizeImagesJob
and ImageServingPublishJob through submit() and a real worker on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from PIL import Image
from sqlalchemy import select

from jobengine import submit
from jobengine.assets.crops import CropBox, CropOrder, manual_box, parse_crop, with_crop
from jobengine.imaging import parse_modifiers
from jobengine.imaging.request import Crop
from jobengine.kinds.processing_options import unsupported_fields
from jobengine.kinds.reprocess_assets import ReprocessAssetsKind
from jobengine.kinds.upload_directory import UploadDirectoryKind, upload_root
from jobengine.model.upload import RipPdfsJob, UploadDirectoryJob
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from jobengine.store.schema import Asset, Company, Folder
from tests.support.crop_samples import bordered, corrupt_png, size_of
from tests.support.helpers import (
    directory_request,
    export_request,
    optimize_request,
    publish_request,
    reprocess_request,
)
from tests.support.image_samples import png_header_bomb
from tests.support.lookups import pyramid_levels
from tests.support.stack import Stack

CONTENT = "10,6,96,76"  # what bordered() keeps once its border is trimmed
MANUAL = {"left": 5, "right": 15, "top": 4, "bottom": 6}  # of 120x90: 100x80 at 5,4


# --- the rules ---------------------------------------------------------------------------------


def _udj(**options: Any) -> UploadDirectoryJob:
    return UploadDirectoryJob.model_validate(
        {"serverDir": "in", "overwrite": True, "readyForPublish": False, "createMask": False,
         "includeSubfolders": False, "processMetadataFiles": False, "emailSetting": "None",
         **options}
    )  # fmt: skip


def test_preserve_crop_rules() -> None:
    manual = CropOrder.of(_udj(manualCropOptions=MANUAL, preserveCrop=True))
    assert (manual.kind, manual.edges) == ("manual", (5, 15, 4, 6))
    assert manual.decide("1,1,5,5") == "compute"  # explicit manual edges always apply
    zero = CropOrder.of(_udj(manualCropOptions={"left": 0, "right": 0, "top": 0, "bottom": 0}))
    assert zero.kind is None and zero.decide("1,1,5,5") == "keep" and zero.decide(None) == "keep"
    cleared = CropOrder.of(_udj(preserveCrop=False))
    assert cleared.decide("1,1,5,5") == "clear" and cleared.decide(None) == "keep"
    auto = CropOrder.of(_udj(autoColorCropOptions={"corner": "BottomRight", "tolerance": 0.2}))
    assert (auto.kind, auto.corner, auto.tolerance) == ("color", "BottomRight", 0.2)
    assert auto.decide("1,1,5,5") == "keep" and auto.decide(None) == "compute"
    fresh = CropOrder.of(_udj(autoTransparentCropOptions={"tolerance": 0}, preserveCrop=False))
    assert fresh.decide("1,1,5,5") == "compute" and fresh.decide(None) == "compute"


def test_manual_edges() -> None:
    assert manual_box((5, 15, 4, 6), 120, 90).box == CropBox(5, 4, 100, 80)
    assert manual_box((0, 0, 0, 0), 120, 90).box is None
    for edges in ((60, 60, 0, 0), (0, 0, 200, 0), (500, 0, 0, 0)):
        measured = manual_box(edges, 120, 90)
        assert measured.box is None and measured.warning is not None
        assert "leaves nothing of the 120x90 image" in measured.warning


def test_stored_crop_text() -> None:
    assert parse_crop("10,6,96,76") == CropBox(10, 6, 96, 76)
    assert CropBox(10, 6, 96, 76).text() == "10,6,96,76"
    for bad in (None, "", "1,2,3", "a,b,c,d", "-1,0,5,5", "0,0,0,5"):
        assert parse_crop(bad) is None


def test_the_catalog_crop_comes_before_the_modifiers() -> None:
    box = CropBox(10, 20, 100, 50)
    assert with_crop(parse_modifiers("wid=40"), box).crop == Crop(10, 20, 100, 50)
    assert with_crop(parse_modifiers("crop=5,5,20,10"), box).crop == Crop(15, 25, 20, 10)
    assert with_crop(parse_modifiers("cropN=0.5,0,0.5,1"), box).crop == Crop(60, 20, 50, 50)
    plain = parse_modifiers("wid=40")
    assert with_crop(plain, None) is plain


def test_crops_are_honoured_by_uploads_and_reprocess_but_refused_by_rip() -> None:
    crop = {"autoColorCropOptions": {"corner": "UpperLeft", "tolerance": 0.1}}
    honoured = UploadDirectoryKind.honoured
    assert (
        unsupported_fields("uploadDirectoryJob", _udj(preserveCrop=False, **crop), honoured) == []
    )
    assert {"manual_crop_options", "preserve_crop"} <= set(ReprocessAssetsKind.honoured)
    rip = RipPdfsJob.model_validate(
        {"pdfHandleArray": {"items": ["a|1"]}, "createMask": False, "emailSetting": "None",
         "manualCropOptions": MANUAL}
    )  # fmt: skip
    [(path, reason)] = unsupported_fields("ripPdfsJob", rip, {"pdf_handle_array", "email_setting"})
    assert path == "ripPdfsJob/manualCropOptions" and "ripped pages" in reason


# --- end to end --------------------------------------------------------------------------------


def _drop(company: str, folder: str, files: dict[str, bytes]) -> None:
    """Files into the company's upload root (``ftp/<company>/<folder>``)."""
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    target = storage.root / upload_root(company) / folder
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)


def _assets(company: str) -> dict[str, Asset]:
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(Asset, Folder.path)
            .join(Folder, Folder.id == Asset.folder_id)
            .join(Company, Company.id == Asset.company_id)
            .where(Company.handle == company)
        ).all()
    return {f"{path.rstrip('/')}/{a.name}": a for a, path in rows}


def _upload(stack: Stack, company: str, folder: str, name: str, **options: Any) -> Any:
    request = directory_request(company, folder, name, destFolder=f"/{folder}", **options)
    log = stack.wait(company, submit(request))
    assert log.state == "Done", log
    return log


def _messages(log: Any, log_type: str) -> list[str]:
    return sorted(d.log_message for d in log.details if d.log_type == log_type)


def test_each_crop_kind_at_upload(stack: Stack) -> None:
    company, _ = stack.company(0)
    _drop(company, "color", {"plain.png": bordered(), "noisy.png": bordered(noise=10)})
    clear = {"t.png": bordered(transparent=True), "opaque.jpg": bordered(fmt="JPEG")}
    _drop(company, "clear", clear)
    _drop(company, "manual", {"a.png": bordered(), "notes.txt": b"not an image"})
    _drop(company, "toomuch", {"a.png": bordered()})
    _drop(company, "broken", {"cut.png": corrupt_png(), "ok.png": bordered()})

    exact = _upload(stack, company, "color", "Exact",
                    autoColorCropOptions={"corner": "UpperLeft", "tolerance": 0})  # fmt: skip
    assets = _assets(company)
    assert assets["/color/plain.png"].crop == CONTENT
    assert assets["/color/noisy.png"].crop != CONTENT  # a noisy border is not one color
    lenient = _upload(stack, company, "color", "Lenient", overwrite=True, preserveCrop=False,
                      autoColorCropOptions={"corner": "BottomRight", "tolerance": 0.1})  # fmt: skip
    assets = _assets(company)
    assert assets["/color/noisy.png"].crop == CONTENT  # tolerance matters
    assert assets["/color/plain.png"].crop == CONTENT
    assert (exact.file_success_count, lenient.file_success_count) == (2, 2)
    crops = sorted(d.log_message for d in lenient.details if d.log_type == "UploadSuccess")
    assert crops == ["replaced /color/noisy.png with color/noisy.png",
                     "replaced /color/plain.png with color/plain.png"]  # fmt: skip

    _upload(stack, company, "clear", "Clear", autoTransparentCropOptions={"tolerance": 0.05})
    assets = _assets(company)
    assert assets["/clear/t.png"].crop == CONTENT
    assert assets["/clear/opaque.jpg"].crop is None  # no alpha: nothing to trim, no row

    manual = _upload(stack, company, "manual", "Manual", manualCropOptions=MANUAL)
    assets = _assets(company)
    assert assets["/manual/a.png"].crop == "5,4,100,80"
    assert assets["/manual/notes.txt"].crop is None  # not an image: crop options ignored
    assert manual.file_warning_count == 0

    too_much = {"left": 100, "right": 30, "top": 0, "bottom": 0}
    warned = _upload(stack, company, "toomuch", "TooMuch", manualCropOptions=too_much)
    assert _assets(company)["/toomuch/a.png"].crop is None
    assert warned.file_success_count == 1
    assert _messages(warned, "UploadWarning") == [
        "/toomuch/a.png is not cropped: the manual crop 100,30,0,0 (left,right,top,bottom) "
        "leaves nothing of the 120x90 image"
    ]

    broken = _upload(stack, company, "broken", "Broken", manualCropOptions=MANUAL)
    assert (broken.file_success_count, broken.file_error_count) == (1, 1)
    [error] = _messages(broken, "UploadError")
    assert error.startswith("cannot upload broken/cut.png: the image cannot be cropped:")
    assets = _assets(company)
    assert "/broken/cut.png" not in assets  # nothing recorded for it
    assert assets["/broken/ok.png"].crop == "5,4,100,80"


def test_reupload_and_preserve_crop(stack: Stack) -> None:
    company, _ = stack.company(0)
    _drop(company, "re", {"a.png": bordered()})
    path = "/re/a.png"

    def crop_after(name: str, **options: Any) -> str | None:
        _upload(stack, company, "re", name, overwrite=True, **options)
        return _assets(company)[path].crop

    assert crop_after("First", manualCropOptions=MANUAL) == "5,4,100,80"
    handle = _assets(company)[path].handle
    assert crop_after("Keep") == "5,4,100,80"  # preserveCrop defaults to true
    auto = {"autoColorCropOptions": {"corner": "UpperLeft", "tolerance": 0}}
    assert crop_after("KeepOverAuto", preserveCrop=True, **auto) == "5,4,100,80"
    assert crop_after("Clear", preserveCrop=False) is None
    assert crop_after("AutoOnNone", preserveCrop=True, **auto) == CONTENT
    explicit = {"left": 1, "right": 1, "top": 1, "bottom": 1}
    assert crop_after("Explicit", preserveCrop=True, manualCropOptions=explicit) == "1,1,118,88"
    assert _assets(company)[path].handle == handle  # replaced in place throughout


def _zip_members(log: Any) -> dict[str, bytes]:
    storage = get_runtime().storage
    with zipfile.ZipFile(io.BytesIO(storage.open(log.output["zip"]).read())) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_export_optimize_publish_and_reprocess_of_a_cropped_image(stack: Stack) -> None:
    company, _ = stack.company(0)
    original = bordered()
    _drop(company, "pics", {"a.png": original})
    _upload(stack, company, "pics", "Up", readyForPublish=True,
            autoColorCropOptions={"corner": "UpperLeft", "tolerance": 0})  # fmt: skip
    asset = _assets(company)["/pics/a.png"]
    assert asset.crop == CONTENT

    orig = stack.wait(company, submit(export_request(company, [asset.handle], "Orig")))
    assert _zip_members(orig) == {"pics/a.png": original}  # byte-identical original
    request = export_request(company, [asset.handle], "Convert")
    request["exportJob"].update(fmt="convert", is_modifier="fmt=png")
    converted = stack.wait(company, submit(request))
    assert converted.file_success_count == 1
    [(name, data)] = _zip_members(converted).items()
    assert name == "pics/a.png" and size_of(data) == (96, 76)
    with Image.open(io.BytesIO(data)) as img:  # the border is gone: the corner is the content
        assert img.convert("RGB").getpixel((0, 0)) == (200, 20, 20)

    first = stack.wait(company, submit(optimize_request(company, "Opt1")))
    assert first.file_success_count == 1
    key = _assets(company)["/pics/a.png"].optimized_key
    assert key is not None and pyramid_levels(key)[0][0] == (96, 76)
    again = stack.wait(company, submit(optimize_request(company, "Opt2")))
    assert again.total_file_count == 0  # up to date

    publish = stack.wait(company, submit(publish_request(company, "Pub")))
    assert publish.file_success_count == 1
    storage = get_runtime().storage
    catalog = json.loads(storage.open(f"_publish/{company}/catalog.json").read())
    assert [(e["path"], e.get("crop")) for e in catalog] == [("/pics/a.png", CONTENT)]

    # reprocess with a manual crop: a new crop, and a pyramid of it
    reprocess = stack.wait(
        company, submit(reprocess_request(company, [asset.handle], "Re", manualCropOptions=MANUAL))
    )
    assert reprocess.file_success_count == 1
    stored = _assets(company)["/pics/a.png"]
    assert stored.crop == "5,4,100,80" and stored.optimized_crop == "5,4,100,80"
    assert pyramid_levels(key)[0][0] == (100, 80)
    # a crop changed behind the pyramid's back makes it stale for OptimizeImagesJob
    with get_runtime().store.write() as session:
        row = session.get(Asset, stored.id)
        assert row is not None
        row.crop = "0,0,60,45"
    stale = stack.wait(company, submit(optimize_request(company, "Opt3")))
    assert stale.file_success_count == 1 and pyramid_levels(key)[0][0] == (60, 45)
    # reprocess that cannot crop: a warning row, no crop, the full-size pyramid
    too_much = {"left": 0, "right": 0, "top": 50, "bottom": 50}
    warned = stack.wait(
        company,
        submit(reprocess_request(company, [asset.handle], "ReWarn", manualCropOptions=too_much)),
    )
    assert warned.file_success_count == 1
    assert _messages(warned, "UploadWarning") == [
        "a.png is not cropped: the manual crop 0,0,50,50 (left,right,top,bottom) leaves nothing "
        "of the 120x90 image"
    ]
    assert _assets(company)["/pics/a.png"].crop is None
    assert pyramid_levels(key)[0][0] == (120, 90)


def test_huge_images_are_bounded_by_the_pool(stack: Stack) -> None:
    company, _ = stack.company(0)
    _drop(company, "bomb", {"bomb.png": png_header_bomb(60000, 60000)})
    log = _upload(stack, company, "bomb", "Bomb", manualCropOptions=MANUAL)
    assert log.file_error_count == 1
    [error] = _messages(log, "UploadError")
    assert "pixels" in error and "max_source_pixels" in error
    assert "/bomb/bomb.png" not in _assets(company)
