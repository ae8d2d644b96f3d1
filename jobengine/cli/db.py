"""``jobengine db``: the job store's schema migrations (see jobengine/store/migrate.py)."""

from __future__ import annotations

from typing import Annotated

import typer

db_app = typer.Typer(help="The job store's schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="The revision to reach.")] = "head",
) -> None:
    """Apply the missing migrations (one process at a time; the others wait, then find it done)."""
    from jobengine.settings import get_settings
    from jobengine.store import migrate
    from jobengine.store.db import Store

    store = Store(get_settings().database_url)
    try:
        before = migrate.current(store)
        migrate.upgrade(store, revision)
        after = migrate.current(store)
    finally:
        store.dispose()
    typer.echo(f"job store: {before or 'no revision'} -> {after}")


@db_app.command("current")
def db_current() -> None:
    """Print the store's revision and this jobengine's newest."""
    from jobengine.settings import get_settings
    from jobengine.store import migrate
    from jobengine.store.db import Store

    store = Store(get_settings().database_url)
    try:
        revision = migrate.current(store)
    finally:
        store.dispose()
    typer.echo(f"store: {revision or 'no revision'}; this jobengine: {migrate.head()}")


@db_app.command("check")
def db_check() -> None:
    """Exit 0 when the store is at this jobengine's revision; else say what to do and exit 1."""
    from jobengine.settings import get_settings
    from jobengine.store import migrate
    from jobengine.store.db import Store

    store = Store(get_settings().database_url)
    try:
        migrate.check(store)
    except migrate.StoreSchemaError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        store.dispose()
    typer.echo(f"job store at {migrate.head()}")


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision does.")],
) -> None:
    """For developers: write the next revision from the difference between
    jobengine/store/schema.py and the store at DATABASE_URL (which must be at the head)."""
    from jobengine.settings import get_settings
    from jobengine.store import migrate
    from jobengine.store.db import Store

    store = Store(get_settings().database_url)
    try:
        path = migrate.new_revision(store, message)
    finally:
        store.dispose()
    typer.echo(f"wrote {path}: read it, adjust it, and test it (tests/store/test_migrations.py)")


def require_store() -> None:
    """Prepare the store as the process will (migrate or check) before it starts: a store that
    is behind stops the command here with what to run, not in its first task."""
    from jobengine.runtime import get_runtime
    from jobengine.store.migrate import StoreSchemaError

    try:
        get_runtime()
    except StoreSchemaError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
