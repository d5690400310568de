"""Bring the database to the schema this ``golem`` knows, cheaply when it already is.

Every command that touches the database calls ``ensure_schema``. The common case
(already at head) costs one query and never imports Alembic (~300 ms). When
behind, one process takes a file lock, checks again, and upgrades through its own
connection; the others wait on the lock and then find the work done.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import os
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from requestor.db.revisions import HEAD_REVISION, KNOWN_REVISIONS
from requestor.errors import StateError

__all__ = ["HEAD_REVISION", "KNOWN_REVISIONS", "ensure_schema", "migrations_dir"]


def migrations_dir() -> Path:
    """The Alembic script folder: inside the package when installed, else the repo's."""
    spec = importlib.util.find_spec("requestor._migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "migrations"


def _current_revision(connection: Connection) -> str | None:
    try:
        row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    except OperationalError as error:
        if "no such table" in str(error):
            return None
        raise
    return None if row is None else str(row[0])


def _upgrade(connection: Connection, target: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    command.upgrade(config, target)


async def read_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision)


def _check_known(revision: str | None, db_path: Path) -> None:
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise StateError(
            f"The database {db_path} was written by a newer golem (schema {revision})",
            hint="Upgrade golem (pip install -U golem-vm-requestor); the file was not changed.",
        )


async def ensure_schema(engine: AsyncEngine, db_path: Path) -> None:
    """Raises sqlalchemy's errors as they are; ``Database`` translates them (db/errors.py)."""
    revision = await read_revision(engine)
    if revision == HEAD_REVISION:
        return
    _check_known(revision, db_path)
    lock_path = db_path.with_name(db_path.name + ".migrate.lock")
    lock_fd = await asyncio.to_thread(_lock, lock_path)
    try:
        async with engine.connect() as connection:
            revision = await connection.run_sync(_current_revision)
            if revision == HEAD_REVISION:
                return
            _check_known(revision, db_path)
            await connection.run_sync(_upgrade)
            await connection.commit()
    finally:
        os.close(lock_fd)


def _lock(lock_path: Path) -> int:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd
