"""Alembic's environment for the job store.

Migrations run only through :mod:`jobengine.store.migrate` (``jobengine db upgrade`` or the
upgrade at start), which passes the connection in its own transaction: a write transaction
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: under an advisory lock), so concurrent starts apply a
revision once. Alembic sees that outer transaction and leaves the commit to it.
"""

from __future__ import annotations

from alembic import context

from jobengine.store.schema import Base


def run() -> None:
    connection = context.config.attributes.get("connection")
    if context.is_offline_mode() or connection is None:
        raise RuntimeError("the job store's migrations run through `jobengine db upgrade`")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters most things by copying the table: autogenerate writes batch operations
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
