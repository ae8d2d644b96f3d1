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

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

from sqlalchemy import JSON, Connection, Table, bindparam, func, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, ColumnElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.schema import ColumnDefault

__all__ = [
    "Batch",
    "CopyInsert",
    "HotStatement",
    "RowidInsert",
    "Same",
    "Sent",
    "inserted_ids",
    "next_ids",
    "pipelined",
    "pipelines",
    "planned_in",
]

_Processor = Callable[[Any], Any]


class Same(NamedTuple):
    """A column's value in every row of a :class:`Batch` (its bind processor runs once)."""

    value: Any


class Batch:
    """The rows of a many-row write as columns: a list of each row's value, or :class:`Same`
    for a value every row holds (a batch's company, its time). A bulk submission builds its
    jobs and runs so, without a dict per row to take apart again; :meth:`of_rows` makes one
    of row dicts.

    ``raw``: columns whose values are already what the column type's bind processor gives
    the driver (a JSON column's text), which then does not run.
    """

    __slots__ = ("count", "raw", "values")

    def __init__(
        self, count: int, values: Mapping[str, Sequence[Any] | Same], raw: Iterable[str] = ()
    ) -> None:
        for name, column in values.items():
            if not isinstance(column, Same) and len(column) != count:
                raise ValueError(f"column {name!r} holds {len(column)} values for {count} rows")
        self.count = count
        self.values = values
        self.raw = frozenset(raw)

    @classmethod
    def of_rows(cls, rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None) -> Batch:
        """The columns of ``rows``, each of which must hold exactly ``keys`` (when given),
        else those of the first row."""
        names = set(keys) if keys is not None else set(rows[0]) if rows else set()
        if any(set(row) != names for row in rows):
            raise ValueError(f"insert values differ from the compiled {sorted(names)}")
        return cls(len(rows), {name: [row[name] for row in rows] for name in names})

    def column(self, name: str) -> list[Any]:
        """The values of column ``name``, one a row."""
        found = self.values[name]
        return [found.value] * self.count if isinstance(found, Same) else list(found)

    def value(self, name: str, row: int) -> Any:
        """Column ``name``'s value in row ``row``."""
        found = self.values[name]
        return found.value if isinstance(found, Same) else found[row]

    def rows(self, decode: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rows as dicts of Python values, for SQLAlchemy's own execution; ``decode``: the
        column types, by name, to give raw values back as (only JSON text can be)."""
        values: dict[str, Sequence[Any]] = {}
        for name, column in self.values.items():
            listed = [column.value] * self.count if isinstance(column, Same) else column
            if name in self.raw:
                if not isinstance(decode.get(name), JSON):
                    raise ValueError(f"raw values of {name!r}: only JSON text can be given back")
                listed = [None if v is None else json.loads(v) for v in listed]
            values[name] = listed
        names = list(values)
        return [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]


class _Compiled:
    __slots__ = (
        "constants", "defaults", "fixed", "fixed_processors", "literals", "made", "names",
        "positional", "processors", "results", "sql", "value_processors",
    )  # fmt: skip

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
        self.constants: dict[str, Any] = {}  # the defaults that are a constant, not a callable
        table = getattr(stmt, "table", None)
        if keys is not None and table is not None:
            for column in table.columns:
                default = column.default
                if column.key in keys or column.key not in compiled.binds:
                    continue
                if isinstance(default, ColumnDefault):
                    self.defaults[column.key] = _default_of(default)
                    if not default.is_callable:
                        self.constants[column.key] = default.arg
        # What a row's parameters need each time (see parameters): the values written into
        # the statement and the constant defaults processed once here; the callable defaults
        # made and the given values processed for each row. (A default is never a given
        # value: an INSERT's values are exactly its keys, its defaults the other columns.)
        self.made = {k: make for k, make in self.defaults.items() if k not in self.constants}
        fixed = {k: v for k, v in {**self.literals, **self.constants}.items() if k not in self.made}
        self.fixed: dict[str, Any] = {
            name: value if name not in self.processors else self.processors[name](value)
            for name, value in fixed.items()
        }
        self.value_processors = {k: p for k, p in self.processors.items() if k not in fixed}
        self.fixed_processors = {k: p for k, p in self.processors.items() if k in fixed}
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
        """The driver's parameters of one row: ``params`` (which may stand in for a value
        written into the statement) through their bind processors, with the defaults of the
        columns an INSERT leaves out. The constant ones and the written values went through
        their processors once, when the statement was compiled: a run's INSERT has fifteen
        (counters at 0, flags off), which cost fifteen calls and five processors a row."""
        values = {**self.fixed, **params}
        for key, make in self.made.items():
            values[key] = make()
        for key, proc in self.value_processors.items():
            values[key] = proc(values[key])
        if self.fixed_processors:
            for key in self.fixed_processors.keys() & params.keys():
                values[key] = self.fixed_processors[key](params[key])
        if self.positional:
            return [values[name] for name in self.names]
        return {name: values[name] for name in self.names}

    def parameters_many(self, batch: Batch) -> list[tuple[Any, ...]] | list[dict[str, Any]]:
        """:meth:`parameters` of each row of ``batch``, made a column at a time (see
        :meth:`columns`), the rows zipped in C rather than a dict built for each."""
        columns = self.columns(batch)
        if self.positional:
            return list(zip(*columns, strict=True)) if columns else [() for _ in range(batch.count)]
        return [dict(zip(self.names, values, strict=True)) for values in zip(*columns, strict=True)]

    def columns(self, batch: Batch) -> list[list[Any]]:
        """The processed values of each of :attr:`names`, a list of the rows' values each.

        A column's processor runs once for a :class:`Same` value, and once when every row
        holds the same object; a Python-side default that is a constant is processed once
        too, a callable one is called for each row."""
        n = batch.count
        given = batch.values
        columns: list[list[Any]] = []
        for name in self.names:
            found = given.get(name)
            if found is None:
                make = self.defaults.get(name)
                if make is not None:
                    constant = self.constants.get(name, _NO_CONSTANT)
                    found = (
                        Same(constant)
                        if constant is not _NO_CONSTANT
                        else [make() for _ in range(n)]
                    )
                elif name in self.literals:
                    found = Same(self.literals[name])
                else:
                    raise ValueError(f"no values for {name!r}")
            proc = None if name in batch.raw else self.processors.get(name)
            if isinstance(found, Same):
                column = [found.value if proc is None else proc(found.value)] * n
            elif proc is None or not n:
                column = list(found)
            else:
                first = found[0]
                if all(v is first for v in found):
                    column = [proc(first)] * n
                else:
                    column = [proc(v) for v in found]
            columns.append(column)
        return columns


_NO_CONSTANT = object()


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
        planned_each_time: bool = False,
    ) -> None:
        """``planned_each_time``: never run as a prepared statement (psycopg prepares a query
        run five times), so that PostgreSQL plans it for each call's values: for a lookup whose
        best plan depends on them (see :func:`planned_in`), with a text that stays the same."""
        self._stmt = stmt
        self._keys = tuple(insert_keys) if insert_keys is not None else None
        self._key_set = frozenset(self._keys) if self._keys is not None else None
        self._typed = typed
        self._options: dict[str, Any] = {"prepare": False} if planned_each_time else {}
        self._by_dialect: dict[str, _Compiled] = {}
        # the last dialect object asked for and its statement: a process's engine keeps one
        self._last: tuple[Dialect, _Compiled] | None = None
        self._lock = threading.Lock()

    def _compiled(self, dialect: Dialect) -> _Compiled:
        last = self._last
        if last is not None and last[0] is dialect:
            return last[1]
        key = f"{dialect.name}+{dialect.driver}"
        found = self._by_dialect.get(key)
        if found is None:
            with self._lock:
                found = self._by_dialect.setdefault(
                    key, _Compiled(self._stmt, dialect, self._keys, self._typed)
                )
        self._last = (dialect, found)
        return found

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, _Compiled]:
        compiled = self._compiled(conn.dialect)
        if self._key_set is not None and params.keys() != self._key_set:
            raise ValueError(f"insert values {sorted(params)} != compiled {sorted(self._key_set)}")
        values = compiled.parameters(params)
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        dbapi = conn.dialect.loaded_dbapi
        try:
            if self._options and conn.dialect.driver == "psycopg":
                cursor.execute(compiled.sql, values, **self._options)
            else:
                cursor.execute(compiled.sql, values)
        except dbapi.Error as exc:  # the same exception classes as Connection.execute raises
            cursor.close()
            raise _translated(conn, compiled.sql, values, exc) from exc
        return cursor, compiled

    def send(self, conn: Connection, params: Mapping[str, Any]) -> Sent:
        """Run the statement, its rows to be fetched later (:class:`Sent`): in a
        :func:`pipelined` block it goes to the server with the statements sent after it, in
        the round trip of the first fetch."""
        cursor, compiled = self._run(conn, params)
        return Sent(conn, cursor, compiled.sql, compiled.row)

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

    def _many(self, conn: Connection, rows: Sequence[Mapping[str, Any]] | Batch) -> tuple[Any, Any]:
        """The compiled statement and the driver's values of many rows, their keys checked."""
        compiled = self._compiled(conn.dialect)
        return compiled, compiled.parameters_many(self.batch(rows))

    def batch(self, rows: Sequence[Mapping[str, Any]] | Batch) -> Batch:
        """``rows`` as a :class:`Batch`, checked to hold the statement's insert keys (a batch
        may also give columns the statement fills with their defaults)."""
        if not isinstance(rows, Batch):
            return Batch.of_rows(rows, self._keys)
        if self._keys is not None:
            given, keys = set(rows.values), set(self._keys)
            if not keys <= given or not given - keys <= self._default_keys():
                raise ValueError(
                    f"insert values {sorted(given)} differ from the compiled {sorted(keys)}"
                )
        return rows

    def _default_keys(self) -> set[str]:
        """The columns an INSERT of :attr:`_keys` fills with their Python-side defaults."""
        table = getattr(self._stmt, "table", None)
        if table is None:
            return set()
        return {c.key for c in table.columns if isinstance(c.default, ColumnDefault)} - set(
            self._keys or ()
        )

    def returning_many(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]] | Batch
    ) -> list[tuple[Any, ...]]:
        """Run the statement once per row in one pipelined ``executemany`` (psycopg 3, whose
        ``returning=True`` keeps each row's result, in order); the first result row of each."""
        compiled, values = self._many(conn, rows)
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
        if len(out) != len(values):
            raise RuntimeError(f"{len(values)} rows sent, {len(out)} results")
        return out

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]] | Batch) -> int:
        """Run a statement without rows once per row, through the driver's ``executemany``:
        on SQLite one prepared statement stepped in C for every row, on psycopg 3 one pipelined
        round trip (a run's planned items, a batch's runs). Returns the rows changed in all
        (both drivers add up the row counts of an ``executemany``)."""
        if (rows.count if isinstance(rows, Batch) else len(rows)) == 0:
            return 0
        compiled, values = self._many(conn, rows)
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        dbapi = conn.dialect.loaded_dbapi
        try:
            cursor.executemany(compiled.sql, values)
            return int(cursor.rowcount)
        except dbapi.Error as exc:  # the same exception classes as Connection.execute raises
            raise _translated(conn, compiled.sql, values, exc) from exc
        finally:
            cursor.close()

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = self.first(conn, params)
        return None if row is None else row[0]

    def each_first(self, conn: Connection, rows: Sequence[Mapping[str, Any]] | Batch) -> list[Any]:
        """Run the statement for each row, one after the other on one cursor (an ``INSERT
        ... RETURNING`` whose rows' order the driver does not keep in an ``executemany``);
        the first result row of each (None for none)."""
        compiled, values = self._many(conn, rows)
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        dbapi = conn.dialect.loaded_dbapi
        out: list[Any] = []
        try:
            for one in values:
                try:
                    cursor.execute(compiled.sql, one)
                except dbapi.Error as exc:
                    raise _translated(conn, compiled.sql, one, exc) from exc
                row = cursor.fetchone()
                out.append(None if row is None else compiled.row(row))
        finally:
            cursor.close()
        return out


