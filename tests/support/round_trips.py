"""Round trips between this process and PostgreSQL, counted in libpq's protocol trace.

A round trip is the client waiting for the server: in the trace (one line a protocol message,
``F`` from the client, ``B`` from the server), each run of client messages that follows the
server's, and the first. Counted on the store's write connections checked out in the block.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Engine, event


@dataclass
class Trace:
    """The protocol messages of a block, by direction and type (``"F Query"``, ``"B DataRow"``)."""

    messages: list[str] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        trips, last = 0, "B"
        for message in self.messages:
            side = message[0]
            if side == "F" and last == "B":
                trips += 1
            last = side
        return trips


def _messages(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] in ("F", "B"):
            out.append(f"{parts[0]} {parts[2].split(' ', 1)[0]}")
    return out


@contextmanager
def traced(engine: Engine) -> Iterator[Trace]:
    """Trace the protocol of every connection ``engine`` lends in the block (psycopg)."""
    trace = Trace()
    fd, path = tempfile.mkstemp(prefix="jobengine-trace-")
    flags = psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
    lent: list[Any] = []

    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        dbapi_conn.pgconn.trace(fd)
        dbapi_conn.pgconn.set_trace_flags(flags)
        lent.append(dbapi_conn)

    def checkin(dbapi_conn: Any, record: Any) -> None:
        if dbapi_conn in lent:
            dbapi_conn.pgconn.untrace()  # flushes what libpq holds of the trace
            lent.remove(dbapi_conn)

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        yield trace
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)
        for dbapi_conn in lent:
            dbapi_conn.pgconn.untrace()
        os.close(fd)
        with open(path, encoding="utf-8", errors="replace") as written:
            trace.messages = _messages(written.read())
        os.unlink(path)
