"""Small helpers shared by tests: read local state as it is on disk."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

# The smallest VM providers accept: what most tests create.
SMALL_VM = ("--cpu", "1", "--memory", "1", "--storage", "10")


def db_rows(db_path: Path) -> dict[str, dict[str, Any]]:
    """Every VM in the database, by name, straight from SQLite."""
    if not db_path.exists():
        return {}
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute("SELECT * FROM vms").fetchall()
    finally:
        connection.close()
    return {row["name"]: dict(row) for row in rows}


def pg_rows(url: str) -> dict[str, dict[str, Any]]:
    """Every VM in a PostgreSQL database (the URL golem takes), by name."""
    import asyncio

    import asyncpg

    async def read() -> list[Any]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return list(await connection.fetch("SELECT * FROM vms"))
        finally:
            await connection.close()

    return {row["name"]: dict(row) for row in asyncio.run(read())}


def state_rows(location: Path | str) -> dict[str, dict[str, Any]]:
    """Every VM in golem's state, by name: a SQLite file, or a PostgreSQL URL."""
    return pg_rows(location) if isinstance(location, str) else db_rows(location)


def parse_json(output: str) -> Any:
    return json.loads(output)
