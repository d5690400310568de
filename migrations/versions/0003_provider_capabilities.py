"""What each provider node supports (current or legacy generation), remembered
for a short time so that commands do not ask it again and again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_capabilities",
        sa.Column("ip_address", sa.String(length=100), nullable=False),
        sa.Column("reported_provider_id", sa.String(length=256), nullable=True),
        sa.Column("async_create", sa.Boolean(), nullable=False),
        sa.Column("can_start", sa.Boolean(), nullable=True),
        sa.Column("payment_address", sa.String(length=256), nullable=True),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ip_address", name=op.f("pk_provider_capabilities")),
    )


def downgrade() -> None:
    # Only a cache: nothing is lost that the next detection would not find again.
    op.drop_table("provider_capabilities")
