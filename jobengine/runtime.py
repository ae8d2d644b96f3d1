"""The process-wide runtime: settings, the job store and the asset storage, built once.

Tests and the CLI call :func:`reset_runtime` after changing the environment.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from jobengine.settings import Settings, get_settings, reset_settings
from jobengine.storage import Storage, open_storage
from jobengine.store import migrate
from jobengine.store.db import Store

__all__ = ["Runtime", "get_runtime", "reset_runtime"]


@dataclass(frozen=True)
class Runtime:
    """What every operation needs."""

    settings: Settings
    store: Store
    storage: Storage


@functools.cache
def get_runtime() -> Runtime:
    """The runtime for the current settings (the store's schema is prepared on first use:
    migrated or checked, by ``JOBENGINE_DB_UPGRADE``)."""
    settings = get_settings()
    store = Store(settings.database_url)
    migrate.prepare(store, settings.db_upgrade)
    storage = open_storage(settings.storage_url, settings.storage_options)
    return Runtime(settings=settings, store=store, storage=storage)


def reset_runtime() -> None:
    """Drop the cached runtime and settings (closing the store's connections)."""
    if get_runtime.cache_info().currsize:
        get_runtime().store.dispose()
    get_runtime.cache_clear()
    reset_settings()
