"""Alembic environment: async, batch mode for SQLite (PostgreSQL alters in place),
one shared connection.

golem passes its own open connection in ``config.attributes["connection"]``
(see requestor/db/migrate.py); the ``alembic`` command line opens one from the
URL instead (GOLEM_REQUESTOR_DATABASE_URL, else GOLEM_REQUESTOR_DB_PATH, else
alembic.ini's development file).
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from requestor.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    shared = os.environ.get("GOLEM_REQUESTOR_DATABASE_URL")
    if shared:
        from requestor.settings import load_settings

        return str(load_settings().database_url)
    db_path = os.environ.get("GOLEM_REQUESTOR_DB_PATH")
    if db_path:
        return f"sqlite+aiosqlite:///{db_path}"
    return str(config.get_main_option("sqlalchemy.url"))


async def _run_with_new_engine() -> None:
    from pathlib import Path

    from requestor.db.engine import create_engine

    url = _url()
    engine = create_engine(url if url.startswith("postgresql") else Path(url.split("///", 1)[1]))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    shared: Connection | None = config.attributes.get("connection")
    if shared is not None:
        _configure(shared)
    else:
        asyncio.run(_run_with_new_engine())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
