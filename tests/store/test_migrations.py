"""The job store's migrations (jobengine/store/migrate.py), on SQLite and PostgreSQL.

The oldest released schema is that of jobengine 0.1.0, the last release without migrations: its
stores were made by ``create_all``. tests/data/store_0_1_0/ holds that DDL as 0.1.0 emitted it
for each dialect (``CreateTable`` / ``CreateIndex`` of jobengine/store/schema.py at commit
de79425), frozen. Such a store, with data in every table, must upgrade to the newest revision
with its data, and then match the models exactly; so must a new, empty store.

Each PostgreSQL store is a database of the test's own on the server of TEST_POSTGRES_URL,
dropped at the end.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from tests.support.stack import POSTGRES_URL, unavailable

DATA = Path(__file__).parents[1] / "data" / "store_0_1_0"
T0 = datetime(2026, 11, 1, 8, 30)  # naive UTC, as the store keeps times


def _admin() -> Any:
    from jobengine.store.db import normalize_url

    return create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store of each backend (PostgreSQL: a database created here and dropped)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    name = f"jobengine_migrate_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = _admin()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", f"{POSTGRES_URL}: {exc}")
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _store(url: str) -> Any:
    from jobengine.store.db import Store

    return Store(url)


def _dialect(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _make_0_1_0_store(url: str, drop: tuple[str, ...] = ()) -> None:
    """The tables as 0.1.0's create_all made them; ``drop``: statements run after (an older
    release's store lacked these)."""
    store = _store(url)
    ddl = (DATA / f"{_dialect(url)}.sql").read_text()
    statements = [s.strip() for s in ddl.split(";") if s.strip()]
    with store.engine.begin() as conn:
        for statement in statements:
            body = "\n".join(ln for ln in statement.splitlines() if not ln.startswith("--"))
            conn.exec_driver_sql(body)
        for statement in drop:
            conn.exec_driver_sql(statement)
    store.dispose()


# One row in each table, as 0.1.0 wrote them: a finished export with its log and items.
ROWS: list[tuple[str, dict[str, Any]]] = [
    ("companies", {"id": 1, "handle": "old", "name": "Old Co", "created_at": T0}),
    ("users", {
        "id": 1, "handle": "u-old", "email": "ops@example.com", "first_name": "O",
        "last_name": "Ps", "user_type": "Admin", "password_hash": "", "created_at": T0,
    }),
    ("memberships", {"user_id": 1, "company_id": 1}),
    ("api_tokens", {
        "id": 1, "user_id": 1, "name": "ci", "token_hash": "ab" * 32, "created_at": T0,
        "last_used_at": None, "revoked_at": None,
    }),
    ("folders", {"id": 1, "company_id": 1, "path": "pics/"}),
    ("assets", {
        "id": 1, "handle": "a|1", "company_id": 1, "folder_id": 1, "name": "img.jpg",
        "type": "Image", "file_key": "old/pics/img.jpg", "size": 1234,
        "publish_state": "MarkedForPublish", "published_at": None, "updated_at": T0,
        "created_at": T0, "ingest_ref": None, "optimized_key": None, "optimized_version": None,
        "derived_from": None, "crop": "1,2,3,4", "optimized_crop": None,
    }),
    ("assets", {
        "id": 2, "handle": "a|2", "company_id": 1, "folder_id": 1, "name": "set", "type":
        "ImageSet", "file_key": None, "size": 0, "publish_state": "NotMarkedForPublish",
        "published_at": None, "updated_at": T0, "created_at": T0, "ingest_ref": None,
        "optimized_key": None, "optimized_version": None, "derived_from": None, "crop": None,
        "optimized_crop": None,
    }),
    ("set_members", {"set_id": 2, "position": 0, "member_id": 1}),
    ("image_formats", {
        "id": 1, "company_id": 1, "name": "Thumb", "name_key": "thumb",
        "url_modifier": "wid=200", "updated_at": T0,
    }),
    ("set_presets", {
        "id": 1, "company_id": 1, "name": "Sets", "name_key": "sets", "set_type": "ImageSet",
        "pattern": "(.*)_.*", "member_order": "Name", "views": json.dumps(["front"]),
        "name_template": "$1", "updated_at": T0,
    }),
    ("jobs", {
        "id": 1, "company_id": 1, "live_key": None, "handle": "old|Nightly", "name": "Nightly",
        "kind": "export", "payload": json.dumps({"export": {"assetHandleArray": ["a|1"]}}),
        "submit_user_id": 1, "run_as_user_id": 1, "locale": "en", "description": None,
        "exec_time": None, "exec_schedule": None, "time_zone": "UTC",
        "trigger_state": "Complete", "next_fire_at": None, "fired_through": T0,
        "created_at": T0, "deleted_at": None,
    }),
    ("runs", {
        "id": 1, "job_id": 1, "company_id": 1, "run_name": "Nightly", "fire_key": "once",
        "task_id": "t-1", "state": "Done", "eta": None, "dispatched_at": T0, "started_at": T0,
        "ended_at": T0, "claimed_by": None, "lease_until": None, "planned": False,
        "stop_requested": False, "paused": False, "finish_sent_at": T0, "swept_at": None,
        "notified_at": None, "callback_state": "none", "callback_attempts": None,
        "callback_sent_at": None, "callback_next_at": None, "callback_result": None,
        "total_items": 1, "finished_items": 1, "success_count": 1, "error_count": 0,
        "warning_count": 0, "duplicate_count": 0, "update_count": 0, "total_size": 1234,
        "progress": 100, "progress_message": "", "last_progress_update": T0,
        "fatal_error": False, "output": json.dumps({"zip": "exports/Nightly.zip"}),
        "created_at": T0,
    }),
    ("run_items", {
        "id": 1, "run_id": 1, "seq": 0, "key": "a|1", "state": "done", "attempts": 1,
        "claimed_by": None, "lease_until": None, "result": json.dumps({"ok": True}),
    }),
    ("log_details", {
        "id": 1, "run_id": 1, "company_id": 1, "log_type": "ExportFile",
        "message": "exported pics/img.jpg", "message_id": None, "message_args": None,
        "asset_name": "img.jpg", "asset_type": "Image", "asset_handle": "a|1",
        "created_at": T0,
    }),
]  # fmt: skip


