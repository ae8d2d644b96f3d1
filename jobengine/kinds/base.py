"""What a job kind is: how it checks a request, plans its items, does one item, and finishes.

The runner (``jobengine.engine.runner``) owns the lifecycle, the guards and the counters; a kind
only says what its work is. A kind is ``JobKindHandler[P]`` for its payload model ``P`` (e.g.
``JobKindHandler[ExportJob]``) and declares its :class:`~jobengine.model.JobKind` once; its
element, task slug and model are derived from it. Its steps get ``RunContext[P]``, whose
``job`` is the parsed payload of type ``P``. What happens after a run ends (the follow-on job,
the e-mail, the completion callback) is the engine's (:mod:`jobengine.engine.hooks`): a kind's
finish returns its follow-on as data (:class:`Finished`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import ARRAY, Connection, String, Table, any_, bindparam, func, select
from sqlalchemy.orm import Session

from jobengine.assets.catalog import company_presets
from jobengine.errors import IllegalCompany, InvalidParameter, LimitExceeded, log_reason
from jobengine.i18n import LogMessage
from jobengine.kinds.follow_on import FollowOn
from jobengine.model import JOB_MODELS, JobKind, parse_submit_job
from jobengine.runtime import Runtime
from jobengine.storage import StorageFull
from jobengine.store.hot import HotStatement, Sent, pipelines
from jobengine.store.runs import LogEntry, detached, finish_reads, stop_requested, write_log
from jobengine.store.schema import Asset, Folder, LogDetail, Run, SetPreset
from jobengine.store.users import Actor

__all__ = [
    "MAX_HANDLES",
    "AssetRef",
    "AssetRow",
    "Finished",
    "ItemOutcome",
    "JobKindHandler",
    "LogRow",
    "PlannedItem",
    "RunContext",
    "SubmitReads",
    "asset_gone",
    "asset_in_folder",
    "assets_found",
    "find_assets",
    "io_failure",
    "send_assets",
    "send_many_assets",
    "unique_handles",
]


@dataclass(frozen=True)
class PlannedItem:
    """One unit of work of a run (usually one asset).

    ``finish_follows``: the run's finish runs right after this item, in the same task, before
    anything of the item is recorded (a run of one item, done in its start task): a worker
    that dies in between leaves no trace of the item, so the item is done again, never
    finished from what it left. A kind may then hand its inputs to the finish where they lie
    instead of staging copies of them.
    """

    key: str
    label: str = ""
    finish_follows: bool = False


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
class LogRow:
    """A job log row a kind asked for (:meth:`RunContext.log`), waiting for the runner to write
    it with the step that made it."""

    log_type: str
    message_id: LogMessage
    asset: AssetRef
    args: Mapping[str, object]

    def write(self, session: Session, run: Run) -> None:
        """Add the row to ``run``'s log in ``session``'s transaction."""
        a = self.asset
        write_log(
            session,
            run,
            self.log_type,
            self.message_id,
            asset_name=a.name,
            asset_type=a.type,
            asset_handle=a.handle,
            **self.args,
        )

    def entry(self) -> LogEntry:
        """The row, for :func:`~jobengine.store.runs.write_logs` with others."""
        a = self.asset
        return LogEntry(self.log_type, self.message_id, self.args, a.name, a.type, a.handle)


P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Finished:
    """What a kind's finish comes to: the run's output description, and the follow-on job the
    engine submits for it (:mod:`jobengine.engine.hooks`), if any."""

    output: dict[str, Any] = field(default_factory=dict)
    follow_on: FollowOn | None = None


# The requests this process parsed last, by job id, with the stored request they came from:
# every item task of a fan-out parsed its whole request again (500 handles: about a
# millisecond an item). Used only for an equal request (comparing two dicts costs far less
# than parsing one), so a job id of another store is no confusion.
_PARSED: dict[int, tuple[dict[str, Any], BaseModel]] = {}
_PARSED_KEPT = 64


def _parsed_job(job_id: int, payload: dict[str, Any]) -> BaseModel:
    found = _PARSED.get(job_id)
    if found is not None and found[0] == payload:
        return found[1]
    if len(_PARSED) >= _PARSED_KEPT:
        _PARSED.clear()  # forget them all, no order to keep (and safe with threads)
    job = parse_submit_job(payload).job
    _PARSED[job_id] = (payload, job)
    return job


@dataclass(frozen=True)
class RunContext(Generic[P]):
    """The run a kind works on: ids, names, the parsed payload and the runtime, and the few
    things of the store a kind needs (its assets, its done items, a log row)."""

    runtime: Runtime
    run_id: int
    job_id: int
    company_id: int
    company_handle: str
    run_name: str
    payload: dict[str, Any]
    model: type[BaseModel] = BaseModel  # P itself (JobKindHandler.context sets it)
    _rows: list[LogRow] = field(default_factory=list, repr=False, compare=False)
    # The done items' results, when the runner read them already (in the transaction that
    # claimed the finish): done_items() answers from them instead of reading again.
    _done: list[list[dict[str, Any]]] = field(default_factory=list, repr=False, compare=False)
    # Assets the runner read in the transaction that claimed their items (to do them here):
    # asset() answers each once from them instead of a transaction of its own.
    _assets: dict[str, tuple[Asset, str] | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    @functools.cached_property
    def job(self) -> P:
        """The job-type payload (e.g. the ExportJob model) of this run's request."""
        job = _parsed_job(self.job_id, self.payload)
        if not isinstance(job, self.model):  # a job row always holds its own kind's payload
            raise TypeError(f"run {self.run_id}: {type(job).__name__} is no {self.model.__name__}")
        return cast(P, job)  # checked just above: the model is P

    def stop_requested(self) -> bool:
        """Whether the run has been stopped (stopJob, deleteJob) since it started: long
        conversions ask it while they work and end early (RunStopped)."""
        with self.runtime.store.read_now() as conn:  # one statement: no transaction
            return stop_requested(conn, self.run_id)

    @property
    def staging_key(self) -> str:
        """A private scratch folder of this run in storage."""
        return f"_staging/run-{self.run_id}"

    def asset(self, handle: str) -> tuple[Asset, str] | None:
        """The company's asset with this handle and its folder path, if it still exists."""
        if handle in self._assets:
            return self._assets.pop(handle)
        return asset_in_folder(self, handle)

    def read_assets(self, session: Session, handles: Iterable[str]) -> Callable[[], None]:
        """The runner's: read the assets of items it claimed to do right away, in the
        transaction that claimed them (as :meth:`asset` would a moment later). The reads are
        sent (in a :func:`~jobengine.store.hot.pipelined` block, with its other statements);
        the function returned takes their rows once they are back (after the block)."""
        conn = session.connection()
        sent = [
            (handle, _ASSET_IN_FOLDER.send(conn, {"handle": handle, "company": self.company_id}))
            for handle in handles
        ]

        def keep() -> None:
            for handle, read in sent:
                self._assets[handle] = _asset_of(next(iter(read.all()), None))

        return keep

    def done_items(self) -> list[dict[str, Any]]:
        """The results of the run's items that ended ``done``, in item order."""
        if self._done:
            return [dict(result) for result in self._done[-1]]
        with self.runtime.store.read() as session:
            return finish_reads(session, self.run_id)[1]

    def known_done_items(self, results: list[dict[str, Any]]) -> None:
        """The runner's: the done items' results as the transaction claiming the finish read
        them (nothing can change them after that: every item has ended)."""
        self._done[:] = [results]

    def logged(self, message_id: LogMessage) -> int:
        """How many log rows of this run say ``message_id``."""
        with self.runtime.store.read() as session:
            count = session.scalar(
                select(func.count())
                .select_from(LogDetail)
                .where(LogDetail.run_id == self.run_id, LogDetail.message_id == message_id)
            )
        return int(count or 0)

    def log(
        self,
        log_type: str,
        message_id: LogMessage,
        *,
        asset: AssetRef | None = None,
        **args: object,
    ) -> None:
        """Add one JobLogDetail row to this run (``args`` fill ``message_id``). The row is
        written by the runner in the transaction that ends the step which asked for it (the
        plan's items, the item's outcome, the run's end): a step run again after a worker died
        writes its rows once, and a step that fails writes none."""
        self._rows.append(LogRow(log_type, message_id, asset or AssetRef(), dict(args)))

    def take_log_rows(self) -> list[LogRow]:
        """The rows asked for since the last call, in order (the runner writes them)."""
        rows, self._rows[:] = list(self._rows), []
        return rows


