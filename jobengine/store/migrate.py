"""Versioned migrations of the job store (Alembic; revisions in store/migrations/versions).

Every process that opens the store prepares it first (:func:`prepare`), in one of two modes
(``JOBENGINE_DB_UPGRADE``):

* ``auto`` (the default on SQLite): apply the missing revisions at start. Safe when several
  processes start at once: the upgrade runs in one write transaction (SQLite ``BEGIN IMMEDIATE``;
  PostgreSQL under a transaction-scoped advisory lock), so the first applies it and the others
  find it done.
* ``check`` (the default on PostgreSQL, the fleet's store): refuse to start, saying what to run,
  unless the store is at this code's revision. A fleet is upgraded by one explicit
  ``jobengine db upgrade`` (compose's ``migrate`` service) before the new images start.

A store made before migrations (``create_all``) has no version: it is taken to be at no
revision, and the baseline revision adopts its tables with their data.
"""

from __future__ import annotations

import functools
import threading
import weakref
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url

from jobengine.errors import ConfigurationError
from jobengine.store.db import Store, outage

__all__ = [
    "UPGRADE_MODES",
    "StoreSchemaError",
    "check",
    "current",
    "downgrade",
    "head",
    "new_revision",
    "prepare",
    "upgrade",
]

UpgradeMode = Literal["auto", "check"]
UPGRADE_MODES: tuple[UpgradeMode, ...] = ("auto", "check")
MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock's key: "jobeng" in ASCII, a constant no other lock of ours uses
_PG_LOCK = 0x6A6F62656E67


class StoreSchemaError(ConfigurationError):
    """The store is not at this code's schema (behind, or made by a newer jobengine)."""


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head() -> str:
    """The newest revision this code knows."""
    revision = _scripts().get_current_head()
    assert revision is not None
    return revision


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _where(store: Store) -> str:
    return make_url(store.url).render_as_string(hide_password=True)


def current(store: Store) -> str | None:
    """The store's revision; None for a new store or one made before migrations."""
    with store.read_engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
    return revision


def _has_tables(store: Store) -> bool:
    with store.read_engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        conn.rollback()
    return "jobs" in names


def _behind(store: Store, revision: str | None) -> str:
    """Why the store cannot be used as it is (``revision`` is not the head)."""
    where = _where(store)
    if revision is None:
        made = "made before migrations" if _has_tables(store) else "empty"
        return f"the job store {where} is {made}: run `jobengine db upgrade`"
    if revision not in {s.revision for s in _scripts().walk_revisions()}:
        return (
            f"the job store {where} is at revision {revision}, which this jobengine does not "
            f"know (its newest is {head()}): a newer jobengine upgraded it; run that one"
        )
    return (
        f"the job store {where} is at revision {revision}, this jobengine needs {head()}: "
        "run `jobengine db upgrade`"
    )


def check(store: Store) -> None:
    """Raise StoreSchemaError unless the store is at this code's revision."""
    revision = current(store)
    if revision != head():
        raise StoreSchemaError(_behind(store, revision))


def _migrate(store: Store, action: str, target: str) -> None:
    with store.connect() as conn:  # one write transaction: SQLite BEGIN IMMEDIATE
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        getattr(command, action)(_config(conn), target)


def upgrade(store: Store, target: str = "head") -> None:
    """Apply the revisions up to ``target`` (once, however many processes call it at once)."""
    _migrate(store, "upgrade", target)


def downgrade(store: Store, target: str) -> None:
    """Undo revisions down to ``target`` (``base``: no tables). Their data goes with them."""
    _migrate(store, "downgrade", target)


_PREPARED: weakref.WeakSet[Store] = weakref.WeakSet()
_LOCKS: weakref.WeakKeyDictionary[Store, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def prepare(store: Store, mode: str = "auto") -> None:
    """Bring the store to this code's schema, once per Store: apply the missing migrations
    (``auto``) or raise StoreSchemaError unless they are applied (``check``). Stores of one
    database prepared at once (as processes would) meet in the database's own lock."""
    with _LOCKS_LOCK:
        lock = _LOCKS.setdefault(store, threading.Lock())
    with lock, outage():
        if store not in _PREPARED:
            _prepare(store, mode)
            _PREPARED.add(store)


def _prepare(store: Store, mode: str) -> None:
    if mode not in UPGRADE_MODES:
        raise ConfigurationError(f"JOBENGINE_DB_UPGRADE must be auto or check, not {mode!r}")
    revision = current(store)
    if revision == head():
        return
    known = {s.revision for s in _scripts().walk_revisions()}
    if mode == "check" or (revision is not None and revision not in known):
        raise StoreSchemaError(_behind(store, revision))
    upgrade(store)


def new_revision(store: Store, message: str) -> Path:
    """Write the next revision's module, autogenerated from the schema's difference to the store
    (which must be at the head): for developers changing jobengine/store/schema.py."""
    check(store)
    number = f"{int(head()) + 1:04d}"
    with store.connect() as conn:
        script = command.revision(_config(conn), message=message, autogenerate=True, rev_id=number)
    assert script is not None and not isinstance(script, list)
    _scripts.cache_clear()
    return Path(script.path)
