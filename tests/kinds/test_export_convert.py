"""ExportJob fmt=convert through real workers: presets, the seed's macro rule, hostile files."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from jobengine import delete_image_format, errors, get_image_formats, save_image_format, submit
from jobengine.assets.catalog import add_asset, company_by_handle
from jobengine.runtime import get_runtime
from tests.support.helpers import export_request


def _zip_images(key: str) -> dict[str, Image.Image]:
    with zipfile.ZipFile(get_runtime().storage.path(key)) as zf:
        return {n: Image.open(io.BytesIO(zf.read(n))) for n in zf.namelist()}


def _convert(company: str, assets: list[str], name: str, **fields: str) -> dict[str, object]:
    request = export_request(company, assets, name)
    request["exportJob"].update(fmt="convert", **fields)
    return request


def test_the_macro_decides_the_format_over_is_modifier(stack) -> None:
    """The ExportJob page's example: a JPEG, is_modifier=&fmt=png, macro=$test$ -> TIFF."""
    company, assets = stack.company(2)
    handle = submit(
        _convert(company, assets, "Seed", is_modifier="&fmt=png&wid=32", macro="$test$")
    )
    log = stack.wait(company, handle)
    assert log.state == "Done" and log.file_success_count == 2, log.details
    images = _zip_images(log.output["zip"])
    assert sorted(images) == ["pics/img000.tif", "pics/img001.tif"]
    for image in images.values():
        assert image.format == "TIFF" and image.width == 32  # the rest of is_modifier applies


def test_company_presets_are_saved_validated_and_used(stack) -> None:
    company, assets = stack.company(1)
    handle = save_image_format(company, "Small-PNG", "wid=20&fmt=png-alpha")
    assert handle.startswith(f"{company}|")
    assert [(p.name, p.url_modifier) for p in get_image_formats(company)] == [
        ("Small-PNG", "wid=20&fmt=png-alpha")
    ]
    with pytest.raises(errors.InvalidParameter, match="wid=-3"):
        save_image_format(company, "bad", "wid=-3")
    with pytest.raises(errors.InvalidParameter, match="512"):
        save_image_format(company, "long", "wid=10&" * 80)
    with pytest.raises(errors.InvalidParameter, match="control character"):
        save_image_format(company, "no\ttabs", "wid=10")
    job = submit(_convert(company, assets, "Preset", macro="$small-png$"))
    log = stack.wait(company, job)
    [image] = _zip_images(log.output["zip"]).values()
    assert image.format == "PNG" and image.mode == "RGBA" and image.width == 20
    delete_image_format(company, handle)
    assert get_image_formats(company) == []
    with pytest.raises(errors.InvalidParameter, match="small-png"):
        submit(_convert(company, assets, "Gone", macro="$small-png$"))


def test_a_hostile_file_fails_its_own_asset_and_the_job_goes_on(stack) -> None:
    company, assets = stack.company(2)
    runtime = get_runtime()
    with tempfile.TemporaryDirectory() as tmp, runtime.store.write() as session:
        bad = Path(tmp) / "broken.jpg"
        good = io.BytesIO()
        Image.new("RGB", (400, 300), "red").save(good, "JPEG")
        bad.write_bytes(good.getvalue()[:600])  # a truncated JPEG
        target = company_by_handle(session, company)
        broken = add_asset(session, runtime.storage, target, bad, folder="/pics").handle
    handle = submit(
        _convert(company, [assets[0], broken, assets[1]], "Hostile", is_modifier="fmt=png")
    )
    log = stack.wait(company, handle)
    assert log.state == "Done"
    assert (log.file_success_count, log.file_error_count) == (2, 1)
    [failure] = [d for d in log.details if d.log_type == "GetFailure"]
    assert failure.asset_handle == broken and "broken.jpg" in failure.log_message
    assert sorted(_zip_images(log.output["zip"])) == ["pics/img000.png", "pics/img001.png"]
