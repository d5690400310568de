"""Alembic owns the schema: the chain upgrades from empty and from every revision,
downgrades where that loses nothing, matches the models, and the package's
``KNOWN_REVISIONS`` / ``HEAD_REVISION`` match the scripts."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, select

from requestor.db.engine import Database
from requestor.db.lean import VM_COLUMNS
from requestor.db.migrate import HEAD_REVISION, KNOWN_REVISIONS, migrations_dir
from requestor.db.models import VM, Base, Provider, VMStatus
from requestor.errors import StateError
from tests.conftest import GolemEnv
from tests.db import APP_TABLES, alembic, query, reflect_schema, snapshot, tables

TEAM_COLUMNS = {
    "created_by_user",
    "created_by_host",
    "last_actor",
    "last_action",
    "last_action_at",
    "ssh_public_key",
}


def script_directory() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return ScriptDirectory.from_config(config)


def revision_of(path: Path) -> str | None:
    rows = query(path, "SELECT version_num FROM alembic_version")
    assert len(rows) <= 1, rows
    return rows[0][0] if rows else None


def schema_of(path: Path) -> dict[str, Any]:
    """Everything SQLAlchemy can reflect about our tables (CHECKs included)."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return reflect_schema(connection)
    finally:
        engine.dispose()


async def add_sample_rows(path: Path) -> None:
    async with Database(path) as db, db.write() as session:
        session.add(Provider(provider_id="0xprov", ip_address="127.0.0.1", country="SE"))
        await session.flush()
        session.add(
            VM(
                name="kept",
                provider_id="0xprov",
                provider_ip="127.0.0.1",
                provider_vm_name="kept-1",
                cpu=2,
                memory=4,
                storage=20,
                status=VMStatus.RUNNING,
                ssh_port=50800,
                host_key="ssh-ed25519 AAAA",
            )
        )


def test_known_revisions_match_the_scripts() -> None:
    script = script_directory()
    in_order = tuple(reversed([rev.revision for rev in script.walk_revisions()]))
    assert in_order == KNOWN_REVISIONS
    assert script.get_heads() == [HEAD_REVISION]
    assert script.get_current_head() == HEAD_REVISION
    assert script.get_base() == KNOWN_REVISIONS[0]


async def test_upgrade_from_empty_reaches_head_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "vms.db"  # the folder is created too
    async with Database(path):
        pass
    assert revision_of(path) == HEAD_REVISION
    assert tables(path) == APP_TABLES
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


async def test_models_match_migrations(tmp_path: Path) -> None:
    """`alembic check`: autogenerate finds nothing to change against a DB at head."""
    path = tmp_path / "vms.db"
    async with Database(path):
        pass
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "render_as_batch": True,
                },
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


async def test_migrated_schema_equals_models_create_all(tmp_path: Path) -> None:
    """compare_metadata ignores CHECK constraints (the VM status Enum): compare the
    reflected schema of a migrated DB with one made by ``metadata.create_all``."""
    migrated, created = tmp_path / "migrated.db", tmp_path / "created.db"
    async with Database(migrated):
        pass
    engine = create_engine(f"sqlite:///{created}")
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()
    assert schema_of(migrated) == schema_of(created)
    checks = dict(schema_of(migrated)["vms"]["checks"])
    for status in VMStatus:
        assert f"'{status.value}'" in checks["ck_vms_vm_status"]


async def test_upgrade_step_by_step_matches_a_fresh_upgrade(tmp_path: Path) -> None:
    fresh, stepped = tmp_path / "fresh.db", tmp_path / "stepped.db"
    async with Database(fresh):
        pass
    for revision in KNOWN_REVISIONS:
        await alembic(stepped, "upgrade", revision)
        assert revision_of(stepped) == revision
    assert schema_of(stepped) == schema_of(fresh)


@pytest.mark.parametrize("start", KNOWN_REVISIONS[:-1])
async def test_opening_a_db_at_any_older_revision_brings_it_to_head(
    tmp_path: Path, start: str
) -> None:
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    async with Database(fresh):
        pass
    await alembic(old, "upgrade", start)
    assert revision_of(old) == start
    async with Database(old):
        pass
    assert revision_of(old) == HEAD_REVISION
    assert schema_of(old) == schema_of(fresh)