class RowidInsert:
    """An ``INSERT`` of many rows into a SQLite table whose ``id`` is its rowid, with the rows'
    ids learned without a statement per row.

    The write transaction holds SQLite's write lock (``BEGIN IMMEDIATE``), so nobody else
    inserts meanwhile, and SQLite gives each new row the largest rowid plus one: the rows of
    one ``executemany`` take the ids after the largest before it, in the order given. They are
    read back (``id > largest``, a range of the primary key) and checked to be exactly that.
    ``statement`` may turn rows away (``ON CONFLICT DO NOTHING``): :meth:`after` gives the
    callers the rows that went in, to match by a unique column of their own.
    """

    def __init__(self, statement: ClauseElement, table: Table, keys: Sequence[str],
                 returned: Sequence[str] = ("id",)) -> None:  # fmt: skip
        self.statement = HotStatement(statement, insert_keys=keys)
        self._largest = HotStatement(select(func.max(table.c.id)))
        self._after = HotStatement(
            select(*(table.c[name] for name in returned))
            .where(table.c.id > bindparam("after"))
            .order_by(table.c.id)
        )

    def largest(self, conn: Connection) -> int:
        """The largest id now (0 for an empty table)."""
        return int(self._largest.scalar(conn, {}) or 0)

    def after(self, conn: Connection, largest: int) -> list[tuple[Any, ...]]:
        """The rows (their ``returned`` columns) inserted since :meth:`largest` was read."""
        return self._after.all(conn, {"after": largest})

    def ids(self, conn: Connection, rows: Sequence[Mapping[str, Any]] | Batch) -> list[int]:
        """Insert ``rows`` (none turned away); their ids, in the order given."""
        batch = self.statement.batch(rows)
        largest = self.largest(conn)
        self.statement.execute_many(conn, batch)
        ids = [int(row[0]) for row in self.after(conn, largest)]
        if ids != list(range(largest + 1, largest + 1 + batch.count)):
            raise RuntimeError(f"{batch.count} rows inserted after id {largest}, got ids {ids[:5]}")
        return ids


