"""The contract between the engine and the job kinds (issue 13): a kind's steps get a narrow
context, never a raw session or connection, and the log rows a step asks for are written by the
runner with the step's own commit, so a step done again after a worker died writes them once.

The runs go through the real runner against the real stores (SQLite and PostgreSQL); their
messages go to a queue of the test's own that no worker reads.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from jobengine import submit
from jobengine.engine import runner
from jobengine.kinds import KINDS, kind_for
from jobengine.kinds.base import AssetRef, JobKindHandler, RunContext
from jobengine.runtime import get_runtime
from jobengine.store.schema import Job, LogDetail, Run
from tests.support.helpers import directory_request, make_company
from tests.support.stack import apply_env

NO_FILES = "no files to upload in {folder}"


@pytest.fixture
def upload_queue(store_only: dict[str, str]) -> Iterator[str]:
    """UploadDirectoryJob routed to a fresh queue that no worker of the session reads."""
    queue = f"uploads-{uuid.uuid4().hex[:8]}"
    apply_env({**store_only, "JOBENGINE_QUEUES": f"upload_directory={queue}"})
    try:
        yield queue
    finally:
        os.environ.pop("JOBENGINE_QUEUES", None)
        apply_env(store_only)


@pytest.mark.parametrize("element", sorted(KINDS))
def test_a_kinds_steps_get_the_narrow_context_only(element: str) -> None:
    kind = KINDS[element]
    params = {
        step: list(inspect.signature(getattr(kind, step)).parameters)
        for step in ("check", "plan", "process", "finish", "cleanup")
    }
    assert params == {
        "check": ["reads", "job"],  # SubmitReads: the company, its assets and presets
        "plan": ["ctx"],
        "process": ["ctx", "item"],
        "finish": ["ctx", "stopped"],
        "cleanup": ["ctx"],
    }


def _context(run: Run, company: str) -> tuple[JobKindHandler[Any], RunContext[Any]]:
    """The kind of a run and a context for it, as a start builds them."""
    runtime = get_runtime()
    with runtime.store.read() as session:
        job = session.get(Job, run.job_id)
        assert job is not None
        kind = kind_for(job.kind)
        ids, names = (run.id, job.id, run.company_id), (company, run.run_name)
        return kind, kind.context(runtime, ids, names, job.payload)


def _rows(run_id: int, message_id: str) -> int:
    with get_runtime().store.read() as session:
        count = session.scalar(
            select(func.count())
            .select_from(LogDetail)
            .where(LogDetail.run_id == run_id, LogDetail.message_id == message_id)
        )
    return int(count or 0)


def _run_of(name: str) -> Run:
    with get_runtime().store.read() as session:
        run = session.scalar(select(Run).join(Job, Job.id == Run.job_id).where(Job.name == name))
    assert run is not None
    return run


def test_a_plans_log_rows_are_written_with_its_items_once(upload_queue: str) -> None:
    company, _ = make_company(0)
    name = f"Contract Plan {uuid.uuid4().hex[:6]}"
    submit(directory_request(company, "nothing-here", name))
    run = _run_of(name)
    # A start that planned and died before recording its items: its rows die with it.
    kind, ctx = _context(run, company)
    assert kind.plan(ctx) == []
    assert _rows(run.id, NO_FILES) == 0
    # The start sent again plans again; the plan's row is written once, with its (no) items.
    assert runner.start(run.id, "worker-a") == "done"
    assert _rows(run.id, NO_FILES) == 1
    assert _run_of(name).state == "Done"


def test_rows_asked_for_are_taken_once_in_order() -> None:
    ctx = RunContext[Any](get_runtime(), 1, 1, 1, "c", "run", {})
    ctx.log("UploadWarning", NO_FILES, folder="a")
    ctx.log("UploadError", "cannot upload {source}: {reason}", asset=AssetRef(handle="h"),
            source="s", reason="r")  # fmt: skip
    rows = ctx.take_log_rows()
    assert [(r.log_type, r.asset.handle, dict(r.args)) for r in rows] == [
        ("UploadWarning", None, {"folder": "a"}),
        ("UploadError", "h", {"source": "s", "reason": "r"}),
    ]
    assert ctx.take_log_rows() == []