MAX_HANDLES = 1000  # assets in one job's handle list (IPS's default for asset lists)
_ASSET_COLUMNS = (Asset.handle, Asset.company_id, Asset.type, Asset.size)
_ASSETS = select(*_ASSET_COLUMNS).where(Asset.handle.in_(bindparam("handles", expanding=True)))
_FEW = 32  # up to this many handles, a statement compiled once per count (submit's hot path)
# psycopg: the handles as one array, the statement's text the same for any number of them
_ASSETS_ANY = HotStatement(
    select(*_ASSET_COLUMNS).where(Asset.handle == any_(bindparam("handles", type_=ARRAY(String))))
)


class AssetRow(NamedTuple):
    """What the submit checks know of an asset: its owner, type and size (a tuple: made for
    every handle of every submit)."""

    handle: str
    company_id: int
    type: str
    size: int


@functools.lru_cache(maxsize=_FEW)
def _assets_by_handles(count: int) -> HotStatement:
    """The asset lookup for exactly ``count`` handles, as a HotStatement."""
    return HotStatement(
        select(*_ASSET_COLUMNS).where(Asset.handle.in_([bindparam(f"h{n}") for n in range(count)]))
    )


def find_assets(db: Connection, handles: list[str]) -> dict[str, AssetRow]:
    """The assets these handles name (any company's), by handle: the one asset lookup of every
    kind's submit checks."""
    if len(handles) <= _FEW:
        rows = _assets_by_handles(len(handles)).all(db, _few(handles)) if handles else []
    elif pipelines(db):  # the handles as one array (one statement's text for any count)
        rows = _ASSETS_ANY.all(db, {"handles": handles})
    else:
        rows = [tuple(row) for row in db.execute(_ASSETS, {"handles": handles})]
    return _asset_rows(rows)


