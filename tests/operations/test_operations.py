"""The read operations on real runs (details paging and filters, asset logs, active jobs), and
Adobe's saveImageFormat example end to end."""

from __future__ import annotations

import io
import re
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from jobengine import (
    errors,
    get_active_jobs,
    get_asset_job_logs,
    get_image_formats,
    get_job_log_details,
    get_scheduled_jobs,
    pause_job,
    resume_job,
    submit,
)
from jobengine.assets.catalog import create_company, create_user, import_files
from jobengine.runtime import get_runtime
from jobengine.store.schema import Company, Run
from tests.support.helpers import PASSWORD, export_request, make_images
from tests.support.web import WebServer


def test_job_log_details_page_and_filter_by_log_type(stack) -> None:
    company, assets = stack.company(5, sets=1)
    handle = submit(export_request(company, assets, "Paged"))
    done = stack.wait(company, handle)
    assert done.detail_total_rows == 9  # Begin, OriginalJobName, 5 files, 1 skipped set, End
    assert [d.log_type for d in done.details[:2]] == ["BeginGet", "OriginalJobName"]
    assert done.details[1].log_message == "Paged"  # the name as submitted
    [page2] = get_job_log_details(company, job_handle=handle, records_per_page=3, results_page=2)
    assert page2.detail_total_rows == 9
    assert [d.log_message for d in page2.details] == [d.log_message for d in done.details[3:6]]
    [only] = get_job_log_details(company, job_handle=handle, log_types=["ReturnSuccess"])
    assert only.detail_total_rows == 5
    assert {d.log_type for d in only.details} == {"ReturnSuccess"}
    [by_type] = get_job_log_details(
        company, job_handle=handle, sort_by="LogType", sort_direction="Descending"
    )
    types = [d.log_type for d in by_type.details]
    assert types == sorted(types, reverse=True)
    [by_run] = get_job_log_details(company, job_handle=done.job_handle)
    assert by_run.job_name == done.job_name


@pytest.mark.parametrize(
    ("kwargs", "fault"),
    [
        ({}, errors.MissingParameter),
        ({"job_handle": "x|y|", "records_per_page": 1001}, errors.InvalidParameter),
        ({"job_handle": "x|y|", "results_page": 0}, errors.InvalidParameter),
        ({"job_handle": "x|y|", "sort_by": "Name"}, errors.InvalidParameter),
    ],
)
def test_job_log_details_refuse_bad_paging(stack, kwargs, fault) -> None:
    company, _ = stack.company(0)
    with pytest.raises(fault):
        get_job_log_details(company, **kwargs)


def test_asset_job_logs_follow_one_asset_across_jobs(stack) -> None:
    company, assets = stack.company(2)
    stack.wait(company, submit(export_request(company, assets, "First")))
    stack.wait(company, submit(export_request(company, assets[:1], "Second")))
    rows = get_asset_job_logs(company, assets[0])
    assert [r.job_name.split("_")[0] for r in rows] == ["First", "Second"]
    assert all(r.log_type == "ReturnSuccess" and r.job_handle.startswith(f"{company}||")
               for r in rows)  # fmt: skip
    assert len(get_asset_job_logs(company, assets[1])) == 1
    with pytest.raises(errors.InvalidCompany):
        get_asset_job_logs("no-such-company", assets[0])


def test_active_jobs_show_progress_of_a_paused_run(stack) -> None:
    company, assets = stack.company(150)
    handle = submit(export_request(company, assets, "Watched"))
    deadline = time.monotonic() + 30
    while not (active := get_active_jobs(company)) or active[0].task_progress[0].num_processed < 1:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.005)
    pause_job(company, handle)
    time.sleep(0.5)  # items in flight finish; the rest stay pending
    [job] = get_active_jobs(company)
    [task] = job.task_progress
    assert job.job_handle == handle and job.state == "Running" and job.type == "Export"
    assert job.original_name == "Watched" and job.name.startswith("Watched_")
    assert 0 < job.progress < 100 and task.num_pending > 0 and task.num_processed > 0
    assert task.num_processed + task.num_pending + task.num_processing == 150
    assert task.progress == pytest.approx(job.progress / 100)
    assert job.job == {"exportJob": job.job["exportJob"]}
    # progressMessage: stored in English, rendered in the reader's language from the counters
    done = task.num_processed
    assert job.progress_message == task.progress_message == f"{done} of 150 file(s) processed"
    with get_runtime().store.read() as session:
        stored = session.scalar(select(Run.progress_message).where(Run.run_name == job.name))
    assert stored == job.progress_message
    [german] = get_active_jobs(company, locale="de-CH")
    assert german.progress_message == f"{done} von 150 Datei(en) verarbeitet"
    assert german.task_progress[0].progress_message == german.progress_message
    [japanese] = get_active_jobs(company, locale="ja")
    assert japanese.progress_message == f"150 件中 {done} 件のファイルを処理しました"
    [unknown] = get_active_jobs(company, locale="xx")
    assert unknown.progress_message == job.progress_message
    resume_job(company, handle)
    log = stack.wait(company, handle)
    assert log.state == "Done" and log.file_success_count == 150
    assert get_active_jobs(company) == []


def test_scheduled_jobs_echo_the_payload(stack) -> None:
    company, assets = stack.company(1)
    submit(export_request(company, assets, "Far", execTime="2099-01-01T00:00:00+00:00"))
    [scheduled] = get_scheduled_jobs(company)
    assert scheduled.job["exportJob"]["fmt"] == "orig"
    assert scheduled.next_fire_time is not None and scheduled.next_fire_time.year == 2099
    assert scheduled.exec_schedule is None and scheduled.trigger_state == "Normal"