def _next_ids(table: str, count: int) -> str:
    """As many ids of ``table``'s serial ``id`` as asked for, in one statement with its values
    written in (``table`` as a string literal, ``count`` an int): it may then follow another
    statement in one round trip. The sequence is looked up once, in a ``MATERIALIZED`` CTE:
    in a plain subquery (or the select list) the planner folds it into each row and
    ``pg_get_serial_sequence`` ran for every id (4-5 ms for 1,000 ids against 1)."""
    literal = "'" + table.replace("'", "''") + "'"  # our table's quoted name, as a literal
    sequence = f"SELECT pg_get_serial_sequence({literal}, 'id')::regclass AS seq"
    series = f"generate_series(1, {int(count)})"
    return f"WITH s AS MATERIALIZED ({sequence}) SELECT nextval(s.seq) FROM s, {series}"  # noqa: S608 - a literal and an int


class CopyInsert:
    """Many rows into a PostgreSQL table whose ``id`` is serial, by ``COPY`` (psycopg).

    The ids are drawn from the table's own sequence first, as many as there are rows, in one
    statement; they are unique whatever order they come in, and sorted they go to the rows in
    the order given (ids then grow with the order of the batch, as one-by-one inserts would
    number them). Then the rows, ids included, go in by one ``COPY ... FROM STDIN``: the
    server parses no statement per row (psycopg's pipelined ``executemany`` of ``INSERT ...
    RETURNING id`` ran one per row, about 50 us each with the table's indexes), and nothing
    else is sent for each row. Values go through the same column types' bind processors as
    every other write (:meth:`HotStatement.parameters`), so they are stored as the ORM stores
    them; a constraint failure is SQLAlchemy's ``IntegrityError``, as from any statement.
    """

    def __init__(self, table: Table, keys: Sequence[str]) -> None:
        self._table = table
        self._values = HotStatement(insert(table), insert_keys=keys)  # types and defaults

    def ids(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]] | Batch, *,
        savepoint: str | None = None,
    ) -> list[int]:  # fmt: skip
        """Insert ``rows``; their ids, in the order given.

        ``savepoint``: the ``COPY`` goes under a savepoint of that name, set in the same round
        trip as the ids are drawn; if it fails (``IntegrityError``...) the transaction is
        rolled back to it, the rest of the transaction kept, and the error raised. It is not
        released: the commit ends it (a round trip saved)."""
        batch = self._values.batch(rows)
        table = conn.dialect.identifier_preparer.format_table(self._table)
        mark = None if savepoint is None else conn.dialect.identifier_preparer.quote(savepoint)
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        dbapi = conn.dialect.loaded_dbapi
        try:
            if mark is None:
                cursor.execute(_next_ids(table, batch.count))
            else:  # no parameters: both statements go as one query
                cursor.execute(f"SAVEPOINT {mark}; {_next_ids(table, batch.count)}")
                cursor.nextset()
            ids = sorted(int(row[0]) for row in cursor.fetchall())
        except dbapi.Error as exc:  # as Connection.execute raises it, a lost one invalidated
            raise _translated(conn, "(ids)", None, exc) from exc
        finally:
            cursor.close()
        try:
            self.insert(conn, batch, ids)
        except DBAPIError:
            if mark is not None:
                _send_text(conn, f"ROLLBACK TO SAVEPOINT {mark}").done()
            raise
        return ids

    def insert(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]] | Batch, ids: Sequence[int]
    ) -> None:
        """Insert ``rows`` with these ids (drawn ahead, one a row, in order: see
        :func:`next_ids`) by one ``COPY``."""
        compiled = self._values._compiled(conn.dialect)
        batch = self._values.batch(rows)
        if len(ids) != batch.count:
            raise ValueError(f"{len(ids)} ids for {batch.count} rows")
        columns = compiled.columns(batch)
        quote = conn.dialect.identifier_preparer
        table = quote.format_table(self._table)
        names = ", ".join(quote.quote(self._table.c[name].name) for name in compiled.names)
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        dbapi = conn.dialect.loaded_dbapi
        sql = f"COPY {table} (id, {names}) FROM STDIN"
        try:
            with cursor.copy(sql) as copy:
                for row in zip(ids, *columns, strict=True):
                    copy.write_row(row)
        except dbapi.Error as exc:  # as Connection.execute raises it, a lost one invalidated
            raise _translated(conn, sql, None, exc) from exc
        finally:
            cursor.close()


