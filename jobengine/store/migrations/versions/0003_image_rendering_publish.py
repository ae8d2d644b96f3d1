"""ImageRenderingPublishJob: when each asset was last published to the Image Rendering catalog.

Revision ID: 0003
Revises: 0002
Created: 2026-12-07

``assets.rendering_published_at`` (nullable: no asset has been published there yet). The Image
Serving publish keeps ``published_at``; the Image Rendering publish is incremental on its own
column, so neither publish makes the other skip an asset. The new asset types (Vignette,
Cabinet, WindowsCovering) are values of ``assets.type`` and need no change here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A store adopted by 0001 from tables the current models made may have the column already.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("assets")}
    if "rendering_published_at" not in present:
        op.add_column("assets", sa.Column("rendering_published_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("assets", "rendering_published_at")
