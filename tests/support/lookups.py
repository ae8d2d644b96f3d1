"""What a finished job left in the store and storage: its run, its assets, its pyramids."""

from __future__ import annotations

import time
from typing import Any

from PIL import Image
from sqlalchemy import select

from jobengine.assets.catalog import company_by_handle
from jobengine.kinds import RunContext
from jobengine.runtime import get_runtime
from jobengine.store.schema import Asset, Company, Folder, Job, Run

TILE_WIDTH = 322  # the TIFF tag


def asset(handle: str) -> Asset:
    """The asset row of ``handle``."""
    with get_runtime().store.read() as session:
        found = session.scalar(select(Asset).where(Asset.handle == handle))
    assert found is not None
    return found


def pyramid_levels(key: str) -> list[tuple[tuple[int, int], int | None]]:
    """The (size, tile width) of each level of the pyramid TIFF stored at ``key``."""
    with Image.open(get_runtime().storage.path(key)) as img:
        found = []
        for index in range(img.n_frames):
            img.seek(index)
            found.append((img.size, img.tag_v2.get(TILE_WIDTH)))
    return found


def assets_in(company: str, folder: str = "/docs") -> dict[str, Asset]:
    """The company's assets in ``folder``, by name."""
    with get_runtime().store.read() as session:
        owner = company_by_handle(session, company)
        rows = session.scalars(
            select(Asset)
            .join(Folder, Folder.id == Asset.folder_id)
            .where(Asset.company_id == owner.id, Folder.path == folder)
        ).all()
    return {a.name: a for a in rows}


def run_context(company: str, run_name: str) -> RunContext:
    """The context the worker gave the items of a finished run."""
    with get_runtime().store.read() as session:
        run = session.scalar(select(Run).where(Run.run_name == run_name))
        assert run is not None
        job = session.get(Job, run.job_id)
        assert job is not None
        owner = company_by_handle(session, company)
        ids, payload = (run.id, job.id, owner.id), job.payload
    return RunContext(get_runtime(), *ids, company, run_name, payload)


def stored_run(run_id: int) -> Run:
    """The run row ``run_id`` as the store holds it now."""
    with get_runtime().store.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def run_of(company: str, log: Any) -> Run:
    """The run row behind a job log (``stack.wait``'s answer)."""
    with get_runtime().store.read() as session:
        run = session.scalar(
            select(Run)
            .join(Company, Company.id == Run.company_id)
            .where(Company.handle == company, Run.run_name == log.job_name)
        )
        assert run is not None
        return run


def settled(run_id: int, timeout: float = 15) -> Run:
    """The run once its callback is settled (not unlooked-at, not being sent)."""
    deadline = time.monotonic() + timeout
    while True:
        run = stored_run(run_id)
        if run.callback_state not in (None, "sending") or time.monotonic() > deadline:
            return run
        time.sleep(0.05)
