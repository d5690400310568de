"""Bring the database to the schema this ``golem`` knows, cheaply when it already is.

Every command that touches the database calls ``ensure_schema``. The common case
(already at head) costs one query and never imports Alembic (~300 ms). When
behind, one process takes a lock, checks again, and upgrades through its own
connection; the others wait on the lock and then find the work done. On SQLite
the lock is a file beside the database; on a shared PostgreSQL database, where
the other processes may be on other machines, it is a transaction-level advisory
lock, and the whole upgrade is one transaction (PostgreSQL's DDL is
transactional), so a failed upgrade leaves the schema as it was.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import os
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError, ProgrammingError
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


# The advisory lock that serialises upgrades of a shared database ("golem" in ASCII).
MIGRATION_LOCK_KEY = 0x676F6C656D


def _current_revision(connection: Connection) -> str | None:
    try:
        row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    except OperationalError as error:  # SQLite
        if "no such table" in str(error):
            return None
        raise
    except ProgrammingError as error:  # PostgreSQL: the failed statement ends the transaction
        if "does not exist" in str(error):
            connection.rollback()
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


def check_known_revision(revision: str | None, label: str) -> None:
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise StateError(
            f"The database {label} was written by a newer golem (schema {revision})",
            hint="Upgrade golem (pip install -U golem-vm-requestor); the database was not changed.",
        )


async def ensure_schema(engine: AsyncEngine, label: str) -> None:
    """Raises sqlalchemy's errors as they are; ``Database`` translates them (db/errors.py).

    ``label`` names the database in messages: the SQLite file's path (its lock file
    lies beside it), or the PostgreSQL URL without credentials.
    """
    revision = await read_revision(engine)
    if revision == HEAD_REVISION:
        return
    check_known_revision(revision, label)
    if engine.dialect.name == "postgresql":
        await _upgrade_shared(engine, label)
        return
    db_path = Path(label)
    lock_path = db_path.with_name(db_path.name + ".migrate.lock")
    lock_fd = await asyncio.to_thread(_lock, lock_path)
    try:
        async with engine.connect() as connection:
            revision = await connection.run_sync(_current_revision)
            if revision == HEAD_REVISION:
                return
            check_known_revision(revision, label)
            await connection.run_sync(_upgrade)
            await connection.commit()
    finally:
        os.close(lock_fd)


async def _upgrade_shared(engine: AsyncEngine, label: str) -> None:
    """Upgrade a PostgreSQL database that other machines may be upgrading too."""
    from sqlalchemy import text

    async with engine.connect() as connection:
        # Held until this transaction ends: a process that dies mid-upgrade frees it.
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
        # Asked so that a missing table does not fail (and so end) the transaction.
        revision = await connection.run_sync(_current_revision_if_present)
        if revision == HEAD_REVISION:
            return
        check_known_revision(revision, label)
        await connection.run_sync(_upgrade)
        await connection.commit()


def _current_revision_if_present(connection: Connection) -> str | None:
    """The revision, asked without failing the transaction when there is none."""
    present = connection.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar()
    return None if present is None else _current_revision(connection)


def _lock(lock_path: Path) -> int:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd
