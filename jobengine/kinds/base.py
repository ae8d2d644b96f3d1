"""What a job kind is: how it checks a request, plans its items, does one item, and finishes.

The runner (``jobengine.engine.runner``) owns the lifecycle, the guards and the counters; a kind
only says what its work is. Each kind has its own Celery task module in ``tasks/``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from jobengine.errors import IllegalCompany, InvalidParameter, LimitExceeded, log_reason
from jobengine.i18n import LogMessage
from jobengine.runtime import Runtime
from jobengine.storage import StorageFull
from jobengine.store.runs import write_log
from jobengine.store.schema import Asset, Folder, Run

__all__ = [
    "MAX_HANDLES",
    "AssetRef",
    "ItemOutcome",
    "JobKindHandler",
    "PlannedItem",
    "RunContext",
    "asset_gone",
    "asset_in_folder",
    "check_asset_handles",
    "io_failure",
    "unique_handles",
]


@dataclass(frozen=True)
class PlannedItem:
    """One unit of work of a run (usually one asset)."""

    key: str
    label: str = ""


@dataclass(frozen=True)
class AssetRef:
    """The asset a log row is about."""

    name: str | None = None
    type: str | None = None
    handle: str | None = None

    @classmethod
    def of(cls, asset: Asset) -> AssetRef:
        return cls(asset.name, asset.type, asset.handle)


@dataclass(frozen=True)
class ItemOutcome:
    """What doing one item came to, with the log row that tells it: a message id and its
    arguments (see :func:`jobengine.store.runs.write_log`)."""

    status: Literal["success", "warning", "error"]
    log_type: str
    message_id: LogMessage
    asset: AssetRef = AssetRef()
    size: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    args: Mapping[str, object] = field(default_factory=dict)
    # also counted as a duplicate (JobLog fileDuplicateCount) or an update (fileUpdateCount)
    tally: Literal["duplicate", "update"] | None = None


@dataclass(frozen=True)
class RunContext:
    """The run a kind works on: ids, names, the parsed payload and the runtime."""

    runtime: Runtime
    run_id: int
    job_id: int
    company_id: int
    company_handle: str
    run_name: str
    payload: dict[str, Any]

    @functools.cached_property
    def job(self) -> BaseModel:
        """The job-type payload (e.g. the ExportJob model) of this run's request."""
        from jobengine.model import parse_submit_job

        job: BaseModel = parse_submit_job(self.payload).job
        return job

    def stop_requested(self) -> bool:
        """Whether the run has been stopped (stopJob, deleteJob) since it started: long
        conversions ask it while they work and end early (RunStopped)."""
        with self.runtime.store.read() as session:
            return bool(session.scalar(select(Run.stop_requested).where(Run.id == self.run_id)))

    @property
    def staging_key(self) -> str:
        """A private scratch folder of this run in storage."""
        return f"_staging/run-{self.run_id}"

    def log(
        self,
        session: Session,
        log_type: str,
        message_id: LogMessage,
        *,
        asset: AssetRef | None = None,
        **args: object,
    ) -> None:
        """Write one JobLogDetail row for this run (``args`` fill ``message_id``)."""
        run = session.get(Run, self.run_id)
        assert run is not None
        asset = asset or AssetRef()
        write_log(
            session,
            run,
            log_type,
            message_id,
            asset_name=asset.name,
            asset_type=asset.type,
            asset_handle=asset.handle,
            **args,
        )


MAX_HANDLES = 1000  # assets in one job's handle list (IPS's default for asset lists)
_OWNERS = select(Asset.handle, Asset.company_id, Asset.type).where(
    Asset.handle.in_(bindparam("handles", expanding=True))
)


def unique_handles(handles: Iterable[Any]) -> list[str]:
    """The handles in order, each once."""
    return list(dict.fromkeys(str(h) for h in handles))


