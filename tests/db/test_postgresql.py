"""The same migrations and the same errors on a shared PostgreSQL database (team
mode) as on the local SQLite file: a fresh database reaches head and matches the
models, every step goes down and up again, older databases are brought to head,
many processes migrating a fresh database at once are serialised by the advisory
lock, a newer schema is refused unchanged, and a bad URL, a refused login, a
missing database or an unreachable server are one clear line each, never with
the password in it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from requestor.db.engine import Database
from requestor.db.migrate import HEAD_REVISION, KNOWN_REVISIONS
from requestor.db.models import Base, VMStatus
from requestor.errors import StateError
from tests.conftest import GolemEnv, run_golem
from tests.db import APP_TABLES, alembic, race_workers, reflect_schema
from tests.db.test_concurrency import ROUNDS

# Fewer than the SQLite race's twenty: each process costs ~1 s of start-up on two
# cores, and eight already contend on the first migration and every write.
WORKERS = 8

pytestmark = pytest.mark.postgresql


def pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncio

    async def fetch() -> list[tuple[Any, ...]]:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return [tuple(row) for row in await connection.execute(text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(fetch())  # from a synchronous test


async def pg_query(url: str, sql: str) -> list[tuple[Any, ...]]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]
    finally:
        await engine.dispose()


async def revision_of(url: str) -> str | None:
    present = await pg_query(url, "SELECT to_regclass('alembic_version')")
    if present[0][0] is None:
        return None
    rows = await pg_query(url, "SELECT version_num FROM alembic_version")
    return rows[0][0] if rows else None


async def tables_of(url: str) -> set[str]:
    rows = await pg_query(
        url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    return {row[0] for row in rows}


async def schema_of(url: str) -> dict[str, Any]:
    """What SQLAlchemy reflects of every table (CHECKs included), via the async engine."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(reflect_schema)
    finally:
        await engine.dispose()


async def test_a_fresh_database_reaches_head(pg_url: str) -> None:
    async with Database(pg_url):
        pass
    assert await revision_of(pg_url) == HEAD_REVISION
    assert await tables_of(pg_url) == APP_TABLES


async def test_models_match_migrations(pg_url: str) -> None:
    """`alembic check` on PostgreSQL: autogenerate finds nothing to change at head."""
    from sqlalchemy.ext.asyncio import create_async_engine

    async with Database(pg_url):
        pass

    def compare(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))

    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(compare)
    finally:
        await engine.dispose()
    assert diff == []


async def test_migrated_schema_equals_models_create_all(
    pg_url_factory: Callable[[], str],
) -> None:
    """compare_metadata ignores CHECK constraints: compare reflected schemas too."""
    from sqlalchemy.ext.asyncio import create_async_engine

    migrated, created = pg_url_factory(), pg_url_factory()
    async with Database(migrated):
        pass
    engine = create_async_engine(created)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
    finally:
        await engine.dispose()
    assert await schema_of(migrated) == await schema_of(created)
    checks = dict((await schema_of(migrated))["vms"]["checks"])
    for status in VMStatus:
        assert f"'{status.value}'" in checks["ck_vms_vm_status"]


async def test_every_step_goes_down_and_up_again(pg_url_factory: Callable[[], str]) -> None:
    fresh, stepped = pg_url_factory(), pg_url_factory()
    async with Database(fresh):
        pass
    for revision in KNOWN_REVISIONS:
        await alembic(stepped, "upgrade", revision)
        assert await revision_of(stepped) == revision
    head_schema = await schema_of(fresh)
    assert await schema_of(stepped) == head_schema
    for index in range(len(KNOWN_REVISIONS) - 1, -1, -1):
        await alembic(stepped, "downgrade", "-1")
        assert await revision_of(stepped) == (KNOWN_REVISIONS[index - 1] if index else None)
    assert await tables_of(stepped) == {"alembic_version"}
    await alembic(stepped, "upgrade", "head")
    assert await schema_of(stepped) == head_schema


@pytest.mark.parametrize("start", KNOWN_REVISIONS[:-1])
async def test_opening_a_database_at_an_older_revision_brings_it_to_head(
    pg_url: str, start: str
) -> None:
    await alembic(pg_url, "upgrade", start)
    async with Database(pg_url):
        pass
    assert await revision_of(pg_url) == HEAD_REVISION
    assert await tables_of(pg_url) == APP_TABLES


async def test_a_newer_schema_is_refused_and_the_database_is_unchanged(pg_url: str) -> None:
    async with Database(pg_url):
        pass
    await pg_exec(pg_url, "UPDATE alembic_version SET version_num = '0099'")
    before = await schema_of(pg_url)
    with pytest.raises(StateError) as caught:
        async with Database(pg_url):
            pass
    assert "newer golem" in caught.value.message and "0099" in caught.value.message
    assert "***@" in caught.value.message  # named without the password
    assert await revision_of(pg_url) == "0099"
    assert await schema_of(pg_url) == before


