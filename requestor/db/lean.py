"""A read of local state through the standard library's ``sqlite3``, for the
commands that only read (``vm list``, ``vm ssh``/``cp``/``forward``): loading
SQLAlchemy costs ~170-230 ms, more than the rest of such a command.

Used only when the database exists and its schema is at the head this package
knows; otherwise (missing file, older or newer schema, any SQLite error) it
answers None and the caller takes the ORM path, which creates, migrates or
explains. The connection is read-only (``mode=ro``), so this path never writes.

The models (``models.py``) stay the single source of truth: ``VM_COLUMNS`` must
name every column of ``vms``, and a test compares this read with the ORM's for
every column, so a column added to the model and not here fails it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from requestor.db.revisions import HEAD_REVISION
from requestor.settings import Settings
from requestor.statefiles import make_private
from requestor.status import VMStatus

VM_COLUMNS = (
    "id",
    "name",
    "status",
    "provider_id",
    "provider_ip",
    "provider_vm_name",
    "cpu",
    "memory",
    "storage",
    "ssh_host",
    "ssh_port",
    "ssh_user",
    "ssh_key_path",
    "host_key",
    "last_error",
    "created_at",
    "updated_at",
    "created_by_user",
    "created_by_host",
    "last_actor",
    "last_action",
    "last_action_at",
    "ssh_public_key",
)
_TIMES = ("created_at", "updated_at", "last_action_at")
BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Snapshot:
    """VM rows (column -> value, typed as the ORM types them) and the count of the
    earlier golem's rows that could not be adopted."""

    vms: list[dict[str, Any]]
    rejected_legacy: int


def snapshot(settings: Settings, name: str | None = None) -> Snapshot | None:
    """``read`` of the settings' database; None (the ORM path) for a shared
    PostgreSQL database, which only the ORM reaches."""
    return None if settings.shared_database else read(settings.db_path, name)


def read(db_path: Path, name: str | None = None) -> Snapshot | None:
    """Every VM (or the one named ``name``), oldest first; None: use the ORM path."""
    if not db_path.is_file():
        return None
    make_private(db_path)  # the common command is a read: tighten here too
    connection = _open_read_only(db_path)
    if connection is None:
        return None
    try:
        # One read transaction: the rows and the revision are one snapshot.
        connection.execute("BEGIN")
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        if row is None or row[0] != HEAD_REVISION:
            return None
        query = f"SELECT {', '.join(VM_COLUMNS)} FROM vms"
        parameters: tuple[str, ...] = ()
        if name is not None:
            query += " WHERE name = ?"
            parameters = (name,)
        rows = connection.execute(query + " ORDER BY created_at, id", parameters).fetchall()
        rejected = 0
        if name is None:
            rejected = connection.execute("SELECT count(*) FROM legacy_rejected_vms").fetchone()[0]
        return Snapshot([_typed(row) for row in rows], int(rejected))
    except (sqlite3.Error, ValueError):
        return None  # the ORM path reports what is wrong, or migrates
    finally:
        connection.close()


def _typed(row: tuple[Any, ...]) -> dict[str, Any]:
    values = dict(zip(VM_COLUMNS, row, strict=True))
    values["status"] = VMStatus(values["status"])
    for column in _TIMES:
        # Stored as SQLAlchemy stores UTC: naive ISO text (models.UTCDateTime).
        if values[column] is not None:
            values[column] = datetime.fromisoformat(values[column]).replace(tzinfo=UTC)
    return values


def _open_read_only(db_path: Path) -> sqlite3.Connection | None:
    try:
        return sqlite3.connect(
            db_path.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error:
        return None


def can_start(db_path: Path, ip_address: str) -> bool | None:
    """Whether the provider at ``ip_address`` can start a stopped VM, as golem last
    detected it (``provider_capabilities``, any age); None when not known."""
    if not db_path.is_file():
        return None
    connection = _open_read_only(db_path)
    if connection is None:
        return None
    try:
        row = connection.execute(
            "SELECT can_start FROM provider_capabilities WHERE ip_address = ?", (ip_address,)
        ).fetchone()
    except sqlite3.Error:
        return None  # an older schema: not known
    finally:
        connection.close()
    return None if row is None or row[0] is None else bool(row[0])


def grants(db_path: Path, vm_id: int) -> list[tuple[str, str, str | None, str]] | None:
    """(fingerprint, public key, user, granted by) of each key granted on VM
    ``vm_id``; None when the file cannot be read this way (use the ORM path)."""
    connection = _open_read_only(db_path)
    if connection is None:
        return None
    try:
        rows = connection.execute(
            "SELECT fingerprint, public_key, user, granted_by FROM vm_grants"
            " WHERE vm_id = ? ORDER BY granted_at",
            (vm_id,),
        ).fetchall()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return [(str(f), str(k), None if u is None else str(u), str(g)) for f, k, u, g in rows]
