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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from requestor.db.engine import Database
from requestor.db.migrate import HEAD_REVISION, KNOWN_REVISIONS
from requestor.db.models import Base, VMStatus
from requestor.errors import StateError
from tests.conftest import GolemEnv, run_golem
from tests.db import alembic
from tests.db.test_concurrency import ROUNDS, WORKER

# Fewer than the SQLite race's twenty: each process costs ~1 s of start-up on two
# cores, and eight already contend on the first migration and every write.
WORKERS = 8

pytestmark = pytest.mark.postgresql

APP_TABLES = {
    "alembic_version",
    "providers",
    "vms",
    "legacy_rejected_vms",
    "provider_capabilities",
    "user_keys",
    "vm_grants",
}


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

    def reflect(connection: Any) -> dict[str, Any]:
        inspector = inspect(connection)
        schema: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            if table == "alembic_version":
                continue
            schema[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
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

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(reflect)
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
    signals = tmp_path / "signals"
    signals.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), pg_url, str(worker), str(ROUNDS), str(signals)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=golem_env.env,
        )
        for worker in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(signals.glob("ready-*"))) < WORKERS:
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), "a worker died before the start"
            time.sleep(0.02)
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