class Sent:
    """A statement run on the driver's cursor whose rows are fetched when asked for: in a
    :func:`pipelined` block, the statements sent one after the other go to the server together
    and the first fetch waits for all of their results (one round trip for all). A driver error
    is raised as Connection.execute raises it, by the fetch that meets it."""

    __slots__ = ("_conn", "_cursor", "_row", "_sql")

    def __init__(
        self, conn: Connection, cursor: Any, sql: str,
        row: Callable[[Sequence[Any]], tuple[Any, ...]] = tuple,
    ) -> None:  # fmt: skip
        self._conn = conn
        self._cursor = cursor
        self._sql = sql
        self._row = row

    def all(self) -> list[tuple[Any, ...]]:
        """Every row of the result (the cursor is closed)."""
        dbapi = self._conn.dialect.loaded_dbapi
        try:
            return [self._row(row) for row in self._cursor.fetchall()]
        except dbapi.Error as exc:
            raise _translated(self._conn, self._sql, None, exc) from exc
        finally:
            self._cursor.close()

    def close(self) -> None:
        """Close the cursor (its result unread)."""
        self._cursor.close()

    def done(self) -> int:
        """Wait for a statement without rows; its row count (the cursor is closed)."""
        dbapi = self._conn.dialect.loaded_dbapi
        try:
            self._cursor.fetchall() if self._cursor.description else None
            return int(self._cursor.rowcount)
        except dbapi.Error as exc:
            raise _translated(self._conn, self._sql, None, exc) from exc
        finally:
            self._cursor.close()