def _few(handles: list[str]) -> dict[str, str]:
    """The parameters of :func:`_assets_by_handles`."""
    return {f"h{n}": handle for n, handle in enumerate(handles)}


def _asset_rows(rows: Iterable[Sequence[Any]]) -> dict[str, AssetRow]:
    return {str(h): AssetRow(str(h), int(c), str(t), int(z or 0)) for h, c, t, z in rows}


def send_assets(db: Connection, handles: list[str]) -> Sent:
    """:func:`find_assets`'s statement for up to ``MAX_HANDLES`` handles sent, its rows read
    later (:func:`assets_found`): in a :func:`~jobengine.store.hot.pipelined` block it goes
    to the server with the block's other statements (psycopg: the handles as one array past
    a few)."""
    if len(handles) <= _FEW:
        return _assets_by_handles(len(handles)).send(db, _few(handles))
    return _ASSETS_ANY.send(db, {"handles": handles})


def send_many_assets(db: Connection, handles: list[str]) -> list[Sent]:
    """:func:`send_assets` of any number of handles, in statements of up to ``MAX_HANDLES``
    (a batch's, all its companies' at once: a check then finds its own among them)."""
    return [send_assets(db, handles[i : i + MAX_HANDLES])
            for i in range(0, len(handles), MAX_HANDLES)]  # fmt: skip


def assets_found(sent: list[Sent]) -> dict[str, AssetRow]:
    """The assets the statements of :func:`send_many_assets` found, by handle."""
    return _asset_rows(row for lookup in sent for row in lookup.all())


def unique_handles(handles: Iterable[Any]) -> list[str]:
    """The handles in order, each once."""
    return list(dict.fromkeys(map(str, handles)))


_PRESET_OWNERS = select(SetPreset.id, SetPreset.company_id).where(
    SetPreset.id.in_(bindparam("ids", expanding=True))
)


