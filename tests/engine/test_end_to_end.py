"""submit() through real workers, for both store backends: the two supported job kinds."""

from __future__ import annotations

import zipfile

import pytest
from sqlalchemy import select, update

from jobengine import errors, get_job_log_details, get_job_logs, submit, submit_many
from jobengine.cli.demo import SEED_EXAMPLE_XML
from jobengine.runtime import get_runtime
from jobengine.store.schema import Asset, Run
from tests.support.helpers import export_request, make_company, publish_request


def test_seed_example_returns_the_documented_handle_and_publishes(stack) -> None:
    company, assets = stack.company(3)
    xml = SEED_EXAMPLE_XML.replace("<companyHandle>47<", f"<companyHandle>{company}<")
    handle = submit(xml)
    assert handle == f"{company}|My Test Job|"
    log = stack.wait(company, handle)
    assert log.state == "Done"
    assert log.file_success_count == 3 and log.total_file_count == 3
    assert log.job_sub_type == "full"
    assert log.job_name.startswith("My Test Job_") and log.original_job_name == "My Test Job"
    types = [d.log_type for d in log.details]
    assert types[0] == "BeginImageServingPublish" and types[-1] == "EndImageServingPublish"
    assert types.count("ImageServingPublishSuccess") == 3
    storage = get_runtime().storage
    assert storage.exists(f"_publish/{company}/catalog.json")
    assert storage.exists(f"_publish/{company}/images/pics/img000.jpg")
    with get_runtime().store.read() as session:
        states = set(session.scalars(select(Asset.publish_state).where(Asset.handle.in_(assets))))
    assert states == {"Published"}


def test_incremental_publish_only_sends_what_changed(stack) -> None:
    company, assets = stack.company(3)
    first = stack.wait(company, submit(publish_request(company, "P1", "Full")))
    assert first.file_success_count == 3
    with get_runtime().store.write() as session:
        asset = session.scalar(select(Asset).where(Asset.handle == assets[1]))
        assert asset is not None and asset.published_at is not None
        asset.updated_at = asset.published_at.replace(year=asset.published_at.year + 1)
    second = stack.wait(company, submit(publish_request(company, "P2", "Incremental")))
    assert second.file_success_count == 1
    assert [d.asset_handle for d in second.details if d.log_type.endswith("Success")] == [assets[1]]


def test_export_originals_into_one_zip(stack) -> None:
    company, assets = stack.company(4, sets=1)
    handle = submit(export_request(company, assets, "Export Four"))
    log = stack.wait(company, handle)
    assert log.state == "Done"
    assert (log.file_success_count, log.file_warning_count, log.file_error_count) == (4, 1, 0)
    assert log.total_file_count == 5
    storage = get_runtime().storage
    key = log.output["zip"]
    assert key == f"{company}/exports/{log.job_name.replace(':', '_')}.zip"
    with zipfile.ZipFile(storage.path(key)) as zf:
        names = zf.namelist()
        assert sorted(names) == [f"pics/img{i:03d}.jpg" for i in range(4)]
        assert (
            zf.read("pics/img000.jpg")
            == storage.path(f"{company}/assets/pics/img000.jpg").read_bytes()
        )
    assert not storage.path(f"_staging/run-{_run_id(log.job_name)}").exists()
    skipped = [d for d in log.details if d.log_type == "FileCancel"]
    assert len(skipped) == 1 and "ImageSet" in skipped[0].log_message


def _run_id(run_name: str) -> int:
    with get_runtime().store.read() as session:
        run_id = session.scalar(select(Run.id).where(Run.run_name == run_name))
    assert run_id is not None
    return run_id


def test_duplicate_names_are_accepted_with_unique_handles_and_run_names(stack) -> None:
    company, assets = stack.company(1)
    first = submit(export_request(company, assets, "Same Name", execTime="2099-01-01T00:00:00Z"))
    second = submit(export_request(company, assets, "Same Name"))
    assert first == f"{company}|Same Name|"
    assert second.startswith(f"{company}|Same Name||") and second != first
    done = stack.wait(company, second)
    assert done.state == "Done"
    third = submit(export_request(company, assets, "Same Name"))
    stack.wait(company, third)
    runs = get_job_logs(company)
    names = [r.job_name for r in runs]
    assert len(names) == len(set(names)) == 2
    assert all(r.original_job_name == "Same Name" for r in runs)


def test_a_finished_jobs_name_passes_to_the_next_job(stack) -> None:
    company, assets = stack.company(1)
    handle = submit(export_request(company, assets, "Nightly"))
    stack.wait(company, handle)
    again = submit(export_request(company, assets, "Nightly"))
    assert again == handle  # the name is free again once the first job has ended
    stack.wait(company, again)
    assert len(get_job_log_details(company, original_name="Nightly")) == 2


