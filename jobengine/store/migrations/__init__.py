"""The job store's Alembic migrations: ``env.py`` and ``versions/``, run by store/migrate.py."""
