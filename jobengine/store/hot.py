"""Core statements for hot paths, compiled once per dialect and run on the DBAPI cursor.

SQLAlchemy's Connection.execute spends 30-60 us of Python per statement around a query that
SQLite answers in 10 us (cache key, execution context, result wrapper). ``HotStatement`` keeps
what matters of it: the SQL is compiled by SQLAlchemy from the same Core statement, for the
connection's dialect, once; parameters go through the column types' own bind processors (so
``UTCDateTime``, JSON and Boolean are stored exactly as the ORM stores them); an INSERT gets its
columns' Python-side defaults as the ORM would. It runs inside the caller's transaction, on the
connection SQLAlchemy holds for it.

Only for simple statements with scalar parameters. Results are returned as the driver gives
them (ids, counts, strings), or, for a statement made with ``typed=True``, through its columns'
result processors as SQLAlchemy's rows would be (aware datetimes, JSON, booleans on SQLite).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, ColumnElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.schema import ColumnDefault

__all__ = ["HotStatement", "inserted_ids", "planned_in"]

_Processor = Callable[[Any], Any]


class _Compiled:
    __slots__ = ("defaults", "literals", "names", "positional", "processors", "results", "sql")

    def __init__(
        self, stmt: ClauseElement, dialect: Dialect, keys: Sequence[str] | None, typed: bool
    ) -> None:
        compiled = cast(
            SQLCompiler, stmt.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        )
        self.sql: str = compiled.string
        if "POSTCOMPILE" in self.sql:
            raise ValueError(f"expanding parameters (IN lists) are not supported here: {self.sql}")
        self.positional = bool(compiled.positional)
        self.names: list[str] = list(compiled.positiontup or compiled.binds)
        binds = {name: compiled.binds[name] for name in self.names}
        # Values written into the statement (LIMIT 1, SET x=NULL) are binds that carry them.
        self.literals: dict[str, Any] = {
            name: bind.effective_value for name, bind in binds.items() if not bind.required
        }
        self.processors: dict[str, _Processor] = {}
        for name, bind in binds.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self.processors[name] = proc
        # An INSERT compiled for some columns also binds the others' Python-side defaults,
        # which SQLAlchemy's execution context would fill in: do the same.
        self.defaults: dict[str, Callable[[], Any]] = {}
        table = getattr(stmt, "table", None)
        if keys is not None and table is not None:
            for column in table.columns:
                default = column.default
                if column.key in keys or column.key not in compiled.binds:
                    continue
                if isinstance(default, ColumnDefault):
                    self.defaults[column.key] = _default_of(default)
        # The columns' result processors (SELECT, or RETURNING), as a Result would apply them.
        self.results: list[_Processor | None] | None = None
        if typed:
            columns = getattr(stmt, "exported_columns", ())
            self.results = [c.type.dialect_impl(dialect).result_processor(dialect, None)
                            for c in columns]  # fmt: skip

    def row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A row as the driver gave it, through the result processors of a typed statement."""
        if self.results is None:
            return tuple(row)
        return tuple(
            v if p is None or v is None else p(v) for p, v in zip(self.results, row, strict=True)
        )

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = {**self.literals, **params}
        for key, make in self.defaults.items():
            values[key] = make()
        for key, proc in self.processors.items():
            values[key] = proc(values[key])
        if self.positional:
            return [values[name] for name in self.names]
        return {name: values[name] for name in self.names}


def _default_of(default: ColumnDefault) -> Callable[[], Any]:
    arg = default.arg
    if default.is_callable:
        return lambda: arg(None)  # SQLAlchemy wraps a no-argument callable to take a context
    return lambda: arg


