"""Adopt the earlier requestor's VMs, and keep aside the rows that cannot be read.

Every row of ``legacy_vms`` (see 0001) becomes a VM of the new schema. A row
whose config is not readable JSON with the resources in it is copied verbatim
into ``legacy_rejected_vms`` with the reason; ``golem vm list`` reports those.
``legacy_vms`` itself is left untouched, so nothing is ever lost.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KNOWN_STATUSES = {"creating", "running", "stopping", "stopped", "error", "deleted"}
MAX_SQLITE_INT = 2**63 - 1


def _positive_int(config: dict[str, Any], key: str) -> int:
    value = config[key]
    if isinstance(value, float) and value.is_integer():  # 2.0 is fine; 2.5, inf, nan are not
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SQLITE_INT:
        raise ValueError(f"config.{key} is not a positive whole number: {value!r}")
    return value


def _parse_time(raw: Any) -> datetime:
    if isinstance(raw, str) and raw:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(UTC)
            return parsed.replace(tzinfo=None)
    return datetime.now(UTC).replace(tzinfo=None)


def _adopt(row: sa.Row[Any]) -> dict[str, Any]:
    """The new-schema VM for one legacy row; ValueError says why it cannot be read."""
    name, provider_ip, vm_id = row.name, row.provider_ip, row.vm_id
    for label, value in (("name", name), ("provider_ip", provider_ip), ("vm_id", vm_id)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{label} is empty")
    try:
        config = json.loads(row.config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"config is not JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError("config is not a JSON object")
    try:
        cpu, memory, storage = (_positive_int(config, k) for k in ("cpu", "memory", "storage"))
    except KeyError as missing:
        raise ValueError(f"config has no {missing.args[0]}") from None
    ssh_port = config.get("ssh_port")
    if ssh_port is not None and (
        isinstance(ssh_port, bool) or not isinstance(ssh_port, int) or not 0 < ssh_port < 65536
    ):
        raise ValueError(f"config.ssh_port is not a port: {ssh_port!r}")
    status = row.status if row.status in KNOWN_STATUSES else "error"
    created = _parse_time(row.created_at)
    return {
        "name": name,
        "provider_id": None,  # the earlier requestor did not record it
        "provider_ip": provider_ip,
        "provider_vm_name": vm_id,
        "cpu": cpu,
        "memory": memory,
        "storage": storage,
        "status": status,
        "ssh_host": provider_ip,
        "ssh_port": ssh_port,
        "ssh_user": "ubuntu",
        "ssh_key_path": None,
        "host_key": None,
        "last_error": None if row.status in KNOWN_STATUSES else f"legacy status {row.status!r}",
        "created_at": created,
        "updated_at": datetime.now(UTC).replace(tzinfo=None),
    }


def upgrade() -> None:
    rejected = op.create_table(
        "legacy_rejected_vms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("provider_ip", sa.Text(), nullable=True),
        sa.Column("vm_id", sa.Text(), nullable=True),
        sa.Column("config", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legacy_rejected_vms")),
    )
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("legacy_vms"):
        return
    legacy_columns = {c["name"] for c in sa.inspect(bind).get_columns("legacy_vms")}
    status_col = "status" if "status" in legacy_columns else "'running'"
    created_col = "created_at" if "created_at" in legacy_columns else "NULL"
    rows = bind.execute(
        sa.text(
            f"SELECT name, provider_ip, vm_id, config, {status_col} AS status, "
            f"CAST({created_col} AS TEXT) AS created_at FROM legacy_vms ORDER BY rowid"
        )
    ).fetchall()
    vms = sa.table(
        "vms", *(sa.column(c) for c in (
            "name", "provider_id", "provider_ip", "provider_vm_name", "cpu", "memory", "storage",
            "status", "ssh_host", "ssh_port", "ssh_user", "ssh_key_path", "host_key",
            "last_error",
        )),
        # Typed, so SQLAlchemy formats them as the models do (not sqlite3's deprecated adapter).
        sa.column("created_at", sa.DateTime()), sa.column("updated_at", sa.DateTime()),
    )
    # After a downgrade to 0001 and back, vms still holds the rows adopted before:
    # those are kept as they are now (not adopted twice).
    existing = {
        (r.provider_ip, r.provider_vm_name): r.name
        for r in bind.execute(sa.text("SELECT name, provider_ip, provider_vm_name FROM vms"))
    }
    names = set(existing.values())
    taken: set[tuple[str, str]] = set()
    for row in rows:
        try:
            vm = _adopt(row)
            key = (vm["provider_ip"], vm["provider_vm_name"])
            if key not in taken and existing.get(key) == vm["name"]:
                taken.add(key)
                continue
            if key in taken or key in existing:
                raise ValueError("another row has the same provider_ip and vm_id")
            if vm["name"] in names:
                raise ValueError(f"the name {vm['name']!r} is taken by another VM")
            taken.add(key)
            names.add(vm["name"])
        except ValueError as error:
            bind.execute(
                rejected.insert().values(
                    name=_text(row.name), provider_ip=_text(row.provider_ip),
                    vm_id=_text(row.vm_id), config=_text(row.config),
                    status=_text(row.status), created_at=_text(row.created_at),
                    reason=str(error),
                )
            )
            continue
        bind.execute(vms.insert().values(**vm))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def downgrade() -> None:
    # Lossless: adopted rows stay in vms, and legacy_vms still holds every original.
    op.drop_table("legacy_rejected_vms")
