"""The engine's hooks around a run's end (jobengine/engine/hooks.py) and the kinds table they rely
on: each hook isolated from the others, the follow-on submitted once however often a finish runs,
and every name of a kind derived from ``KINDS``."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from jobengine import submit
from jobengine.celery_app import app
from jobengine.engine import hooks
from jobengine.engine.celery_config import TASK_MODULES
from jobengine.engine.hooks import CallbackHook, EndedJob, FollowOnHook, NoticeHook, RunHook
from jobengine.engine.taskkit import kind_tasks
from jobengine.errors import StoreUnavailable
from jobengine.kinds import KINDS, kind_for, task_modules
from jobengine.kinds.base import Finished, RunContext
from jobengine.kinds.follow_on import follow_on
from jobengine.kinds.upload_directory import upload_root
from jobengine.model import JOB_MODELS
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from jobengine.store.schema import Job, Run

ROOT = Path(__file__).resolve().parents[2]


class _Recorder(RunHook):
    def __init__(self, name: str, seen: list[str], *, fails: Exception | None = None) -> None:
        self.name, self.seen, self.fails = name, seen, fails

    def before_end(self, ctx: RunContext[Any], finished: Finished) -> Mapping[str, Any]:
        self.seen.append(f"{self.name}: before")
        if self.fails is not None:
            raise self.fails
        return {self.name: True}

    def after_end(self, run_id: int) -> None:
        self.seen.append(f"{self.name}: after {run_id}")
        if self.fails is not None:
            raise self.fails


def test_a_failing_hook_never_stops_the_others(store_only, caplog) -> None:
    seen: list[str] = []
    chain = (
        _Recorder("first", seen),
        _Recorder("broken", seen, fails=RuntimeError("boom")),
        _Recorder("last", seen),
    )
    ctx: RunContext[Any] = RunContext(get_runtime(), 7, 7, 7, "c", "run", {})
    with caplog.at_level(logging.ERROR, logger="jobengine.engine.hooks"):
        output = hooks.before_end(ctx, Finished({"zip": "k"}), chain)
        hooks.after_end(7, chain)
    assert output == {"zip": "k", "first": True, "last": True}
    assert seen == [
        "first: before",
        "broken: before",
        "last: before",
        "first: after 7",
        "broken: after 7",
        "last: after 7",
    ]
    assert [r.getMessage() for r in caplog.records] == ["run 7: the broken hook failed"] * 2


class _Unwanted(_Recorder):
    def wanted(self, job: EndedJob) -> bool:
        return False


def test_hooks_a_job_never_asks_for_are_skipped_when_the_caller_knows_the_job() -> None:
    """The runner passes the job it loaded: no e-mail check for emailSetting None, no callback
    check without a completion URL (the reads they cost); other callers run every hook."""
    quiet = EndedJob("exportJob", {"exportJob": {"fmt": "orig", "emailSetting": "None"}})
    silent = EndedJob("exportJob", {"exportJob": {"fmt": "orig"}})  # no emailSetting: None
    asking = EndedJob(
        "imageServingPublishJob",
        {"imageServingPublishJob": {"emailSetting": "Error",
                                    "httpCompletionUrl": "https://hooks.example/p"}},
    )  # fmt: skip
    for job in (quiet, silent):
        assert not NoticeHook().wanted(job) and not CallbackHook().wanted(job)
    assert NoticeHook().wanted(asking) and CallbackHook().wanted(asking)
    for setting in ("All", "JobCompletion", "Error", "ErrorAndWarning"):
        assert NoticeHook().wanted(EndedJob("k", {"k": {"emailSetting": setting}}))
    assert CallbackHook().wanted(EndedJob("u", {"u": {"postHttpUrl": "https://hooks.example/u"}}))
    seen: list[str] = []
    chain = (_Recorder("kept", seen), _Unwanted("skipped", seen))
    hooks.after_end(7, chain, job=quiet)
    assert seen == ["kept: after 7"]
    hooks.after_end(8, chain)  # the job unknown: every hook, each reads what it needs
    assert seen == ["kept: after 7", "kept: after 8", "skipped: after 8"]


def test_a_store_outage_before_the_end_leaves_the_finish(store_only) -> None:
    seen: list[str] = []
    down = _Recorder("down", seen, fails=StoreUnavailable("the job store is unreachable"))
    ctx: RunContext[Any] = RunContext(get_runtime(), 7, 7, 7, "c", "run", {})
    with pytest.raises(StoreUnavailable):  # the finishing step runs again once it answers
        hooks.before_end(ctx, Finished(), (down, _Recorder("next", seen)))
    assert seen == ["down: before"]


def test_the_follow_on_is_submitted_once_when_the_finish_runs_again(stack) -> None:
    company, _ = stack.company(0)
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    (storage.root / upload_root(company) / "empty").mkdir(parents=True)
    job = {
        "serverDir": "empty",
        "overwrite": False,
        "readyForPublish": False,
        "includeSubfolders": False,
        "createMask": False,
        "processMetadataFiles": False,
        "emailSetting": "None",
        "postImageServingPublishJob": {"publishType": "Full", "emailSetting": "None"},
    }
    request = {"companyHandle": company, "jobName": "Twice", "uploadDirectoryJob": job}
    log = stack.wait(company, submit(request, user=f"{company}@example.com"))
    first = log.output["followOn"]
    assert first == f"{company}|Twice_Pub|"
    with get_runtime().store.read() as session:
        run, row = session.execute(
            select(Run, Job).join(Job, Job.id == Run.job_id).where(Run.run_name == log.job_name)
        ).one()
        kind = kind_for(row.kind)
        ids, names = (run.id, row.id, run.company_id), (company, run.run_name)
        ctx = kind.context(get_runtime(), ids, names, row.payload)
    again = FollowOnHook().before_end(ctx, Finished(follow_on=follow_on(ctx.job)))
    assert again == {"followOn": first}  # the job the first finish submitted
    with get_runtime().store.read() as session:
        marked = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.description == f"follow-on of {run.run_name}")
        )
    assert marked == 1


def test_every_name_of_a_kind_comes_from_its_job_kind() -> None:
    for element, kind in KINDS.items():
        assert element == kind.kind.element == kind.element
        assert kind.slug == kind.kind.attribute.removesuffix("_job")
        assert kind.model is JOB_MODELS[kind.kind]
    slugs = [kind.slug for kind in KINDS.values()]
    assert TASK_MODULES == task_modules() == [f"jobengine.tasks.{slug}" for slug in slugs]
    on_disk = {p.stem for p in (ROOT / "tasks").glob("*.py") if p.stem != "__init__"}
    assert on_disk == set(slugs)  # one task module per kind, none without a kind
    for slug in slugs:
        module = importlib.import_module(f"jobengine.tasks.{slug}")
        names = [module.start.name, module.item.name, module.finish.name]
        assert names == [f"jobengine.{slug}.{step}" for step in ("start", "item", "finish")]
        assert all(name in app.tasks for name in names)
    with pytest.raises(KeyError):
        kind_tasks("jobengine.tasks.no_such_kind")
