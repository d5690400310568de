"""The PostgreSQL harness itself (tests/support/postgres.py, tests/plugins/postgres.py):
a real server on loopback, password auth, one database per test, not run as root,
and nothing left behind when the suite dies."""

from __future__ import annotations

import asyncio
import os
import pwd
import select
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from requestor.db.migrate import HEAD_REVISION
from tests.conftest import REPO, GolemEnv, assert_ok, run_golem
from tests.plugins.postgres import REQUIRE_ENV, DbBackend
from tests.support.postgres import BINDIR_ENV, UNPRIVILEGED_USER, PostgresServer


async def test_pg_url_is_a_fresh_database_on_loopback(
    pg_server: PostgresServer, pg_url: str
) -> None:
    parts = urlsplit(pg_url)
    assert parts.scheme == "postgresql+asyncpg"
    assert (parts.hostname, parts.port) == ("127.0.0.1", pg_server.port)
    # The URL as golem will take it: SQLAlchemy's asyncpg dialect.
    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT host(inet_server_addr()), current_database(), current_user,"
                        " (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert tuple(row) == ("127.0.0.1", parts.path.lstrip("/"), pg_server.user, 0)


async def test_a_wrong_password_is_refused(pg_server: PostgresServer) -> None:
    conn = await asyncpg.connect(pg_server.dsn("postgres"))
    await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(pg_server.dsn("postgres", password=pg_server.password + "x"))


async def test_each_pg_url_is_its_own_database(pg_url_factory: Callable[[], str]) -> None:
    first, second = pg_url_factory(), pg_url_factory()
    assert first != second
    one, two = create_async_engine(first), create_async_engine(second)
    try:
        async with one.begin() as conn:
            await conn.execute(text("CREATE TABLE only_here (x int)"))
        async with two.connect() as conn:
            seen = await conn.scalar(text("SELECT to_regclass('only_here') IS NOT NULL"))
        assert seen is False
    finally:
        await one.dispose()
        await two.dispose()


async def test_drop_database_ends_open_connections(pg_server: PostgresServer) -> None:
    name = pg_server.create_database()
    left_open = await asyncpg.connect(pg_server.dsn(name))
    try:
        pg_server.drop_database(name)
        admin = await asyncpg.connect(pg_server.dsn("postgres"))
        try:
            left = await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
            assert left == 0
        finally:
            await admin.close()
    finally:
        left_open.terminate()


def test_the_server_never_runs_as_root(pg_server: PostgresServer) -> None:
    server_uid = Path(f"/proc/{pg_server.pid}").stat().st_uid
    if os.geteuid() == 0:
        assert server_uid == pwd.getpwnam(UNPRIVILEGED_USER).pw_uid != 0
    else:
        assert server_uid == os.geteuid()
    assert pwd.getpwuid(server_uid).pw_name == pg_server.os_user


def _revision(url: str) -> str | None:
    async def read() -> str | None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                if await conn.scalar(text("SELECT to_regclass('alembic_version')")) is None:
                    return None
                return await conn.scalar(text("SELECT version_num FROM alembic_version"))
        finally:
            await engine.dispose()

    return asyncio.run(read())  # a synchronous test: golem in-process runs its own loop


@pytest.mark.parametrize("in_process", [True, False], ids=["CliRunner", "subprocess"])
def test_golem_uses_the_db_backend(
    db_backend: DbBackend, golem_env: GolemEnv, golem: Any, in_process: bool
) -> None:
    args = ("vm", "list", "--json")
    result = golem(*args) if in_process else run_golem(golem_env, *args)
    assert_ok(result, args)
    if db_backend.url is None:
        assert golem_env.db_path.exists()
    else:
        assert not golem_env.db_path.exists()
        assert _revision(db_backend.url) == HEAD_REVISION


def _wait_for_exit(pid: int, timeout: float = 30) -> bool:
    """True once process ``pid`` is gone (or was already), False at ``timeout``."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(pidfd)


def test_a_killed_suite_leaves_no_server_behind(pg_server: PostgresServer) -> None:
    """SIGKILL runs no finalizer: the watchdog alone must stop the server and clean up.
    (``pg_server`` is asked for so that this skips where the others do.)"""
    script = textwrap.dedent(
        """
        import sys
        from tests.support.postgres import start_server
        server = start_server()
        print(server.pid, server._watchdog.pid, server.root, flush=True)
        sys.stdin.read()
        """
    )
    suite = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert suite.stdout is not None
        postmaster, watchdog, root = suite.stdout.readline().split()
        assert Path(root, "data", "postmaster.pid").exists()
        postmaster_fd = os.pidfd_open(int(postmaster))
    finally:
        suite.kill()
        suite.wait()
    try:
        assert _wait_for_exit(int(watchdog)), "the watchdog did not finish"
        assert select.select([postmaster_fd], [], [], 0)[0], "the server outlived the suite"
        assert not Path(root).exists()
    finally:
        os.close(postmaster_fd)


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """postgres_absent_cases.py in a pytest of its own, with PostgreSQL's binaries hidden."""
    no_binaries = tmp_path / "no-postgres"
    no_binaries.mkdir()
    cases = Path(__file__).with_name("postgres_absent_cases.py")
    # Without hypothesis' plugin: 1 s of imports these cases do not use.
    plugins_off = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(cases), "-q", "-ra", *plugins_off],
        cwd=REPO,
        # make test sets REQUIRE_ENV for the suite; here each case says whether it is set.
        env={
            **{k: v for k, v in os.environ.items() if k != REQUIRE_ENV},
            BINDIR_ENV: str(no_binaries),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_postgresql_its_tests_skip_with_the_reason(tmp_path: Path) -> None:
    result = _pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 skipped" in result.stdout  # SQLite's half of db_backend still runs
    assert f"PostgreSQL unavailable: {BINDIR_ENV}=" in result.stdout


def test_when_postgresql_is_required_its_absence_fails(tmp_path: Path) -> None:
    result = _pytest(tmp_path, **{REQUIRE_ENV: "1"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 2 errors" in result.stdout
    assert f"PostgreSQL is required ({REQUIRE_ENV}=1)" in result.stdout
