"""The lean read (``requestor.db.lean``, standard-library sqlite3) gives exactly
what the ORM gives, for every column of ``vms``: the models stay the single
source of truth, and a column added to them but not to the lean read fails here.
It answers only for a database at head; otherwise the ORM path takes over."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from requestor.db import lean
from requestor.db.engine import Database
from requestor.db.models import VM, Provider, VMStatus
from requestor.db.repository import list_vms
from requestor.services.views import VMView, vm_view


async def _fill(path: Path) -> list[VMView]:
    """Two VMs, one with every nullable column set and one with all of them empty,
    and one legacy row that could not be adopted; what the ORM reads back."""
    async with Database(path) as db:
        async with db.write() as session:
            session.add(Provider(provider_id="p-1", ip_address="127.0.0.5", country="SE", cpu=4))
            session.add(
                VM(
                    name="full",
                    provider_id="p-1",
                    provider_ip="127.0.0.5",
                    provider_vm_name="full-1a2b",
                    cpu=2,
                    memory=4,
                    storage=20,
                    status=VMStatus.RUNNING,
                    ssh_host="127.0.0.5",
                    ssh_port=50022,
                    ssh_user="ubuntu",
                    ssh_key_path="/k/id_ed25519",
                    host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI comment",
                    last_error="it said \x1b[31m no",
                    created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
                )
            )
            session.add(
                VM(
                    name="bare",
                    provider_ip="127.0.0.6",
                    provider_vm_name="bare-3c4d",
                    cpu=1,
                    memory=1,
                    storage=10,
                    status=VMStatus.CREATING,
                )
            )
        async with db.write() as session:
            await session.execute(
                VM.__table__.update().where(VM.name == "bare").values(ssh_user="root")
            )
        async with db.read() as session:
            return [vm_view(vm) for vm in await list_vms(session)]


async def test_the_lean_read_equals_the_orm_for_every_column(tmp_path: Path) -> None:
    path = tmp_path / "vms.db"
    from_orm = await _fill(path)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO legacy_rejected_vms (name, reason) VALUES ('old', 'unreadable')"
        )
    connection.close()

    columns = [column.name for column in VM.__table__.columns]
    assert sorted(lean.VM_COLUMNS) == sorted(columns)
    assert sorted(f.name for f in dataclasses.fields(VMView)) == sorted(columns)

    snapshot = lean.read(path)
    assert snapshot is not None and snapshot.rejected_legacy == 1
    assert [VMView(**row) for row in snapshot.vms] == from_orm
    for row, view in zip(snapshot.vms, from_orm, strict=True):
        for column in columns:
            assert type(row[column]) is type(getattr(view, column)), column

    one = lean.read(path, "bare")
    assert one is not None and [VMView(**row) for row in one.vms] == [from_orm[1]]
    missing = lean.read(path, "nope")
    assert missing is not None and missing.vms == []


async def test_only_a_database_at_head_is_read(tmp_path: Path) -> None:
    path = tmp_path / "vms.db"
    assert lean.read(path) is None  # no file: the ORM path creates it
    await _fill(path)
    for revision in ("0001", "9999"):  # behind: the ORM path migrates; newer: it refuses
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        connection.close()
        assert lean.read(path) is None
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    assert lean.read(tmp_path / "junk.db") is None
