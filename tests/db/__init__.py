"""Helpers shared by the database tests: the earlier requestor's schema, running
Alembic commands through golem's own engine, and a byte-level snapshot of a DB
file and its siblings (to prove a refused file was not touched)."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("concurrent_worker.py")
# Every table of the schema at head.
APP_TABLES = {
    "alembic_version",
    "providers",
    "vms",
    "legacy_rejected_vms",
    "provider_capabilities",
    "user_keys",
    "vm_grants",
}

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


def reflect_schema(connection: Any) -> dict[str, Any]:
    """Everything SQLAlchemy can reflect about our tables (CHECKs included), through
    a synchronous connection of either dialect."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table),
            "fks": inspector.get_foreign_keys(table),
            "uniques": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), i["unique"])
                for i in inspector.get_indexes(table)
            ),
            "checks": sorted(
                (c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table)
            ),
        }
    return schema


def race_workers(
    location: str, workers: int, rounds: int, signals: Path, env: dict[str, str]
) -> list[tuple[str, str]]:
    """Start ``workers`` concurrent_worker.py processes on one (fresh) database, let
    them go at once when every one is ready (a file each in ``signals``), and
    return their (stdout, stderr); fails when one exits non-zero or writes to stderr."""
    signals.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), location, str(worker), str(rounds), str(signals)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,  # PYTHONPATH with the repo and the loopback-only network guard
        )
        for worker in range(workers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(signals.glob("ready-*"))) < workers:
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), "a worker died before the start"
            time.sleep(0.02)  # polls the ready files, the event itself
        (signals / "go").touch()
        outputs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failures = [
        f"worker {i} exited {p.returncode}:\n{err}"
        for i, (p, (_out, err)) in enumerate(zip(procs, outputs, strict=True))
        if p.returncode != 0 or err.strip()
    ]
    assert failures == []
    return outputs
