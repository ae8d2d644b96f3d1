"""submit_many() writes its jobs and runs with one multi-row insert each: what it stores and sends
is what submitting the same requests one by one with submit() stores and sends."""

from __future__ import annotations

import base64
import gc
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from jobengine import errors, submit, submit_many
from jobengine.embedded import redis_client
from jobengine.engine import submission
from jobengine.kinds import base
from jobengine.runtime import get_runtime
from jobengine.settings import get_settings
from jobengine.store.jobs import NewRun, insert_runs
from jobengine.store.schema import Job, Run
from tests.support.helpers import export_request, make_company, reprocess_request

Queue = tuple[dict[str, str], str]


def _requests(company: str, assets: list[str], near: datetime) -> list[dict[str, Any]]:
    """Each way a job can start, and a name repeated within the batch."""
    far = datetime(2099, 1, 1, tzinfo=UTC)
    return [
        export_request(company, assets, "Now"),
        export_request(company, assets, "Now"),  # the name twice: the first holds it
        export_request(company, assets, "Soon", execTime=near.isoformat()),
        export_request(company, assets, "Later", execTime=far.isoformat()),
        export_request(company, assets, "Cron", execSchedule="0 0 0 1 1 ? 2099"),
        export_request(company, assets, "Now"),
        export_request(company, assets, "Other", description="d", locale="fr"),
        export_request(company, assets, "It's 50% \\ off: %(x)s"),  # written into the lookups
        export_request(company, assets, "It's 50% \\ off: %(x)s"),
    ]


def _stored(company: str, handles: list[str]) -> list[tuple[Any, ...]]:
    """The jobs' and runs' columns that do not depend on ids or on the time of the call."""
    segment = f"{company}|"
    with get_runtime().store.read() as session:
        jobs = session.scalars(select(Job).where(Job.handle.in_(handles)).order_by(Job.id)).all()
        out: list[tuple[Any, ...]] = []
        for job in jobs:
            runs = session.scalars(select(Run).where(Run.job_id == job.id)).all()
            out.append(
                (
                    job.handle.replace(segment, "C|").split("|")[:2],
                    job.live_key, job.name, job.kind, job.description, job.locale,
                    job.exec_time, job.exec_schedule, job.time_zone, str(job.trigger_state),
                    job.next_fire_at, job.fired_through is not None, job.client,
                    {**job.payload["exportJob"], "assetHandleArray": None},
                    sorted(
                        (r.run_name.rsplit("_", 1)[0], r.fire_key,
                         str(r.state), r.eta, r.dispatched_at is not None)
                        for r in runs
                    ),
                )
            )  # fmt: skip
    return out


def test_submit_many_stores_and_sends_what_one_by_one_submits_do(private_queue: Queue) -> None:
    _, queue = private_queue
    one_company, assets_one = make_company(1)
    many_company, assets_many = make_company(1)
    client = "App " + "x" * 300  # cut to the column's 255
    near = datetime.now(UTC) + timedelta(seconds=4)  # inside the tests' ETA horizon (5 s)
    one = [submit(r, client=client) for r in _requests(one_company, assets_one, near)]
    many = submit_many(_requests(many_company, assets_many, near), client=client)
    assert [h.replace(many_company, "C") for h in many[:1]] == ["C|Now|"]
    assert many[1].startswith(f"{many_company}|Now||") and many[5].startswith(
        f"{many_company}|Now||"
    )
    assert len(set(many)) == len(many)
    assert many[7] == f"{many_company}|It's 50% \\ off: %(x)s|" and many[8].startswith(many[7])
    with get_runtime().store.read() as session:  # one second for the batch: -2, -3 suffixes
        names = session.scalars(
            select(Run.run_name)
            .join(Job, Job.id == Run.job_id)
            .where(Job.handle.in_(many[:2] + many[5:6]))
        ).all()
    base = min(names, key=len)
    assert sorted(names) == [base, f"{base}-2", f"{base}-3"]

    def same_form(handles: list[str], company: str) -> list[str]:
        return [h.replace(company, "C").rsplit("|", 1)[0] for h in handles]

    assert same_form(one, one_company) == same_form(many, many_company)
    assert _stored(one_company, one) == _stored(many_company, many)

    # the starts sent: one per job that starts now or soon, in the batch's order
    redis = redis_client(get_settings())
    sent = [json.loads(raw) for raw in redis.lrange(queue, 0, -1)[::-1]]
    redis.delete(queue)
    by_handle: dict[str, list[dict[str, Any]]] = {}
    for message in sent:
        body = json.loads(base64.b64decode(message["body"]))
        by_handle.setdefault(body[1]["job"], []).append(
            {"eta": message["headers"]["eta"], "kwargs": body[1]}
        )
    with get_runtime().store.read() as session:
        runs = session.execute(
            select(Job.handle, Run)
            .join(Job, Job.id == Run.job_id)
            .where(Job.handle.in_(one + many))
        ).all()
    assert len(runs) == 2 * 7  # the "Later" and "Cron" jobs have no run yet
    assert any(run.eta is not None for _, run in runs)  # "Soon": an ETA message
    assert sorted(by_handle) == sorted(handle for handle, _ in runs)
    for handle, run in runs:
        [message] = by_handle[handle]
        assert message["kwargs"]["run_id"] == run.id and message["kwargs"]["run"] == run.run_name
        assert message["eta"] == (run.eta.isoformat() if run.eta else None)


