"""One module per revision of the job store's schema (Alembic skips this file)."""