async def pg_exec(url: str, sql: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


def test_processes_racing_on_a_fresh_database_lose_nothing(
    tmp_path: Path, golem_env: GolemEnv, pg_url: str
) -> None:
    """The SQLite race of test_concurrency.py on PostgreSQL: the first migration is
    serialised by the advisory lock, and writes lose no read-modify-write update
    (under READ COMMITTED alone, the shared counter would come out short)."""
    outputs = race_workers(pg_url, WORKERS, ROUNDS, tmp_path / "signals", golem_env.env)
    assert sorted(json.loads(out)["worker"] for out, _err in outputs) == list(range(WORKERS))
    names = {row[0] for row in pg_rows(pg_url, "SELECT name FROM vms")}
    expected = {f"w{w:02d}-{i:03d}" for w in range(WORKERS) for i in range(ROUNDS)}
    assert names == expected | {"shared-counter"}
    assert pg_rows(pg_url, "SELECT cpu FROM vms WHERE name = 'shared-counter'") == [
        (WORKERS * ROUNDS,)
    ]
    assert pg_rows(pg_url, "SELECT count(*) FROM alembic_version") == [(1,)]


# --- what a user sees when the database cannot be used ---------------------------------


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or ""
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unusable_urls(url: str) -> dict[str, tuple[str, int, str]]:
    """Each case: (GOLEM_REQUESTOR_DATABASE_URL, exit code, what the error says)."""
    parts = urlsplit(url)
    closed = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{_free_port()}")
    missing = parts._replace(path="/no_such_database")
    return {
        "wrong password": (_with_password(url, "not-the-password"), 2, "refused the login"),
        "missing database": (missing.geturl(), 2, "does not exist"),
        "server down": (closed.geturl(), 1, "Cannot reach the database server"),
        "not postgresql": (
            url.replace("postgresql+asyncpg://", "mysql://", 1),
            2,
            "must be a postgresql+asyncpg:// URL",
        ),
        "no database named": (parts._replace(path="").geturl(), 2, "names no database"),
    }


@pytest.mark.parametrize(
    "case",
    ["wrong password", "missing database", "server down", "not postgresql", "no database named"],
)
def test_an_unusable_database_is_one_clear_line_without_the_password(
    golem_env: GolemEnv, pg_url: str, case: str
) -> None:
    bad_url, exit_code, says = _unusable_urls(pg_url)[case]
    password = urlsplit(bad_url).password or ""
    for args in (["vm", "list"], ["vm", "list", "--json"], ["config", "show"]):
        ran = run_golem(golem_env, *args, extra_env={"GOLEM_REQUESTOR_DATABASE_URL": bad_url})
        output = ran.stdout + ran.stderr
        if args == ["config", "show"]:
            # Shows the setting (redacted) when it is a URL, and reaches no server.
            assert password not in output
            continue
        assert ran.returncode == exit_code, output
        assert says in output
        assert "Traceback" not in output
        assert password and password not in output
        if "--json" in args:
            error = json.loads(ran.stderr)["error"]
            assert error["exit_code"] == exit_code
        else:
            lines = [line for line in ran.stderr.splitlines() if line.strip()]
            assert lines[0].startswith("Error: ") and lines[1].startswith("Solution: ")
            assert len(lines) == 2


def test_golem_works_on_a_shared_database_end_to_end(golem_env: GolemEnv, pg_url: str) -> None:
    """The settings alone switch the backend; the local file is never created."""
    ran = run_golem(
        golem_env, "vm", "list", "--json", extra_env={"GOLEM_REQUESTOR_DATABASE_URL": pg_url}
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == []
    assert not golem_env.db_path.exists()
    shown = run_golem(
        golem_env, "config", "show", "--json", extra_env={"GOLEM_REQUESTOR_DATABASE_URL": pg_url}
    )
    assert shown.returncode == 0, shown.stderr
    assert (urlsplit(pg_url).password or "") not in shown.stdout
    assert "***@127.0.0.1" in shown.stdout


def test_at_head_the_check_is_one_query_and_never_imports_alembic(
    golem_env: GolemEnv, pg_url: str
) -> None:
    """Start-up on a shared database at head costs one statement, as on SQLite."""
    script = """
import asyncio, json, sys
from sqlalchemy import event
from requestor.db.engine import Database

async def main(url):
    async with Database(url):  # brings the fresh database to head
        pass
    db = Database(url)
    statements = []
    event.listen(
        db.engine.sync_engine,
        "before_cursor_execute",
        lambda *args: statements.append(args[2]),
    )
    sys.modules.pop("alembic", None)
    for name in [m for m in sys.modules if m.startswith("alembic.")]:
        sys.modules.pop(name)
    async with db:
        pass
    print(json.dumps({"statements": statements, "alembic": "alembic" in sys.modules}))

asyncio.run(main(sys.argv[1]))
"""
    ran = subprocess.run(
        [sys.executable, "-c", script, pg_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=golem_env.env,
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["alembic"] is False
    assert result["statements"] == ["SELECT version_num FROM alembic_version"]