def test_names_held_by_live_jobs_stay_theirs_and_ended_holders_hand_them_on(
    private_queue: Queue,
) -> None:
    _, queue = private_queue
    company, assets = make_company(1)
    held = submit(export_request(company, assets, "Held", execSchedule="0 0 0 1 1 ? 2099"))
    ended = submit(export_request(company, assets, "Ended"))
    with get_runtime().store.write() as session:  # its run is over: the name is free again
        session.execute(
            update(Run)
            .where(Run.job_id.in_(select(Job.id).where(Job.handle == ended)))
            .values(state="Done")
        )
    handles = submit_many(
        [export_request(company, assets, name) for name in ("Held", "Ended", "Fresh")]
    )
    assert handles[0].startswith(f"{company}|Held||") and handles[0] != held
    assert handles[1:] == [f"{company}|Ended|", f"{company}|Fresh|"]
    with get_runtime().store.read() as session:
        old = session.scalar(select(Job).where(Job.handle == ended).order_by(Job.id))
        assert old is not None and old.live_key is None  # released to the new job
    redis_client(get_settings()).delete(queue)


def test_a_batch_looks_its_assets_up_at_once_and_faults_as_one_by_one(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assets of a batch's requests are looked up in one statement per company (not one
    per request); a bad handle in it is the same fault as submitted alone, at its position."""
    company, assets = make_company(6)
    _, [theirs] = make_company(1)
    lookups: list[list[str]] = []
    real, real_send = base.find_assets, base.send_assets

    def counted(db: Any, handles: list[str]) -> Any:
        lookups.append(list(handles))
        return real(db, handles)

    def counted_send(db: Any, handles: list[str]) -> Any:  # PostgreSQL's way (pipelined)
        lookups.append(list(handles))
        return real_send(db, handles)

    monkeypatch.setattr(base, "find_assets", counted)
    monkeypatch.setattr(base, "send_assets", counted_send)
    requests = [export_request(company, [a], f"Batch {n}") for n, a in enumerate(assets)]
    requests.append(reprocess_request(company, assets[:2], "Batch Reprocess"))
    assert len(submit_many(requests)) == 7
    assert lookups == [assets]  # one statement, every handle once, in order
    for bad, fault in (("a|0|1|999999", errors.InvalidParameter), (theirs, errors.IllegalCompany)):
        lookups.clear()
        batch = [
            export_request(company, [assets[0]], "Fine"),
            export_request(company, [bad], "Bad"),
        ]
        with pytest.raises(fault) as caught:
            submit_many(batch)
        with pytest.raises(fault) as single:
            submit(export_request(company, [bad], "Bad alone"))
        assert caught.value.code == single.value.code
        assert single.value.reason in caught.value.reason


def test_a_batch_of_dicts_is_parsed_at_once_with_the_faults_of_one_by_one(
    private_queue: Queue,
) -> None:
    """A batch of plain dicts is validated as one list; a bad one still gets the fault
    submit() gives it, named by its position (the batch is then parsed one by one)."""
    _, queue = private_queue
    company, assets = make_company(1)
    good = export_request(company, assets, "Parsed")
    wrapped = {"submitJobParam": export_request(company, assets, "Wrapped")}
    two_kinds = {**good, "imageServingPublishJob": {"publishType": "Full"}}
    bad_name = {**good, "jobName": "a|b"}
    bad_email = {**good, "exportJob": {**good["exportJob"], "emailSetting": "Sometimes"}}
    for bad in (two_kinds, bad_name, bad_email, {"jobName": "x"}):
        with pytest.raises(errors.IpsFault) as alone:
            submit(bad)
        with pytest.raises(errors.IpsFault) as batch:
            submit_many([good, wrapped, bad])
        assert type(batch.value) is type(alone.value)
        assert batch.value.code == alone.value.code
        assert batch.value.reason == f"request 3 of 3: {alone.value.reason}"
    handles = submit_many([good, wrapped])
    assert handles == [f"{company}|Parsed|", f"{company}|Wrapped|"]
    redis_client(get_settings()).delete(queue)


def test_a_batch_pauses_the_collector_and_leaves_it_as_it_found_it(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic collector is paused while a batch is recorded and sent, and is running
    again afterwards, after a fault too; one the caller paused stays paused."""
    _, queue = private_queue
    company, assets = make_company(1)
    seen: list[bool] = []
    real = submission.send_runs

    def spy(*args: Any, **kwargs: Any) -> int:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(submission, "send_runs", spy)
    assert gc.isenabled()
    submit_many([export_request(company, assets, f"Collector {n}") for n in range(2)])
    assert seen == [False] and gc.isenabled()
    with pytest.raises(errors.InvalidParameter):
        submit_many([export_request(company, ["a|0|1|999999"], "Collector bad")] * 2)
    assert gc.isenabled()
    submit(export_request(company, assets, "Collector alone"))  # one request: not paused
    assert seen == [False, True]
    gc.disable()
    try:
        submit_many([export_request(company, assets, f"Collector off {n}") for n in range(2)])
        assert not gc.isenabled()
    finally:
        gc.enable()
    redis_client(get_settings()).delete(queue)


