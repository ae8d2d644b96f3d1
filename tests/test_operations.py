"""The read operations on real runs: details paging and filters, asset logs, active jobs."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from jobengine import (
    errors,
    get_active_jobs,
    get_asset_job_logs,
    get_job_log_details,
    get_scheduled_jobs,
    pause_job,
    resume_job,
    submit,
)
from jobengine.runtime import get_runtime
from jobengine.store.schema import Run
from tests.support.helpers import export_request


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