@pytest.mark.parametrize("number", ["2147483648", "9" * 30, "\u00b2", "\u0663"])
def test_preset_handles_the_store_cannot_hold_are_a_30001_fault(store_only, number) -> None:
    # Found by fuzzing: a huge id overflowed the store's integer, "²" passed isdigit().
    from jobengine import delete_image_format, save_image_format
    from tests.support.helpers import make_company

    company, _ = make_company(0)
    handle = f"{company}|{number}"
    with pytest.raises(errors.InvalidParameter) as caught:
        delete_image_format(company, handle)
    assert caught.value.field == "imageFormatHandle"
    with pytest.raises(errors.InvalidParameter):
        save_image_format(company, "p", "wid=8", image_format_handle=handle)


# Adobe's saveImageFormat example (IPS API reference, operation saveImageFormat), verbatim:
# a name with spaces, and a urlModifier wrapped across lines with qlt=750.
ADOBE_SAVE_IMAGE_FORMAT = """<saveImageFormatParam xmlns="http://www.scene7.com/IpsApi/xsd">
   <companyHandle>47</companyHandle>
   <name>My Image Format Name</name>
   <urlModifier>wid=400&amp;hei=400&amp;fmt=jpeg&amp;qlt=750&amp;op_sharpen=0&amp;
   resMode=bicub&amp;op_usm=0.0,0.0,0,0&amp;iccEmbed=0
   </urlModifier>
</saveImageFormatParam>"""

EXPORT_WITH_THE_FORMAT = """<submitJobParam xmlns="http://www.scene7.com/IpsApi/xsd">
   <companyHandle>47</companyHandle>
   <jobName>{name}</jobName>
   <exportJob>
      <assetHandleArray><items>{asset}</items></assetHandleArray>
      <fmt>convert</fmt>
      <macro>$My Image Format Name$</macro>
      <emailSetting>None</emailSetting>
   </exportJob>
</submitJobParam>"""


def _soap(web: WebServer, user: str, body: str, action: str) -> str:
    """POST ``body`` in a SOAP envelope as Adobe's examples show it; the answer's XML text."""
    envelope = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        '<soapenv:Header><authHeader xmlns="http://www.scene7.com/IpsApi/xsd">'
        f"<user>{user}</user><password>{PASSWORD}</password></authHeader></soapenv:Header>"
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
    response = httpx.post(
        web.url + "/scene7/services/IpsApiService",
        content=envelope,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.text


def _company_47_with_an_image(user: str) -> str:
    """Company 47 (the example's) with ``user`` in it and one fresh image; its asset handle."""
    runtime = get_runtime()
    with tempfile.TemporaryDirectory() as tmp, runtime.store.write() as session:
        company = session.scalar(select(Company).where(Company.handle == "47"))
        if company is None:
            company = create_company(session, "47", "Seed company")
        create_user(session, user, PASSWORD, "IpsUser", [company])
        [image] = make_images(Path(tmp), 1, size=(300, 200))
        folder = f"/adobe-{uuid.uuid4().hex[:8]}"
        [asset] = import_files(session, runtime.storage, company, [image], folder=folder)
        return asset.handle


def test_adobes_save_image_format_example_then_an_export_with_it(stack, web) -> None:
    """The documentation's own example end to end: saved over SOAP as written, then used."""
    user = "adobe-example-47@example.com"
    asset = _company_47_with_an_image(user)
    answer = _soap(web, user, ADOBE_SAVE_IMAGE_FORMAT, "saveImageFormat")
    saved = re.search(r"<imageFormatHandle>(47\|\d+)</imageFormatHandle>", answer)
    assert saved is not None and "saveImageFormatReturn" in answer, answer
    [preset] = [p for p in get_image_formats("47") if p.name == "My Image Format Name"]
    assert preset.image_format_handle == saved.group(1)
    assert "&qlt=750&op_sharpen=0&" in preset.url_modifier  # stored as given

    name = f"Adobe preset {uuid.uuid4().hex[:6]}"
    answer = _soap(web, user, EXPORT_WITH_THE_FORMAT.format(name=name, asset=asset), "submitJob")
    assert f"<jobHandle>47|{name}|</jobHandle>" in answer, answer
    log = stack.wait("47", f"47|{name}|")
    assert (log.state, log.file_success_count, log.file_error_count) == ("Done", 1, 0), log.details
    with zipfile.ZipFile(get_runtime().storage.path(log.output["zip"])) as zf:
        [member] = zf.namelist()
        image = Image.open(io.BytesIO(zf.read(member)))
    assert member.endswith(".jpg") and image.format == "JPEG"
    assert image.size == (400, 400)  # wid and hei both: the image fits the box, padded
    tables = image.quantization  # type: ignore[attr-defined]
    assert all(set(table) == {1} for table in tables.values())  # qlt=750 encoded as quality 100


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("   ", "blank"),
        ("x" * 256, "at most 255"),
        ("tab\there", "U+0009"),
        ("bell\x07", "U+0007"),
        ("next\u0085line", "U+0085"),
        ("line\u2028break", "U+2028"),
    ],
)
def test_preset_names_are_free_text_within_bounds(store_only, name, reason) -> None:
    from jobengine import save_image_format
    from tests.support.helpers import make_company

    company, _ = make_company(0)
    with pytest.raises(errors.InvalidParameter) as caught:
        save_image_format(company, name, "wid=8")
    assert caught.value.field == "name" and reason in caught.value.reason
    handle = save_image_format(company, "Web Large · été", "wid=8")
    assert save_image_format(company, "web large · ÉTÉ", "wid=9") == handle  # one name, any case
    assert [(p.name, p.url_modifier) for p in get_image_formats(company)] == [
        ("web large · ÉTÉ", "wid=9")
    ]
    assert save_image_format(company, "x" * 255, "wid=1").startswith(f"{company}|")