@pytest.mark.parametrize(
    ("mutate", "fault", "code", "text"),
    [
        (lambda r: r.update(companyHandle="nope"), errors.InvalidCompany, 20000, "unknown company"),
        (
            lambda r: r["exportJob"]["assetHandleArray"].update(items=["a|0|1|999999"]),
            errors.InvalidParameter,
            30001,
            "unknown assetHandle",
        ),
        (
            lambda r: r["exportJob"].update(fmt="convert", is_modifier="&qlt=best"),
            errors.InvalidParameter,
            30001,
            "qlt=best",
        ),
        (
            lambda r: r.update(userHandle="nobody@example.com"),
            errors.InvalidRequestUser,
            20002,
            "unknown user",
        ),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(stack, mutate, fault, code, text) -> None:
    company, assets = stack.company(1)
    request = export_request(company, assets, "Bad")
    mutate(request)
    with get_runtime().store.read() as session:
        before = session.scalar(select(Run.id).order_by(Run.id.desc()).limit(1))
    with pytest.raises(fault) as caught:
        submit(request)
    assert caught.value.code == code and text in caught.value.reason
    with get_runtime().store.read() as session:
        assert session.scalar(select(Run.id).order_by(Run.id.desc()).limit(1)) == before


def test_foreign_company_assets_are_refused(stack) -> None:
    company, _ = stack.company(1)
    _, foreign = make_company(1)
    with pytest.raises(errors.IllegalCompany) as caught:
        submit(export_request(company, foreign))
    assert caught.value.code == 20006


def test_every_job_type_is_run_or_refused_by_name(stack) -> None:
    """The eleven job types IPS lets a client submit all run here (ImageRenderingPublishJob was
    the last); the two restricted ones are refused by the model; a kind this server lacked would
    be refused with NotSupported naming it."""
    from jobengine.kinds import KINDS, kind_for
    from jobengine.model.constants import JobKind

    assert {kind.element for kind in JobKind} == set(KINDS) and len(KINDS) == 11
    with pytest.raises(errors.NotSupported) as caught:
        kind_for("imageRenderingPublishJobV2")
    assert caught.value.code == 30001 and "ImageRenderingPublishJobV2" in caught.value.reason
    company, _ = stack.company(0)
    for element, payload in (
        ("metadataPublishJob", {"forcePublish": "true"}),
        ("createVideoSitemapJob", {"forceUpdate": "true"}),
    ):
        with pytest.raises(errors.NotSupported) as caught:
            submit({"companyHandle": company, "jobName": "Restricted", element: payload})
        assert caught.value.field == element and "restricted" in caught.value.reason
    request = {
        "companyHandle": company,
        "jobName": "Render",
        "imageRenderingPublishJob": {"emailSetting": "None"},
    }
    log = stack.wait(company, submit(request))
    assert (log.state, log.total_file_count) == ("Done", 0)


def test_export_limits(stack) -> None:
    company, assets = stack.company(2)
    too_many = [f"a|0|1|{n}" for n in range(501)]
    with pytest.raises(errors.LimitExceeded, match="at most 500 assets"):
        submit(export_request(company, too_many))
    with get_runtime().store.write() as session:
        session.execute(update(Asset).where(Asset.handle == assets[0]).values(size=1024**3))
    with pytest.raises(errors.LimitExceeded, match="at most 1 GB"):
        submit(export_request(company, assets))


def test_submit_many_is_all_or_nothing_and_runs_every_job(stack) -> None:
    company, assets = stack.company(2)
    good = [export_request(company, assets, f"Batch {n}") for n in range(3)]
    bad = export_request(company, assets, "Batch bad")
    bad["exportJob"]["emailSetting"] = "Sometimes"
    with get_runtime().store.read() as session:
        before = session.scalar(select(Run.id).order_by(Run.id.desc()).limit(1))
    with pytest.raises(errors.InvalidParameter, match="request 2 of 4"):
        submit_many([good[0], bad, good[1], good[2]])
    with get_runtime().store.read() as session:
        assert session.scalar(select(Run.id).order_by(Run.id.desc()).limit(1)) == before
    handles = submit_many([*good, good[0]])
    assert handles[:3] == [f"{company}|Batch {n}|" for n in range(3)]
    assert handles[3].startswith(f"{company}|Batch 0||")  # same name twice in one batch
    logs = [stack.wait(company, h) for h in handles]
    assert [log.state for log in logs] == ["Done"] * 4