def _translated(conn: Connection, sql: str, values: Any, error: Exception) -> DBAPIError:
    """The driver's error as Connection.execute would raise it: the same exception classes,
    and a lost connection invalidated (``connection_invalidated``), so that the pool drops it
    and :meth:`jobengine.store.db.Store.transact` knows nothing of the transaction committed."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(cast(Any, error), conn.connection.dbapi_connection, None)
    if lost:
        conn.invalidate(error)
    translated = DBAPIError.instance(
        sql, values, error, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
    )
    return cast(DBAPIError, translated)


class HotStatement:
    """A Core statement (with its INSERT column keys) to run cheaply many times."""

    def __init__(
        self,
        stmt: ClauseElement,
        *,
        insert_keys: Sequence[str] | None = None,
        typed: bool = False,
    ) -> None:
        self._stmt = stmt
        self._keys = tuple(insert_keys) if insert_keys is not None else None
        self._typed = typed
        self._by_dialect: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _compiled(self, dialect: Dialect) -> _Compiled:
        key = f"{dialect.name}+{dialect.driver}"
        found = self._by_dialect.get(key)
        if found is None:
            with self._lock:
                found = self._by_dialect.setdefault(
                    key, _Compiled(self._stmt, dialect, self._keys, self._typed)
                )
        return found

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, _Compiled]:
        compiled = self._compiled(conn.dialect)
        if self._keys is not None and set(params) != set(self._keys):
            raise ValueError(f"insert values {sorted(params)} != compiled {sorted(self._keys)}")
        values = compiled.parameters(params)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        dbapi = conn.dialect.loaded_dbapi
        try:
            cursor.execute(compiled.sql, values)
        except dbapi.Error as exc:
            cursor.close()
            raise _translated(conn, compiled.sql, values, exc) from exc
        return cursor, compiled

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a statement without rows; returns the driver's row count."""
        cursor, _ = self._run(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row, or None."""
        cursor, compiled = self._run(conn, params)
        try:
            row = cursor.fetchone()
            return None if row is None else compiled.row(row)
        finally:
            cursor.close()

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row."""
        cursor, compiled = self._run(conn, params)
        try:
            return [compiled.row(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def returning_many(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Run the statement once per row in one pipelined ``executemany`` (psycopg 3, whose
        ``returning=True`` keeps each row's result, in order); the first result row of each."""
        compiled = self._compiled(conn.dialect)
        if self._keys is not None and any(set(row) != set(self._keys) for row in rows):
            raise ValueError(f"insert values differ from the compiled {sorted(self._keys)}")
        values = [compiled.parameters(row) for row in rows]
        # psycopg's own cursor: DBAPI's executemany has no ``returning``
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        dbapi = conn.dialect.loaded_dbapi
        try:
            cursor.executemany(compiled.sql, values, returning=True)
            out: list[tuple[Any, ...]] = []
            while True:
                out.append(tuple(cursor.fetchone()))
                if not cursor.nextset():
                    break
        except dbapi.Error as exc:
            raise _translated(conn, compiled.sql, values, exc) from exc
        finally:
            cursor.close()
        if len(out) != len(rows):
            raise RuntimeError(f"{len(rows)} rows sent, {len(out)} results")
        return out

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = self.first(conn, params)
        return None if row is None else row[0]


def inserted_ids(
    conn: Connection, hot: HotStatement, batched: Executable, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Insert ``rows``; their ids, in the order given.

    ``hot`` is ``INSERT ... RETURNING id`` as a :class:`HotStatement` (the rows' keys) and
    ``batched`` the same as ``insert(table).returning(table.c.id, sort_by_parameter_order=True)``.

    * psycopg (PostgreSQL): ``hot``'s one-row statement through the driver's ``executemany``
      with ``returning=True``, which pipelines every row in one round trip and gives each row's
      result in order. (SQLAlchemy's multi-row ``VALUES`` for ``batched`` spent about 200 us a
      row in psycopg's placeholder parsing of the long statement.)
    * SQLite: no promise on the order of a multi-row ``RETURNING``, so SQLAlchemy would run
      ``batched`` one row at a time through its whole execution path (about 50 us each); ``hot``
      runs per row on the cursor instead (in process, no round trip).
    * Any other driver: ``batched`` through SQLAlchemy.
    """
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        return [int(hot.scalar(conn, row)) for row in rows]
    if conn.dialect.driver == "psycopg":
        return [int(row[0]) for row in hot.returning_many(conn, rows)]
    return [int(i) for i in conn.execute(batched, list(rows)).scalars().all()]


def planned_in(column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN (values)`` with the values written into the SQL, so that the database plans
    each lookup with them.

    With bound values the statement's text is the same from one batch to the next, and psycopg
    prepares a statement run five times: PostgreSQL may then keep a generic plan made while the
    table was small (and, without autovacuum, never analyzed) that reads every row of the
    company, so each batch got slower than the last (bench/bulk.py: 844, 290, 160 jobs/s over
    three rounds). Planned with the values, the unique index answers it.
    """
    return column.in_(bindparam(None, list(values), expanding=True, literal_execute=True))
