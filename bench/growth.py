"""Growth: submit() latency and the read operations as the store grows from 1,000 to 1,000,000 runs.

    .venv/bin/python bench/growth.py [--max 1000000] [--submits 200] [--repeat 25]
    .venv/bin/python bench/growth.py --plot    # docs/growth.png from bench/results/growth-*.json

The store (SQLite file of the run's own, or ``BENCH_DATABASE_URL``: give it a database of its
own, the bench fills it) is made by the project's migrations, then filled in steps of 1k, 10k,
100k and 1M runs (``--max`` stops earlier). The bulk goes in with the DBAPI's bulk path
(SQLite ``executemany`` of prepared inserts, PostgreSQL ``COPY``), not through submit(), in
the real schema: eight companies (the first holds half the runs), each run a one-shot
ExportJob with its job row, its items and its job log (begin, one row per asset, end; one run
in twenty exports 30 assets, the others one); 94% Done, 4% Failed, 2% Stopped, and 10 runs per
company always Running. Runs are 25 s apart, the newest now.

At each step, for the biggest company, as an IPS client would ask:

* ``submit()``: a real submission of a 3-asset ExportJob (embedded Redis), p50 and p95;
* ``getJobLogs``: the company's latest 100 job logs (sortBy StartDate, Descending, numRows 100);
* ``getJobLogDetails``: one run's job log with the first page (100) of its detail rows, for a
  run picked at random each call;
* ``getActiveJobs``: the company's runs in progress;
* the store's size on disk (SQLite: the file after a WAL checkpoint; PostgreSQL:
  ``pg_database_size``).

The reference is the same measurement on a second store of the same backend kept at 1k runs
(SQLite: a file beside the first; PostgreSQL: a database ``<name>_ref``, created and dropped
here), taken in turns with the growing store's (ten submits, or one read, at a time) so that
the shared machine's load, which changes, weighs on both alike. Each step prints the ratio
(time at N / time at 1k); flat is the goal. ``--plans`` prints the query plans of the
operations' statements at the last step. Results go to bench/results/growth-<backend>.json,
and the plot of every backend's results to docs/growth.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PLOT = HERE.parent / "docs" / "growth.png"
STEPS = (1_000, 10_000, 100_000, 1_000_000)
COMPANIES = 8
RUNNING_PER_COMPANY = 10
SPACING = timedelta(seconds=25)
CHUNK = 20_000  # runs per bulk transaction
BIG = 30  # assets of one run in twenty

Row = tuple[Any, ...]


def _company_of(i: int) -> int:
    """Company index of run ``i``: the first holds every other run, the rest share the others."""
    return 0 if i % 2 == 0 else 1 + (i // 2) % (COMPANIES - 1)


def _assets_of(i: int) -> int:
    return BIG if i % 20 == 7 else 1


def _state_of(i: int) -> str:
    # the first RUNNING_PER_COMPANY runs of each company (even runs are the first company's)
    if i < (2 * RUNNING_PER_COMPANY if i % 2 == 0 else 2 * RUNNING_PER_COMPANY * (COMPANIES - 1)):
        return "Running"
    r = i % 50
    return "Failed" if r < 2 else "Stopped" if r == 2 else "Done"


class Fill:
    """Writes runs ``start``..``stop`` with their jobs, items and logs, through the DBAPI."""

    JOB_COLS = ("id", "company_id", "live_key", "handle", "name", "kind", "payload",
                "submit_user_id", "run_as_user_id", "locale", "description", "exec_time",
                "exec_schedule", "time_zone", "trigger_state", "next_fire_at", "fired_through",
                "created_at", "deleted_at", "client")  # fmt: skip
    RUN_COLS = ("id", "job_id", "company_id", "run_name", "fire_key", "task_id", "state",
                "dispatched_at", "started_at", "ended_at", "planned", "stop_requested", "paused",
                "total_items", "finished_items", "success_count", "error_count",
                "warning_count", "duplicate_count", "update_count", "total_size", "progress",
                "progress_message", "last_progress_update", "fatal_error", "output",
                "created_at", "notified_at", "callback_state")  # fmt: skip
    ITEM_COLS = ("id", "run_id", "seq", "key", "state", "attempts", "claimed_by", "result")
    LOG_COLS = ("id", "run_id", "company_id", "log_type", "message", "message_id",
                "message_args", "asset_name", "asset_type", "asset_handle",
                "created_at")  # fmt: skip

    def __init__(self, store: Any, companies: list[dict[str, Any]], newest: datetime) -> None:
        self.store = store
        self.companies = companies
        self.newest = newest
        self.dialect = store.engine.dialect.name
        self.ids: dict[str, int] = {}

    def _max_id(self, table: str) -> int:
        with self.store.engine.connect() as conn:
            value = conn.exec_driver_sql(f"SELECT max(id) FROM {table}").scalar()
            conn.rollback()
        return int(value or 0)

    def _time(self, value: datetime | None) -> Any:
        if value is None or self.dialect != "sqlite":
            return value
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite storage format

    def _flag(self, value: bool) -> Any:
        return int(value) if self.dialect == "sqlite" else value

    def rows(self, start: int, stop: int, last: int) -> dict[str, list[Row]]:
        """The rows of runs start..stop; run ``last - 1`` is the newest (created now)."""
        from jobengine.handles import job_handle

        t = self._time
        out: dict[str, list[Row]] = {"jobs": [], "runs": [], "run_items": [], "log_details": []}
        ids = self.ids
        for i in range(start, stop):
            company = self.companies[_company_of(i)]
            cid = company["id"]
            created = self.newest - SPACING * (last - 1 - i)
            started = created + timedelta(seconds=1)
            state = _state_of(i)
            n = _assets_of(i)
            ended = None if state == "Running" else started + timedelta(seconds=n * 0.4)
            name = f"Growth {i}"
            run_name = f"{name}_{created:%Y-%m-%d-%H:%M:%S}"
            assets = company["assets"]
            handles = [assets[k % len(assets)] for k in range(n)]
            ids["jobs"] += 1
            ids["runs"] += 1
            job_id, run_id = ids["jobs"], ids["runs"]
            payload = {"ExportJob": {"assetHandleArray": {"items": handles}, "fmt": "orig",
                                     "emailSetting": "None"}}  # fmt: skip
            out["jobs"].append((
                job_id, cid, None, job_handle(company["handle"], name), name, "ExportJob",
                json.dumps(payload), company["user_id"], company["user_id"], None, None, None,
                None, "UTC", "Complete", None, t(created), t(created), None, "bench/1.0",
            ))  # fmt: skip
            errors = n if state == "Failed" else 0
            done = 0 if state == "Running" else n
            output = {} if state == "Running" else {"zip": f"exports/{run_id}.zip"}
            out["runs"].append((
                run_id, job_id, cid, run_name, f"now:{uuid.UUID(int=i)}",
                str(uuid.UUID(int=i + (1 << 64))), state, t(created), t(started), t(ended),
                self._flag(True), self._flag(state == "Stopped"), self._flag(False), n, done,
                done - errors, errors, 0, 0, 0, n * 48_000, 100 if ended else 40, "",
                t(ended or started), self._flag(False), json.dumps(output), t(created),
                None, "none" if ended else None,
            ))  # fmt: skip
            log = self._logger(out["log_details"], run_id, cid)
            log("BeginGet", f"job {name} started", "job {job} started", {"job": name}, started)
            for k, handle in enumerate(handles[:done]):
                ids["run_items"] += 1
                file = f"img{k}.jpg"
                ok = state != "Failed"
                out["run_items"].append((
                    ids["run_items"], run_id, k, handle, "done" if ok else "failed", 1, None,
                    json.dumps({"name": file}),
                ))  # fmt: skip
                text = f"exported {file}" if ok else f"cannot read {file}: truncated"
                mid = "exported {files}" if ok else "cannot read {name}: {error}"
                args = {"files": file} if ok else {"name": file, "error": "truncated"}
                log("FileSuccess" if ok else "FileError", text, mid, args, started,
                    (file, "Image", handle))  # fmt: skip
            if ended is not None:
                good = done - errors
                log("EndGet", f"job done: {good} succeeded, {errors} failed, 0 warnings of {n} "
                    "file(s)", "job done: {success} succeeded, {errors} failed, {warnings} "
                    "warnings of {total} file(s)", {"success": str(good), "errors": str(errors),
                    "warnings": "0", "total": str(n)}, ended)  # fmt: skip
        return out

    def _logger(self, rows: list[Row], run_id: int, cid: int) -> Callable[..., None]:
        """Adds the run's log_details rows to ``rows``."""
        ids, t = self.ids, self._time

        def log(kind: str, text: str, mid: str, args: dict[str, str], at: datetime,
                asset: tuple[Any, Any, Any] = (None, None, None)) -> None:  # fmt: skip
            ids["log_details"] += 1
            rows.append((ids["log_details"], run_id, cid, kind, text, mid, json.dumps(args),
                         *asset, t(at)))  # fmt: skip

        return log

    def write(self, start: int, stop: int, last: int) -> None:
        # after the rows submit() added in between
        self.ids = {t: self._max_id(t) for t in ("jobs", "runs", "run_items", "log_details")}
        for lo in range(start, stop, CHUNK):
            rows = self.rows(lo, min(lo + CHUNK, stop), last)
            raw = self.store.engine.raw_connection()
            try:
                cursor = raw.cursor()
                if self.dialect == "sqlite":  # the fill's pages stay in memory between chunks
                    cursor.execute("PRAGMA cache_size = -262144")
                for table, cols in (("jobs", self.JOB_COLS), ("runs", self.RUN_COLS),
                                    ("run_items", self.ITEM_COLS),
                                    ("log_details", self.LOG_COLS)):  # fmt: skip
                    self._insert(cursor, table, cols, rows[table])
                raw.commit()
            finally:
                raw.close()
        if self.dialect == "postgresql":  # the explicit ids passed the sequences
            with self.store.engine.begin() as conn:
                for table in self.ids:
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )

    def _insert(self, cursor: Any, table: str, cols: Sequence[str], rows: list[Row]) -> None:
        names = ", ".join(f'"{c}"' for c in cols)
        if self.dialect == "sqlite":
            marks = ", ".join("?" for _ in cols)
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
            return
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _store_size(store: Any) -> int:
    if store.engine.dialect.name == "sqlite":
        path = Path(str(store.engine.url.database))
        plain = sqlite3.connect(path, isolation_level=None)  # outside any transaction
        try:
            plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            plain.close()
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with store.engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
        conn.rollback()
    return int(size or 0)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Side:
    """One store and its companies: the growing one, or the reference kept at 1k runs."""

    def __init__(self, label: str, store: Any, newest: datetime, last: int) -> None:
        self.label, self.store, self.newest, self.last = label, store, newest, last
        self.companies: list[dict[str, Any]] = []
        self.filled = 0
        self.rng = random.Random(14)

    def use(self) -> None:
        """Point the process's runtime at this side's store (the operations read it there)."""
        from jobengine.runtime import get_runtime

        object.__setattr__(get_runtime(), "store", self.store)

    def make_companies(self) -> None:
        from sqlalchemy import select

        from jobengine.store.schema import Company, User
        from tests.support.helpers import make_company

        self.use()
        for _ in range(COMPANIES):
            handle, assets = make_company(3)
            with self.store.read() as session:
                cid = session.scalar(select(Company.id).where(Company.handle == handle))
                uid = session.scalar(select(User.id).where(User.email == f"{handle}@example.com"))
            self.companies.append({"handle": handle, "assets": assets, "id": cid, "user_id": uid})

    def grow(self, to: int) -> float:
        """Fill up to ``to`` runs, gather the statistics; seconds taken."""
        t0 = time.perf_counter()
        Fill(self.store, self.companies, self.newest).write(self.filled, to, self.last)
        self.filled = to
        with self.store.engine.connect() as conn:
            if self.store.engine.dialect.name == "postgresql":
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
            else:
                conn.exec_driver_sql("PRAGMA optimize")
                conn.commit()
        return time.perf_counter() - t0

    def submit(self, name: str) -> float:
        from jobengine import submit
        from tests.support.helpers import export_request

        big = self.companies[0]
        self.use()
        request = export_request(big["handle"], big["assets"][:3], name)
        t0 = time.perf_counter()
        submit(request)
        return time.perf_counter() - t0

    def calls(self) -> dict[str, Callable[[], object]]:
        """The read operations as an IPS client of the biggest company calls them."""
        from jobengine.handles import run_handle
        from jobengine.operations.queries import (
            get_active_jobs,
            get_job_log_details,
            get_job_logs,
        )

        handle = self.companies[0]["handle"]

        def job_logs() -> object:
            return get_job_logs(handle, sort_by="StartDate", num_rows=100)

        def log_details() -> object:
            i = self.rng.randrange(0, self.filled // 2) * 2  # a run of the first company
            created = self.newest - SPACING * (self.last - 1 - i)
            name = f"Growth {i}_{created:%Y-%m-%d-%H:%M:%S}"
            logs = get_job_log_details(
                handle, job_handle=run_handle(handle, name), records_per_page=100
            )
            assert len(logs) == 1 and logs[0].details, name
            return logs

        def active_jobs() -> object:
            found = get_active_jobs(handle)
            assert len(found) == RUNNING_PER_COMPANY, len(found)
            return found

        return {
            "job_logs_ms": job_logs,
            "log_details_ms": log_details,
            "active_jobs_ms": active_jobs,
        }


def _grabber(seen: list[tuple[str, Any]]) -> Callable[..., None]:
    def grab(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    return grab


def _plans(side: Side) -> None:
    """Each operation's statements, captured as they run, with the database's plan of each."""
    from sqlalchemy import event

    store = side.store
    side.use()
    engines = {id(e): e for e in (store.engine, store.read_engine)}.values()
    explain = "EXPLAIN QUERY PLAN " if store.engine.dialect.name == "sqlite" else "EXPLAIN "
    for label, call in side.calls().items():
        seen: list[tuple[str, Any]] = []
        grab = _grabber(seen)
        for engine in engines:
            event.listen(engine, "before_cursor_execute", grab)
        try:
            call()
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", grab)
        print(f"\n== {label.removesuffix('_ms')}: {len(seen)} statements")
        done: set[str] = set()
        with store.read_engine.connect() as conn:
            for statement, params in seen:
                if statement in done:
                    continue
                done.add(statement)
                print("  " + " ".join(statement.split())[:300])
                cursor = conn.connection.driver_connection.cursor()
                cursor.execute(explain + statement, params)
                for row in cursor.fetchall():
                    print("      " + " | ".join(str(v) for v in row))
            conn.rollback()


def _purge(app: Any, queue: str) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


def _measure(sides: tuple[Side, Side], step: int, submits: int, repeat: int) -> dict[str, Any]:
    """Both sides' figures, taking turns (ten submits, or one call, at a time) so that the
    machine's load, which changes, weighs on both alike."""
    took: dict[str, dict[str, list[float]]] = {s.label: {} for s in sides}
    for k in range(submits // 10 + 1):
        for side in sides:
            for j in range(10):
                t = side.submit(f"Submit {step} {k} {j}")
                if k:  # the first ten of each side warm the caches after the fill
                    took[side.label].setdefault("submit", []).append(t)
    calls = {side.label: side.calls() for side in sides}
    for r in range(repeat + 2):
        for key in calls[sides[0].label]:
            for side in sides:
                side.use()
                t0 = time.perf_counter()
                calls[side.label][key]()
                if r >= 2:  # two warm-up calls
                    took[side.label].setdefault(key, []).append(time.perf_counter() - t0)
    out: dict[str, Any] = {"runs": step, "load": os.getloadavg()[0]}
    for side in sides:
        figures = took[side.label]
        prefix = "" if side.label == "growth" else "ref_"
        out[prefix + "submit_p50_ms"] = statistics.median(figures["submit"]) * 1000
        out[prefix + "submit_p95_ms"] = _quantile(figures["submit"], 0.95) * 1000
        for key in calls[side.label]:
            out[prefix + key] = statistics.median(figures[key]) * 1000
        out[prefix + "size_mb"] = _store_size(side.store) / 1e6
    return out


def _reference_url(url: str, home: str) -> tuple[str, Callable[[], None]]:
    """The reference store's URL beside ``url``, and what removes it afterwards."""
    if url.startswith("sqlite"):
        return f"sqlite:///{home}/reference.db", lambda: None
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from jobengine.store.db import normalize_url

    base = make_url(normalize_url(url))
    name = f"{base.database}_ref"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def run(args: argparse.Namespace, home: str) -> dict[str, Any]:
    from jobengine.engine.app import app, configure
    from jobengine.runtime import get_runtime
    from jobengine.settings import get_settings
    from jobengine.store import migrate
    from jobengine.store.db import Store

    configure(task_default_queue="bench-growth")
    url = get_settings().database_url
    steps = [s for s in STEPS if s <= args.max]
    newest = datetime.now(UTC).replace(microsecond=0) - SPACING  # submits come after
    growing = Side("growth", get_runtime().store, newest, steps[-1])
    backend = growing.store.engine.dialect.name
    ref_url, drop = _reference_url(url, home)
    try:
        reference = Side("reference", Store(ref_url), newest, STEPS[0])
        migrate.prepare(reference.store, "auto")
        print(f"store {url} ({backend}); reference {ref_url}; broker {app.conf.broker_url}")
        for side in (growing, reference):
            side.make_companies()
        reference.grow(STEPS[0])
        results: list[dict[str, Any]] = []
        for step in steps:
            fill_s = growing.grow(step)
            row = _measure((growing, reference), step, args.submits, args.repeat)
            row["fill_s"] = fill_s
            _purge(app, "bench-growth")
            results.append(row)
            _print(row)
        if args.plans:
            _plans(growing)
        growing.use()
        reference.store.dispose()
    finally:
        drop()
    return {"backend": backend, "date": datetime.now(UTC).isoformat(), "steps": results}


KEYS = (("submit_p50_ms", "submit p50"), ("submit_p95_ms", "submit p95"),
        ("job_logs_ms", "getJobLogs"), ("log_details_ms", "getJobLogDetails"),
        ("active_jobs_ms", "getActiveJobs"), ("size_mb", "store MB"))  # fmt: skip


def _print(row: dict[str, Any]) -> None:
    print(f"\n{row['runs']:>9,} runs (filled in {row['fill_s']:.1f} s, load {row['load']:.2f}):")
    for key, label in KEYS:
        unit = "MB" if key == "size_mb" else "ms"
        ours, ref = row[key], row["ref_" + key]
        print(f"  {label:<17} {ours:9.2f} {unit}   1k store {ref:8.2f} {unit}   "
              f"ratio {ours / ref:6.2f}")  # fmt: skip


def plot(paths: Iterator[Path]) -> None:
    """Four panels over the runs in the store: submit() latency, the read operations, each
    figure's ratio to the 1k store's (the flat line is the goal), the store's size."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    styles = {"sqlite": "-o", "postgresql": "--s"}
    for path in sorted(paths):
        data = json.loads(path.read_text())
        steps, style, name = data["steps"], styles.get(data["backend"], "-"), data["backend"]
        runs = [s["runs"] for s in steps]
        for key, label in KEYS[:5]:
            ax = axes[0] if key.startswith("submit") else axes[1]
            ax.plot(runs, [s[key] for s in steps], style, label=f"{label} ({name})")
            axes[2].plot(runs, [s[key] / s["ref_" + key] for s in steps], style,
                         label=f"{label} ({name})")  # fmt: skip
        axes[3].plot(runs, [s["size_mb"] for s in steps], style, label=name)
    titles = ("submit() latency", "read operations (median)", "time / time on the 1k store",
              "store size on disk")  # fmt: skip
    for ax, title, unit in zip(axes, titles, ("ms", "ms", "ratio", "MB"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("runs in the store")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    axes[2].axhline(1.0, color="black", linewidth=0.8)
    axes[2].set_ylim(0, 2.5)  # on the scale of the question: flat at 1, or growing
    axes[2].legend(fontsize=6, loc="upper left", ncol=2)
    axes[3].set_yscale("log")
    fig.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    fig.savefig(PLOT, dpi=90)
    print(f"wrote {PLOT}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max", type=int, default=1_000_000, help="stop at this many runs")
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--plans", action="store_true", help="print the query plans at the end")
    parser.add_argument("--plot", action="store_true", help="only redraw docs/growth.png")
    args = parser.parse_args()
    if not args.plot:
        home = tempfile.mkdtemp(prefix="jobengine-bench-growth-")
        os.environ.setdefault("JOBENGINE_HOME", home)
        os.environ["DATABASE_URL"] = os.environ.get(
            "BENCH_DATABASE_URL", f"sqlite:///{home}/growth.db"
        )
        os.environ["JOBENGINE_DB_UPGRADE"] = "auto"  # its store is made by the migrations
        from jobengine.embedded import start_redis, stop_redis
        from jobengine.settings import get_settings

        settings = get_settings()
        started = not settings.redis_url and start_redis(settings)
        try:
            data = run(args, home)
        finally:
            if started:
                stop_redis(settings)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"growth-{data['backend']}.json").write_text(json.dumps(data, indent=1))
    plot(RESULTS.glob("growth-*.json"))


if __name__ == "__main__":
    main()
