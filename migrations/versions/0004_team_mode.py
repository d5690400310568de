"""Team mode: who created each VM and who last acted on it, the public key a VM
was created with, teammates' public keys, and the keys granted on each VM.

Rows from before this revision have no owner (NULL): golem did not record one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch_op:
        batch_op.add_column(sa.Column("created_by_user", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("created_by_host", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("last_actor", sa.String(320), nullable=True))
        batch_op.add_column(sa.Column("last_action", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("last_action_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("ssh_public_key", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_vms_created_by_user"), ["created_by_user"])

    op.create_table(
        "user_keys",
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(100), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user", "fingerprint", name=op.f("pk_user_keys")),
    )
    op.create_table(
        "vm_grants",
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(100), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("user", sa.String(64), nullable=True),
        sa.Column("granted_by", sa.String(320), nullable=False),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_vm_grants_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("vm_id", "fingerprint", name=op.f("pk_vm_grants")),
    )


def downgrade() -> None:
    op.drop_table("vm_grants")
    op.drop_table("user_keys")
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_index(batch_op.f("ix_vms_created_by_user"))
        for column in (
            "ssh_public_key", "last_action_at", "last_action", "last_actor",
            "created_by_host", "created_by_user",
        ):
            batch_op.drop_column(column)