async def test_downgrade_to_base_and_back_on_an_empty_db(tmp_path: Path) -> None:
    path = tmp_path / "vms.db"
    async with Database(path):
        pass
    head_schema = schema_of(path)
    for index in range(len(KNOWN_REVISIONS) - 1, -1, -1):
        await alembic(path, "downgrade", "-1")
        assert revision_of(path) == (KNOWN_REVISIONS[index - 1] if index else None)
    assert tables(path) == {"alembic_version"}
    # ... and every step back up again.
    for revision in KNOWN_REVISIONS:
        await alembic(path, "upgrade", "+1")
        assert revision_of(path) == revision
    assert schema_of(path) == head_schema


async def test_downgrade_of_the_adoption_step_keeps_every_vm(tmp_path: Path) -> None:
    """0002 -> 0001 -> 0002 is lossless: VMs and providers survive unchanged."""
    path = tmp_path / "vms.db"
    await add_sample_rows(path)
    # The columns of 0001 (0004's team columns go with the downgrade past it).
    columns_0001 = ", ".join(c for c in VM_COLUMNS if c not in TEAM_COLUMNS)
    before_vms = query(path, f"SELECT {columns_0001} FROM vms ORDER BY id")
    before_providers = query(path, "SELECT * FROM providers")
    assert len(before_vms) == 1

    await alembic(path, "downgrade", "0001")
    assert "legacy_rejected_vms" not in tables(path)
    assert query(path, f"SELECT {columns_0001} FROM vms ORDER BY id") == before_vms

    async with Database(path) as db, db.read() as session:
        names = (await session.scalars(select(VM.name))).all()
    assert names == ["kept"]
    assert revision_of(path) == HEAD_REVISION
    assert query(path, f"SELECT {columns_0001} FROM vms ORDER BY id") == before_vms
    assert query(path, "SELECT * FROM providers") == before_providers


async def test_at_head_the_check_never_imports_alembic(tmp_path: Path, golem_env: GolemEnv) -> None:
    """Opening a DB already at head must not import Alembic (~300 ms); a fresh DB must."""
    at_head, fresh = tmp_path / "at-head.db", tmp_path / "fresh.db"
    async with Database(at_head):
        pass
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from pathlib import Path
        from requestor.db.engine import Database

        async def main(at_head, fresh):
            result = {}
            async with Database(Path(at_head)):
                pass
            result["alembic_after_head"] = "alembic" in sys.modules
            async with Database(Path(fresh)):
                pass
            result["alembic_after_fresh"] = "alembic" in sys.modules
            print(json.dumps(result))

        asyncio.run(main(*sys.argv[1:]))
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", script, str(at_head), str(fresh)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=golem_env.env,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"alembic_after_head": False, "alembic_after_fresh": True}


# --- files golem must refuse, without touching them ----------------------------------


async def test_a_newer_schema_is_refused_and_the_file_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "vms.db"
    await add_sample_rows(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    connection.close()
    before = snapshot(path)
    with pytest.raises(StateError) as caught:
        async with Database(path):
            pass
    assert "newer golem" in caught.value.message and "0099" in caught.value.message
    assert caught.value.hint and "not changed" in caught.value.hint
    assert snapshot(path) == before
    assert revision_of(path) == "0099"


@pytest.mark.parametrize("damage", ["random-bytes", "garbled-pages"])
async def test_a_corrupt_file_is_refused_and_unchanged(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "vms.db"
    if damage == "random-bytes":
        path.write_bytes(b"\x01not sqlite" + os.urandom(16384))
    else:  # a real SQLite header, garbage after it
        await add_sample_rows(path)
        data = bytearray(path.read_bytes())
        data[100:] = os.urandom(len(data) - 100)
        path.write_bytes(bytes(data))
    before = snapshot(path)
    with pytest.raises(StateError) as caught:
        async with Database(path) as db, db.read() as session:
            await session.scalars(select(VM))
    assert str(path) in caught.value.message
    assert "not a readable SQLite file" in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.hint and "Move the file aside" in caught.value.hint
    assert snapshot(path) == before
