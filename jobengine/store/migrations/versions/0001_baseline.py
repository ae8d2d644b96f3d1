"""Baseline: the schema of the last release made without migrations (tables from create_all).

Revision ID: 0001
Revises: -
Created: 2026-12-06

A new store gets every table here. A store made before migrations (by ``create_all`` and the
nullable columns that releases added by hand at start) has no ``alembic_version`` table, so it
comes here too: its tables are kept with their data, and whatever its release lacked of this
schema (tables, nullable columns, indexes) is added. The definitions are frozen copies, not
jobengine.store.schema: later revisions change the schema, this one must not move.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bind = op.get_bind()
    metadata = sa.MetaData()
    _tables(metadata)
    metadata.create_all(bind, checkfirst=True)  # every table of a new store, missing ones else
    _adopt(bind, metadata)


def downgrade() -> None:
    metadata = sa.MetaData()
    _tables(metadata)
    metadata.drop_all(op.get_bind())


def _adopt(bind: sa.Connection, metadata: sa.MetaData) -> None:
    """Add the nullable columns and the indexes that a store made by an older release lacks."""
    inspector = sa.inspect(bind)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:  # releases only ever added nullable columns
                raise RuntimeError(f"the store's {table.name} table has no {column.name} column")
            op.add_column(table.name, sa.Column(column.name, column.type, nullable=True))
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)


def _tables(metadata: sa.MetaData) -> None:
    sa.Table(
        "companies",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("handle", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("handle"),
    )
    sa.Table(
        "users",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("handle", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("user_type", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
        sa.UniqueConstraint("handle"),
    )
    sa.Table(
        "api_tokens",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        sa.Index("ix_api_tokens_user_id", "user_id"),
    )
    sa.Table(
        "folders",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("company_id", "path"),
    )
    sa.Table(
        "image_formats",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("name_key", sa.String(length=255), nullable=False),
        sa.Column("url_modifier", sa.String(length=512), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("company_id", "name_key"),
    )
    sa.Table(
        "jobs",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("live_key", sa.String(length=255), nullable=True),
        sa.Column("handle", sa.String(length=400), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("submit_user_id", sa.Integer(), nullable=True),
        sa.Column("run_as_user_id", sa.Integer(), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("exec_time", sa.DateTime(), nullable=True),
        sa.Column("exec_schedule", sa.String(length=255), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("trigger_state", sa.String(length=16), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(), nullable=True),
        sa.Column("fired_through", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"]),
        sa.ForeignKeyConstraint(["run_as_user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["submit_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("company_id", "live_key"),
        sa.Index("ix_jobs_due", "trigger_state", "next_fire_at"),
    )
    sa.Table(
        "memberships",
        metadata,
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id", "company_id"),
    )
    sa.Table(
        "set_presets",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("name_key", sa.String(length=255), nullable=False),
        sa.Column("set_type", sa.String(length=32), nullable=False),
        sa.Column("pattern", sa.String(length=512), nullable=False),
        sa.Column("member_order", sa.String(length=16), nullable=False),
        sa.Column("views", sa.JSON(), nullable=False),
        sa.Column("name_template", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("company_id", "name_key"),
    )
    sa.Table(
        "assets",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("handle", sa.String(length=128), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("file_key", sa.String(length=1024), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("publish_state", sa.String(length=32), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ingest_ref", sa.String(length=64), nullable=True),
        sa.Column("optimized_key", sa.String(length=1024), nullable=True),
        sa.Column("optimized_version", sa.DateTime(), nullable=True),
        sa.Column("derived_from", sa.Integer(), nullable=True),
        sa.Column("crop", sa.String(length=64), nullable=True),
        sa.Column("optimized_crop", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"]),
        sa.ForeignKeyConstraint(["folder_id"], ["folders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("company_id", "folder_id", "name"),
        sa.UniqueConstraint("handle"),
        sa.Index("ix_assets_publish", "company_id", "publish_state"),
    )
    sa.Table(
        "runs",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("run_name", sa.String(length=300), nullable=False),
        sa.Column("fire_key", sa.String(length=100), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("eta", sa.DateTime(), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("planned", sa.Boolean(), nullable=False),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("finish_sent_at", sa.DateTime(), nullable=True),
        sa.Column("swept_at", sa.DateTime(), nullable=True),
        sa.Column("notified_at", sa.DateTime(), nullable=True),
        sa.Column("callback_state", sa.String(length=16), nullable=True),
        sa.Column("callback_attempts", sa.Integer(), nullable=True),
        sa.Column("callback_sent_at", sa.DateTime(), nullable=True),
        sa.Column("callback_next_at", sa.DateTime(), nullable=True),
        sa.Column("callback_result", sa.String(length=300), nullable=True),
        sa.Column("total_items", sa.Integer(), nullable=False),
        sa.Column("finished_items", sa.Integer(), nullable=False),
        sa.Column("success_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
        sa.Column("duplicate_count", sa.Integer(), nullable=False),
        sa.Column("update_count", sa.Integer(), nullable=False),
        sa.Column("total_size", sa.BigInteger(), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("progress_message", sa.String(length=255), nullable=False),
        sa.Column("last_progress_update", sa.DateTime(), nullable=True),
        sa.Column("fatal_error", sa.Boolean(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("company_id", "run_name"),
        sa.UniqueConstraint("job_id", "fire_key"),
        sa.Index("ix_runs_state", "state"),
    )
    sa.Table(
        "log_details",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("log_type", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("message_args", sa.JSON(), nullable=True),
        sa.Column("asset_name", sa.String(length=512), nullable=True),
        sa.Column("asset_type", sa.String(length=32), nullable=True),
        sa.Column("asset_handle", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_log_details_asset", "asset_handle"),
        sa.Index("ix_log_details_run", "run_id", "id"),
    )
    sa.Table(
        "run_items",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "seq"),
    )
    sa.Table(
        "set_members",
        metadata,
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["assets.id"]),
        sa.ForeignKeyConstraint(["set_id"], ["assets.id"]),
        sa.PrimaryKeyConstraint("set_id", "position"),
        sa.Index("ix_set_members_member_id", "member_id"),
    )
