"""Indexes for the read operations on a big store (issue 14: growth to a million runs).

Revision ID: 0004
Revises: 0003
Created: 2026-12-07

Without them both read the whole of a company's runs, or all runs, on every call:

* ``ix_runs_company_started`` (company_id, started_at, id): getJobLogs' default listing, a
  company's latest runs (``ORDER BY started_at DESC, id DESC LIMIT numRows``), read from the
  index in order instead of sorting every run of the company.
* ``ix_runs_company_state`` (company_id, state): getActiveJobs, a company's runs in progress;
  SQLite scanned the whole runs table in id order for it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

INDEXES = {
    "ix_runs_company_started": ["company_id", "started_at", "id"],
    "ix_runs_company_state": ["company_id", "state"],
}


def upgrade() -> None:
    # A store adopted by 0001 from tables the current models made may have them already.
    present = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("runs")}
    for name, columns in INDEXES.items():
        if name not in present:
            op.create_index(name, "runs", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="runs")