def check_asset_handles(
    db: Connection, company_id: int, handles: list[str], path: str, *, asset_type: str | None = None
) -> None:
    """Submit-time: every handle names an asset of the company (of ``asset_type`` if given)."""
    if len(handles) > MAX_HANDLES:
        raise LimitExceeded(
            f"{path} holds {len(handles)} assets; at most {MAX_HANDLES} are allowed", field=path
        )
    found = {str(h): (int(c), str(t)) for h, c, t in db.execute(_OWNERS, {"handles": handles})}
    for handle in handles:
        owner = found.get(handle)
        if owner is None:
            raise InvalidParameter(f"unknown assetHandle {handle!r}", field=path)
        if owner[0] != company_id:
            raise IllegalCompany(f"asset {handle!r} belongs to another company", field=path)
        if asset_type is not None and owner[1] != asset_type:
            raise InvalidParameter(
                f"asset {handle!r} is of type {owner[1]}, not {asset_type}", field=path
            )


def io_failure(log_type: str, ref: AssetRef, name: str, error: OSError) -> ItemOutcome:
    """The error outcome of a file that could not be copied, read or stored: a full storage is
    told as what it is, a failed write (not "cannot read")."""
    if isinstance(error, StorageFull):
        full = {"name": name}
        return ItemOutcome(
            "error", log_type, "no space left on device writing {name}", ref, args=full
        )
    unread = {"name": name, "error": log_reason(error)}  # no path or key: the worker log has it
    return ItemOutcome("error", log_type, "cannot read {name}: {error}", ref, args=unread)


def asset_gone(handle: str, log_type: str) -> ItemOutcome:
    """The error outcome of an item whose asset was deleted after the run was planned."""
    args = {"asset": handle}
    return ItemOutcome(
        "error", log_type, "asset {asset} no longer exists", AssetRef(handle=handle), args=args
    )


def asset_in_folder(ctx: RunContext, handle: str) -> tuple[Asset, str] | None:
    """The company's asset with this handle and its folder path, if it still exists."""
    with ctx.runtime.store.read() as session:
        row = session.execute(
            select(Asset, Folder.path)
            .join(Folder, Folder.id == Asset.folder_id)
            .where(Asset.handle == handle, Asset.company_id == ctx.company_id)
        ).first()
    return None if row is None else (row[0], row[1])


class JobKindHandler:
    """Base of the job kinds. Subclasses set the class attributes and override the steps."""

    element: ClassVar[str]  # the submitJob element, e.g. "exportJob"
    job_type: ClassVar[str]  # the Job Types constant shown by getActiveJobs, e.g. "Export"
    slug: ClassVar[str]  # the task name part, e.g. "export" -> jobengine.export.item
    begin_log: ClassVar[str]
    end_log: ClassVar[str]
    # plan() reads only the request (no I/O, no catalog): the runner plans in the transaction
    # that claims the start, saving two
    plans_from_request: ClassVar[bool] = False

    def check(self, db: Connection, company_id: int, job: Any) -> None:
        """Submit-time checks that need the catalog (handles exist, limits). Raise IpsFault.

        ``db`` is the submit transaction's connection: Core statements only (hot path).
        """

    def plan(self, ctx: RunContext, session: Session) -> list[PlannedItem]:
        """The items of a run, in order; log rows for anything skipped. Runs once per run."""
        raise NotImplementedError

    def process(self, ctx: RunContext, item: PlannedItem) -> ItemOutcome:
        """Do one item. Must be idempotent: it may run again after a worker dies."""
        raise NotImplementedError

    def finish(self, ctx: RunContext, session: Session, stopped: bool) -> dict[str, Any]:
        """Join the items' results; returns the run's output description.

        Must be idempotent: a finish killed before the end of its run was committed runs again,
        with the same inputs (nothing staged is removed before that commit). Write outputs
        atomically under a name of the run's own, so that a second write replaces the first.
        """
        return {}

    def cleanup(self, ctx: RunContext) -> None:
        """Remove what the run staged; called once its end is committed (best effort: the
        janitor sweeps what a killed worker left)."""