class SubmitReads:
    """What a kind's submit checks may read of the catalog: the submitting company, its assets
    and its presets, in the submit's own transaction (Core statements on its connection: the
    hot path). A check reads nothing else and writes nothing.

    A batch (``submit_many``) shares one per company and looks the assets of all its requests
    up at once (:meth:`prefetch`); a check then finds its assets without a statement of its own.
    """

    __slots__ = ("_db", "_found", "_looked_up", "_wanted", "company_handle", "company_id")

    def __init__(self, db: Connection, actor: Actor) -> None:
        self._db = db
        self.company_id = actor.company_id
        self.company_handle = actor.company_handle  # as stored
        self._found: dict[str, AssetRow] = {}
        self._looked_up: set[str] = set()  # handles looked up already, found or not
        self._wanted: dict[str, None] = {}  # handles to look up at the next prefetch, in order

    def want(self, handles: Iterable[str]) -> None:
        """Note handles for :meth:`prefetch` (a batch gathers those of all its requests)."""
        self._wanted.update(dict.fromkeys(handles))

    def prefetch(self, handles: Iterable[str] = ()) -> None:
        """Look up the handles wanted and these now, in statements of up to ``MAX_HANDLES``."""
        self.want(handles)
        wanted = [h for h in self._wanted if h not in self._looked_up]
        self._wanted = {}
        for i in range(0, len(wanted), MAX_HANDLES):
            chunk = wanted[i : i + MAX_HANDLES]
            self._found.update(find_assets(self._db, chunk))
            self._looked_up.update(chunk)

    def known(self, handles: Iterable[str], rows: Iterable[tuple[str, int, str, int]]) -> None:
        """Record ``handles`` as looked up already, found as ``rows`` (handle, company id,
        type, size): submit() reads them with the company, in its one read."""
        self._found.update((row[0], AssetRow(*row)) for row in rows)
        self._looked_up.update(handles)

    def assets(self, handles: list[str]) -> dict[str, AssetRow]:
        """The assets these handles name (any company's), by handle."""
        missing = [h for h in handles if h not in self._looked_up]
        if missing:
            if len(missing) == len(handles):  # nothing prefetched: the one-request hot path
                return find_assets(self._db, handles)
            self.prefetch(missing)
        return {h: self._found[h] for h in handles if h in self._found}

    def check_handles(
        self, handles: list[str], path: str, *, asset_type: str | None = None
    ) -> None:
        """Every handle names an asset of the company (of ``asset_type`` if given)."""
        if len(handles) > MAX_HANDLES:
            raise LimitExceeded(
                f"{path} holds {len(handles)} assets; at most {MAX_HANDLES} are allowed",
                field=path,
            )
        found = self.assets(handles)
        for handle in handles:
            owner = found.get(handle)
            if owner is None:
                raise InvalidParameter(f"unknown assetHandle {handle!r}", field=path)
            if owner.company_id != self.company_id:
                raise IllegalCompany(f"asset {handle!r} belongs to another company", field=path)
            if asset_type is not None and owner.type != asset_type:
                raise InvalidParameter(
                    f"asset {handle!r} is of type {owner.type}, not {asset_type}", field=path
                )

    def image_presets(self) -> dict[str, str]:
        """The company's own image presets (name -> definition)."""
        return company_presets(self._db, self.company_id)

    def set_preset_owners(self, ids: list[int]) -> dict[int, int]:
        """The company id of each of these set presets that exists, by preset id."""
        rows = self._db.execute(_PRESET_OWNERS, {"ids": ids})
        return {int(preset_id): int(company_id) for preset_id, company_id in rows}


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


_ASSET_TABLE = cast(Table, Asset.__table__)
_FOLDER_TABLE = cast(Table, Folder.__table__)
_ASSET_KEYS = [c.key for c in _ASSET_TABLE.c]
# Every item of most kinds reads its asset: a prebuilt statement, its row made into a
# transient Asset (read, never changed through it) without the ORM's query and loading.
_ASSET_IN_FOLDER = HotStatement(
    select(*_ASSET_TABLE.c, _FOLDER_TABLE.c.path)
    .join(_FOLDER_TABLE, _FOLDER_TABLE.c.id == _ASSET_TABLE.c.folder_id)
    .where(
        _ASSET_TABLE.c.handle == bindparam("handle"),
        _ASSET_TABLE.c.company_id == bindparam("company"),
    ),
    typed=True,
)