def _seed(url: str, rows: list[tuple[str, dict[str, Any]]] = ROWS) -> None:
    store = _store(url)
    with store.engine.begin() as conn:
        for table, row in rows:
            columns = ", ".join(row)
            values = ", ".join(f":{c}" for c in row)
            conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)
        if _dialect(url) == "postgresql":  # explicit ids leave the sequences behind
            for table in {t for t, row in rows if "id" in row}:
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT max(id) FROM {table}))")
                )  # fmt: skip
    store.dispose()


def _diff(url: str) -> list[Any]:
    """What autogenerate would change to make the store match the models: nothing, we want."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from jobengine.store.schema import Base

    store = _store(url)
    with store.read_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    store.dispose()
    return list(diff)


def _revision(url: str) -> str | None:
    from jobengine.store import migrate

    store = _store(url)
    try:
        return migrate.current(store)
    finally:
        store.dispose()


def _count(url: str, table: str) -> int:
    store = _store(url)
    with store.read_engine.connect() as conn:
        count = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    store.dispose()
    return int(count)


def _column(url: str, table: str, column: str) -> list[Any]:
    store = _store(url)
    with store.read_engine.connect() as conn:
        values = conn.execute(text(f"SELECT {column} FROM {table} ORDER BY id")).scalars().all()
    store.dispose()
    return list(values)


@pytest.fixture
def runtime_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Point jobengine's runtime at a given store (as a process started on it would)."""
    from jobengine.runtime import reset_runtime

    def use(url: str, mode: str = "auto") -> None:
        monkeypatch.setenv("JOBENGINE_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("JOBENGINE_DB_UPGRADE", mode)
        monkeypatch.setenv("JOBENGINE_TIMEZONE", "UTC")
        reset_runtime()

    yield use
    reset_runtime()


# -- from nothing, and from 0.1.0 -----------------------------------------------------------------


def test_a_new_store_is_migrated_to_exactly_the_models(url: str) -> None:
    from jobengine.store import migrate

    store = _store(url)
    assert migrate.current(store) is None
    migrate.prepare(store, "auto")
    assert migrate.current(store) == migrate.head()
    store.dispose()
    assert _diff(url) == []


def test_a_0_1_0_store_upgrades_with_all_its_data(url: str, runtime_on: Any) -> None:
    from jobengine import get_image_formats, get_job_log_details, get_job_logs
    from jobengine.store import migrate

    _make_0_1_0_store(url)
    _seed(url)
    assert _revision(url) is None  # made before migrations: no version
    runtime_on(url, "auto")  # a process of the new release starting on it
    [log] = get_job_logs("old")
    assert _revision(url) == migrate.head()
    assert _diff(url) == []
    assert (log.job_name, log.state, log.file_success_count) == ("Nightly", "Done", 1)
    assert log.output == {"zip": "exports/Nightly.zip"}
    assert log.submit_user_email == "ops@example.com"
    [detailed] = get_job_log_details("old", job_handle=log.job_handle)
    assert [d.log_message for d in detailed.details] == ["exported pics/img.jpg"]
    assert [f.url_modifier for f in get_image_formats("old")] == ["wid=200"]
    for table in {t for t, _ in ROWS}:
        assert _count(url, table) == sum(1 for t, _ in ROWS if t == table), table
    # no asset of an old store has been published to Image Rendering (0003)
    assert _column(url, "assets", "rendering_published_at") == [None, None]


def test_the_upgraded_store_takes_new_rows(url: str, runtime_on: Any) -> None:
    """Ids continue after the old rows (PostgreSQL sequences, SQLite rowids)."""
    from jobengine.assets.catalog import create_company
    from jobengine.runtime import get_runtime

    _make_0_1_0_store(url)
    _seed(url)
    runtime_on(url, "auto")
    with get_runtime().store.write() as session:
        company = create_company(session, "new", "New Co")
        session.flush()
        assert company.id == 2


def test_an_older_store_gets_what_its_release_lacked(url: str) -> None:
    """Releases before 0.1.0 added nullable columns and tables at start; a store that skipped
    some of them gets them from the baseline revision."""
    from jobengine.store import migrate

    drops = (
        "DROP TABLE set_members",
        "DROP INDEX ix_log_details_asset",
        "ALTER TABLE log_details DROP COLUMN message_args",
        "ALTER TABLE log_details DROP COLUMN message_id",
        "ALTER TABLE assets DROP COLUMN optimized_crop",
        "ALTER TABLE assets DROP COLUMN crop",
    )
    _make_0_1_0_store(url, drops)
    _seed(url, [(t, r) for t, r in ROWS if t not in ("log_details", "set_members", "assets")])
    store = _store(url)
    assert "set_members" not in inspect(store.engine).get_table_names()
    migrate.prepare(store, "auto")
    store.dispose()
    assert _diff(url) == []
    assert _count(url, "jobs") == 1


def test_downgrade_to_nothing_and_up_again(url: str) -> None:
    from jobengine.store import migrate

    store = _store(url)
    migrate.upgrade(store)
    migrate.downgrade(store, "base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    assert migrate.current(store) is None
    migrate.upgrade(store)
    store.dispose()
    assert _diff(url) == []


def test_the_rendering_publish_time_comes_and_goes_with_its_revision(url: str) -> None:
    """0003 adds assets.rendering_published_at to a store with assets, and takes it away
    again on downgrade, keeping the rows."""
    from jobengine.store import migrate

    _make_0_1_0_store(url)
    _seed(url)
    store = _store(url)
    migrate.upgrade(store, "0002")
    assert "rendering_published_at" not in {
        c["name"] for c in inspect(store.engine).get_columns("assets")
    }
    migrate.upgrade(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE assets SET rendering_published_at = :t WHERE id = 1"), {"t": T0})
    assert _column(url, "assets", "rendering_published_at")[0] is not None
    assert _diff(url) == []
    migrate.downgrade(store, "0002")
    assert "rendering_published_at" not in {
        c["name"] for c in inspect(store.engine).get_columns("assets")
    }
    assert _count(url, "assets") == 2
    migrate.upgrade(store)
    store.dispose()
    assert _column(url, "assets", "rendering_published_at") == [None, None]
    assert _diff(url) == []


def test_processes_starting_together_upgrade_once(url: str) -> None:
    """Four stores (as four processes would) prepare the same new store at the same moment."""
    from jobengine.store import migrate

    stores = [_store(url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def prepare(store: Any) -> None:
        try:
            start.wait()
            migrate.prepare(store, "auto")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=prepare, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert migrate.current(stores[0]) == migrate.head()
    for store in stores:
        store.dispose()
    assert _diff(url) == []


def test_a_new_sqlite_store_opened_while_another_connection_writes_it_waits(
    tmp_path: Path,
) -> None:
    """A store's connections switch the file to WAL first, which needs the database to itself.
    While another connection holds the write lock, SQLite answers that switch "database is
    locked" at once instead of waiting out its busy timeout (waiting could deadlock): under
    load, processes starting together on a new store met it (the test above, about 1 run in
    25). The store waits for the lock as for a write; here it is let go after 0.3 s."""
    from jobengine.store import migrate

    path = tmp_path / "store.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other_release (x INTEGER)")  # a rollback journal, as made
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, other.execute, ("COMMIT",))
    release.start()
    store = _store(f"sqlite:///{path}")
    try:
        migrate.prepare(store, "auto")
        assert migrate.current(store) == migrate.head()
        with store.read_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        release.join()
        store.dispose()
        other.close()


# -- check mode: the fleet's processes start only on a store at their revision ---------------------


def test_check_mode_refuses_a_store_behind_and_says_what_to_run(url: str) -> None:
    from jobengine.store import migrate
    from jobengine.store.migrate import StoreSchemaError

    store = _store(url)
    with pytest.raises(StoreSchemaError, match=r"is empty: run `jobengine db upgrade`"):
        migrate.prepare(store, "check")
    store.dispose()
    _make_0_1_0_store(url)
    store = _store(url)
    with pytest.raises(StoreSchemaError, match=r"made before migrations: run `jobengine db"):
        migrate.prepare(store, "check")
    store.dispose()


def test_a_store_from_a_newer_jobengine_is_refused_in_both_modes(url: str) -> None:
    from jobengine.store import migrate
    from jobengine.store.migrate import StoreSchemaError

    store = _store(url)
    migrate.upgrade(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for mode in ("auto", "check"):
        fresh = _store(url)
        with pytest.raises(StoreSchemaError, match="revision 9999, which this jobengine does not"):
            migrate.prepare(fresh, mode)
        fresh.dispose()
    store.dispose()


def test_the_cli_upgrades_checks_and_the_worker_waits_for_it(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from jobengine.cli import app
    from jobengine.runtime import reset_runtime
    from jobengine.store import migrate

    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("JOBENGINE_HOME", str(tmp_path))
    monkeypatch.setenv("JOBENGINE_DB_UPGRADE", "check")
    monkeypatch.setenv("JOBENGINE_TIMEZONE", "UTC")
    reset_runtime()
    _make_0_1_0_store(url)
    _seed(url)
    runner = CliRunner()
    try:
        done = runner.invoke(app, ["db", "check"])
        assert done.exit_code == 1 and "made before migrations" in done.output
        # a worker of a fleet (check mode) does not start on it: it says what to run
        done = runner.invoke(app, ["worker"])
        assert done.exit_code == 2 and "run `jobengine db upgrade`" in done.output
        done = runner.invoke(app, ["db", "upgrade"])
        assert done.exit_code == 0, done.output
        assert f"no revision -> {migrate.head()}" in done.output
        done = runner.invoke(app, ["db", "current"])
        assert f"store: {migrate.head()}; this jobengine: {migrate.head()}" in done.output
        assert runner.invoke(app, ["db", "check"]).exit_code == 0
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0  # again: nothing to do
    finally:
        reset_runtime()
    assert _count(url, "runs") == 1 and _diff(url) == []


def test_the_upgrade_mode_defaults_by_backend() -> None:
    from jobengine.errors import ConfigurationError
    from jobengine.settings import Settings

    assert Settings.from_env({"DATABASE_URL": "sqlite:////tmp/x.db"}).db_upgrade == "auto"
    assert Settings.from_env({}).db_upgrade == "auto"  # the embedded SQLite store
    pg = {"DATABASE_URL": "postgresql://u@db/jobengine"}
    assert Settings.from_env(pg).db_upgrade == "check"
    assert Settings.from_env({**pg, "JOBENGINE_DB_UPGRADE": "auto"}).db_upgrade == "auto"
    with pytest.raises(ConfigurationError, match="JOBENGINE_DB_UPGRADE must be auto or check"):
        Settings.from_env({**pg, "JOBENGINE_DB_UPGRADE": "yes"})


def test_every_revision_is_a_module_of_the_package() -> None:
    """The revisions ship in the wheel (setuptools finds the versions package) and form one line
    from the baseline; a second head would mean two unmerged schema changes."""
    from alembic.script import ScriptDirectory

    from jobengine.store.migrate import MIGRATIONS

    scripts = ScriptDirectory(str(MIGRATIONS))
    assert len(scripts.get_heads()) == 1
    revisions = list(scripts.walk_revisions())
    assert revisions[-1].revision == "0001" and revisions[-1].down_revision is None
    for revision in revisions:
        assert revision.path is not None and Path(revision.path).name.startswith(
            f"{revision.revision}_"
        )
    assert (MIGRATIONS / "versions" / "__init__.py").is_file()