def _send_text(conn: Connection, sql: str, values: Sequence[Any] | None = None) -> Sent:
    """Run ``sql`` (with positional ``values``) on the driver's cursor, fetched later."""
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    dbapi = conn.dialect.loaded_dbapi
    try:
        cursor.execute(sql, values)
    except dbapi.Error as exc:
        cursor.close()
        raise _translated(conn, sql, values, exc) from exc
    return Sent(conn, cursor, sql)


def pipelines(conn: Connection) -> bool:
    """Whether :func:`pipelined` sends statements together on ``conn`` (psycopg 3)."""
    return conn.dialect.driver == "psycopg"


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """The statements run on ``conn`` in the block go to the server in psycopg's pipeline mode:
    each is sent without waiting for the one before, and a fetch (:class:`Sent`) waits for
    the results of all sent so far: one round trip for many statements, in the transaction of
    the connection. psycopg's own BEGIN (before a transaction's first statement) is sent and
    waited for alone, a round trip before the block's; the BEGIN of a transaction opened by
    :meth:`~jobengine.store.db.Store.write_pipelined` goes with the block's statements instead
    (as :func:`~jobengine.store.intake.begin`'s does). An error makes the server skip the
    statements after it up to the end of the block; it is raised as Connection.execute raises
    it. Elsewhere (SQLite), the statements run one by one as ever."""
    if not pipelines(conn):
        yield
        return
    driver: Any = conn.connection.dbapi_connection
    dbapi = conn.dialect.loaded_dbapi
    try:
        with driver.pipeline():
            yield
    except dbapi.Error as exc:  # met when the block's end syncs
        raise _translated(conn, "(pipeline)", None, exc) from exc


