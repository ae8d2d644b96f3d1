"""jobs.client: the application that submitted a job (issue 12: each run's JobClient row).

Revision ID: 0002
Revises: 0001
Created: 2026-12-07

A nullable column: jobs submitted before it have no client, and their runs log no JobClient row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A store adopted by 0001 from tables the current models made (a test's, or a development
    # store without a version) may have the column already.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("jobs")}
    if "client" not in present:
        op.add_column("jobs", sa.Column("client", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("client")
