"""Initial schema: providers and VMs.

The earlier requestor kept a ``vms`` table of its own shape in the same file and
no ``alembic_version``. It is renamed to ``legacy_vms`` here (kept, never
dropped) so the new ``vms`` can be created; revision 0002 adopts its rows.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY_COLUMNS = {"name", "provider_ip", "vm_id", "config"}
VM_STATUSES = (
    "creating", "running", "stopping", "stopped", "error", "deleted", "unreachable", "gone",
)


def _has_legacy_vms_table() -> bool:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("vms"):
        return False
    columns = {column["name"] for column in inspector.get_columns("vms")}
    return LEGACY_COLUMNS <= columns and "provider_vm_name" not in columns


def upgrade() -> None:
    if _has_legacy_vms_table():
        op.rename_table("vms", "legacy_vms")

    op.create_table(
        "providers",
        sa.Column("provider_id", sa.String(200), nullable=False),
        sa.Column("ip_address", sa.String(100), nullable=False),
        sa.Column("country", sa.String(8), nullable=True),
        sa.Column("cpu", sa.Integer(), nullable=True),
        sa.Column("memory", sa.Integer(), nullable=True),
        sa.Column("storage", sa.Integer(), nullable=True),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_providers")),
    )
    op.create_table(
        "vms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("provider_id", sa.String(200), nullable=True),
        sa.Column("provider_ip", sa.String(100), nullable=False),
        sa.Column("provider_vm_name", sa.String(64), nullable=False),
        sa.Column("cpu", sa.Integer(), nullable=False),
        sa.Column("memory", sa.Integer(), nullable=False),
        sa.Column("storage", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*VM_STATUSES, name="vm_status", native_enum=False, length=16,
                    create_constraint=True),
            nullable=False,
        ),
        sa.Column("ssh_host", sa.String(255), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=True),
        sa.Column("ssh_user", sa.String(64), nullable=False),
        sa.Column("ssh_key_path", sa.Text(), nullable=True),
        sa.Column("host_key", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["providers.provider_id"],
            name=op.f("fk_vms_provider_id_providers"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vms")),
        sa.UniqueConstraint("name", name=op.f("uq_vms_name")),
        sa.UniqueConstraint(
            "provider_ip", "provider_vm_name", name=op.f("uq_vms_provider_ip_provider_vm_name")
        ),
    )
    with op.batch_alter_table("vms") as batch_op:
        batch_op.create_index(batch_op.f("ix_vms_provider_id"), ["provider_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_index(batch_op.f("ix_vms_provider_id"))
    op.drop_table("vms")
    op.drop_table("providers")
    inspector = sa.inspect(op.get_bind())
    if inspector.has_table("legacy_vms"):
        op.rename_table("legacy_vms", "vms")