def next_ids(conn: Connection, table: Table, count: int) -> Sent:
    """Draw ``count`` ids of ``table``'s serial ``id`` from its sequence (PostgreSQL), fetched
    later: sorted, they go to rows in the order given, as one-by-one inserts number them."""
    name = conn.dialect.identifier_preparer.format_table(table)
    return _send_text(conn, _next_ids(name, count))


def inserted_ids(
    conn: Connection, hot: HotStatement, batched: Executable,
    rows: Sequence[Mapping[str, Any]] | Batch,
    *, sqlite: RowidInsert | None = None, copy: CopyInsert | None = None,
) -> list[int]:  # fmt: skip
    """Insert ``rows``; their ids, in the order given.

    ``hot`` is ``INSERT ... RETURNING id`` as a :class:`HotStatement` (the rows' keys),
    ``batched`` the same as ``insert(table).returning(table.c.id, sort_by_parameter_order=True)``
    ``sqlite`` the plain insert as a :class:`RowidInsert` and ``copy`` the table's
    :class:`CopyInsert`.

    * psycopg (PostgreSQL): ``copy``'s ids from the sequence and one ``COPY``. Without it,
      ``hot``'s one-row statement through the driver's ``executemany`` with
      ``returning=True``, which pipelines every row in one round trip and gives each row's
      result in order. (SQLAlchemy's multi-row ``VALUES`` for ``batched`` spent about 200 us a
      row in psycopg's placeholder parsing of the long statement.)
    * SQLite: ``sqlite``'s ``executemany`` and the ids after the largest (see
      :class:`RowidInsert`). SQLite does not promise the order of a multi-row ``RETURNING``,
      and ``hot`` row by row on the cursor cost about 30 us a row. Without ``sqlite``, that.
    * Any other driver: ``batched`` through SQLAlchemy.

    ``rows`` may be a :class:`Batch` (its raw JSON decoded again for SQLAlchemy's path).
    """
    batch = hot.batch(rows)
    if not batch.count:
        return []
    if conn.dialect.name == "sqlite":
        if sqlite is not None:
            return sqlite.ids(conn, batch)
        return [int(row[0]) for row in hot.each_first(conn, batch)]
    if conn.dialect.driver == "psycopg":
        if copy is not None:
            return copy.ids(conn, batch)
        return [int(row[0]) for row in hot.returning_many(conn, batch)]
    table = getattr(batched, "table", None)
    types = {c.key: c.type for c in table.columns} if table is not None else {}
    return [int(i) for i in conn.execute(batched, batch.rows(types)).scalars().all()]


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