def asset_in_folder(ctx: RunContext[Any], handle: str) -> tuple[Asset, str] | None:
    """The company's asset with this handle and its folder path, if it still exists (one
    statement: on PostgreSQL one round trip, without a transaction's BEGIN and COMMIT)."""
    with ctx.runtime.store.read_now() as conn:
        row = _ASSET_IN_FOLDER.first(conn, {"handle": handle, "company": ctx.company_id})
    return _asset_of(row)


def _asset_of(row: tuple[Any, ...] | None) -> tuple[Asset, str] | None:
    """An asset and its folder path from a row of ``_ASSET_IN_FOLDER``."""
    if row is None:
        return None
    return detached(Asset, _ASSET_KEYS, row[:-1]), str(row[-1])


class JobKindHandler(Generic[P]):
    """Base of the job kinds, generic in the kind's payload model ``P``. A kind sets ``kind``
    (its one declaration: ``element``, ``slug`` and ``model`` follow from it) and the other
    class attributes, and overrides the steps."""

    kind: ClassVar[JobKind]  # e.g. JobKind.EXPORT
    element: ClassVar[str]  # derived: the submitJob element, e.g. "exportJob"
    slug: ClassVar[str]  # derived: the task name part, e.g. "export" -> jobengine.export.item
    job_type: ClassVar[str]  # the Job Types constant shown by getActiveJobs, e.g. "Export"
    begin_log: ClassVar[str]
    end_log: ClassVar[str]
    # plan() reads only the request (no I/O, no catalog): the runner plans in the transaction
    # that claims the start, saving two
    plans_from_request: ClassVar[bool] = False
    # its items' keys are asset handles, whose process() reads ctx.asset(item.key) first: a run
    # planned and done right in its start task reads them in the transaction that claims it
    items_are_assets: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if isinstance(kind, JobKind):  # a concrete kind (bases such as PublishKind have none)
            cls.element = kind.element
            cls.slug = kind.attribute.removesuffix("_job")

    @property
    def model(self) -> type[P]:
        """The kind's payload model (``ExportJob``), from the request model's own table."""
        return cast("type[P]", JOB_MODELS[self.kind])

    def context(
        self,
        runtime: Runtime,
        ids: tuple[int, int, int],
        names: tuple[str, str],
        payload: dict[str, Any],
    ) -> RunContext[P]:
        """The context of one run of this kind: (run, job, company) ids, (company handle,
        run name) and the stored request."""
        run_id, job_id, company_id = ids
        return RunContext[P](runtime, run_id, job_id, company_id, *names, payload, self.model)

    def check(self, reads: SubmitReads, job: P) -> None:
        """Submit-time checks of a request that need the catalog (handles exist, limits), read
        through ``reads``. Raise IpsFault."""

    def asset_handles(self, job: P) -> list[str]:
        """The asset handles a request names, looked up for a whole batch at once before the
        batch's checks run (:meth:`SubmitReads.prefetch`); none by default."""
        return []

    def plan(self, ctx: RunContext[P]) -> list[PlannedItem]:
        """The items of a run, in order; log rows (``ctx.log``) for anything skipped. Its
        items and rows are recorded together; it may run again if a worker dies first."""
        raise NotImplementedError

    def process(self, ctx: RunContext[P], item: PlannedItem) -> ItemOutcome:
        """Do one item. Must be idempotent: it may run again after a worker dies."""
        raise NotImplementedError

    def finish(self, ctx: RunContext[P], stopped: bool) -> Finished:
        """Join the items' results; returns the run's output description (and its follow-on).

        Must be idempotent: a finish killed before the end of its run was committed runs again,
        with the same inputs (nothing staged is removed before that commit). Write outputs
        atomically under a name of the run's own, so that a second write replaces the first.
        """
        return Finished()

    def cleanup(self, ctx: RunContext[P]) -> None:
        """Remove what the run staged; called once its end is committed (best effort: the
        janitor sweeps what a killed worker left)."""
