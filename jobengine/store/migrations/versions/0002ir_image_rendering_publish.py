"""ImageRenderingPublishJob: when each asset was last published to the Image Rendering catalog.

Revision ID: 0002ir
Revises: 0001
Created: 2026-12-07

``assets.rendering_published_at`` (nullable: no asset has been published there yet). The Image
Serving publish keeps ``published_at``; the Image Rendering publish is incremental on its own
column, so neither publish makes the other skip an asset. The new asset types (Vignette,
Cabinet, WindowsCovering) are values of ``assets.type`` and need no change here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002ir"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("assets", sa.Column("rendering_published_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("assets", "rendering_published_at")