def test_a_run_name_taken_this_second_takes_the_next_suffix_and_the_batch_stays_whole(
    private_queue: Queue,
) -> None:
    """A batch one of whose runs is named as a run of the same second already is (the runs'
    insert fails under its savepoint on PostgreSQL) still goes in whole, once: that run takes
    the next suffix, the others their names, and every start is sent once."""
    _, queue = private_queue
    company, assets = make_company(1)
    first = submit(export_request(company, assets, "Clash"))  # its run holds Clash_<second>
    store = get_runtime().store
    local = datetime.now(UTC).astimezone(get_settings().zone)
    with store.connect() as conn:  # and runs of the same name for this second and the next
        job_id, company_id = conn.execute(
            select(Job.id, Job.company_id).where(Job.handle == first)
        ).one()
        later = [
            NewRun(job_id, company_id, "Clash", f"test:{s}", named_at=local + timedelta(seconds=s))
            for s in range(6)  # this second's too (a second may have passed since the submit)
        ]
        insert_runs(conn, later, local_now=local)
    handles = submit_many([export_request(company, assets, name) for name in ("Clash", "Calm")])
    assert handles[0].startswith(f"{company}|Clash||") and handles[1] == f"{company}|Calm|"
    with store.read() as session:
        runs = session.execute(
            select(Job.handle, Run.run_name, Run.id)
            .join(Job, Job.id == Run.job_id)
            .where(Job.handle.in_(handles))
        ).all()
        clash_jobs = session.scalars(
            select(Job.id).where(Job.name == "Clash", Job.company_id == company_id)
        ).all()
    assert len(clash_jobs) == 2  # the first and the batch's: written once
    by_handle = {handle: (name, run_id) for handle, name, run_id in runs}
    clash, calm = by_handle[handles[0]][0], by_handle[handles[1]][0]
    stamp = r"_\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d"
    assert len(runs) == 2 and re.fullmatch(f"Clash{stamp}-[23]", clash)  # after the taken ones
    assert re.fullmatch(f"Calm{stamp}", calm)  # its own name, no suffix
    redis = redis_client(get_settings())
    sent = [
        json.loads(base64.b64decode(json.loads(raw)["body"]))[1]
        for raw in redis.lrange(queue, 0, -1)
    ]
    redis.delete(queue)
    run_ids = sorted(kwargs["run_id"] for kwargs in sent if kwargs["job"] in handles)
    assert run_ids == sorted(run_id for _, run_id in by_handle.values())
