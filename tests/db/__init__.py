"""Helpers shared by the database tests: the earlier requestor's schema, running
Alembic commands through golem's own engine, and a byte-level snapshot of a DB
file and its siblings (to prove a refused file was not touched)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# The earlier requestor's table, exactly as it created it.
LEGACY_SCHEMA = """
CREATE TABLE vms (
    name TEXT PRIMARY KEY,
    provider_ip TEXT NOT NULL,
    vm_id TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)
"""
LEGACY_COLUMNS = ("name", "provider_ip", "vm_id", "config", "status", "created_at")


def make_legacy_db(path: Path, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Write a legacy vms.db (no alembic_version) and return its rows as stored."""
    with sqlite3.connect(path) as connection:
        connection.execute(LEGACY_SCHEMA)
        connection.executemany(
            "INSERT INTO vms (name, provider_ip, vm_id, config, status, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            list(rows),
        )
        stored = connection.execute("SELECT rowid, * FROM vms ORDER BY rowid").fetchall()
    connection.close()
    return stored


def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def tables(path: Path) -> set[str]:
    return {
        row[0]
        for row in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
        if not row[0].startswith("sqlite_")
    }


def snapshot(path: Path) -> dict[str, tuple[str, int, int]]:
    """Every file next to ``path`` whose name starts with its name: hash, size, mtime."""
    return {
        item.name: (
            hashlib.sha256(item.read_bytes()).hexdigest(),
            item.stat().st_size,
            item.stat().st_mtime_ns,
        )
        for item in sorted(path.parent.iterdir())
        if item.name.startswith(path.name) and not item.name.endswith(".migrate.lock")
    }


async def alembic(path: Path | str, action: str, target: str) -> None:
    """``alembic upgrade|downgrade TARGET`` through golem's engine (WAL, explicit BEGIN),
    the same way requestor.db.migrate runs upgrades; ``path`` may be a PostgreSQL URL."""
    from alembic import command
    from alembic.config import Config

    from requestor.db.engine import create_engine
    from requestor.db.migrate import migrations_dir

    def run(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(migrations_dir()))
        config.attributes["connection"] = connection
        getattr(command, action)(config, target)

    engine = create_engine(path)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()
