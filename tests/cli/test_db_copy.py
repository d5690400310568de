"""`golem db copy --to URL`: a fleet made on the local SQLite file moves into a
PostgreSQL database (every column of every table, pins and owners included),
works from there, and comes back into a new SQLite file the same; VMs the target
already records refuse the whole copy; a dry run changes nothing; bad targets
are one clear error each, and credentials never show."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from requestor.db.models import Base
from requestor.db.revisions import HEAD_REVISION
from requestor.settings import load_settings
from tests.conftest import GolemEnv, assert_ok, run_golem
from tests.support.fleet import create_fleet
from tests.support.postgres import PostgresServer
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(180)

URL_ENV = "GOLEM_REQUESTOR_DATABASE_URL"
USER = "alice"


@pytest.fixture
def env(golem_env: GolemEnv, devnet: DevnetThread, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url,
        "GOLEM_REQUESTOR_USER": USER,
    }.items():
        monkeypatch.setenv(key, value)
        golem_env.env[key] = value


@pytest.fixture
def fleet(env: None, devnet: DevnetThread) -> list[str]:
    """Three VMs recorded in the local SQLite file by golem itself (host keys pinned),
    one of them recorded before golem kept owners."""
    names = asyncio.run(
        create_fleet(load_settings(), [p.provider_id for p in devnet.providers], 3, prefix="web")
    )
    _sqlite_execute(
        load_settings().db_path,
        "UPDATE vms SET created_by_user = NULL, created_by_host = NULL WHERE name = ?",
        (names[0],),
    )
    return names


def _sqlite_execute(path: Path, sql: str, parameters: tuple[Any, ...] = ()) -> None:
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(sql, parameters)
    finally:
        connection.close()


def _location_url(location: Path | str) -> str:
    return location if isinstance(location, str) else f"sqlite+aiosqlite:///{location}"


def _tables(location: Path | str) -> dict[str, Any]:
    """Every row of every golem table, by each table's natural key (ids are the
    database's own and are re-mapped by a copy: grants name their VM instead)."""

    async def read() -> dict[str, Any]:
        engine = create_async_engine(_location_url(location))
        try:
            async with engine.connect() as connection:
                tables: dict[str, Any] = {
                    "alembic_version": (
                        await connection.scalar(text("SELECT version_num FROM alembic_version"))
                    )
                }
                vm_names: dict[int, str] = {}
                for table in Base.metadata.sorted_tables:
                    assert isinstance(table, Table)
                    rows = [dict(r._mapping) for r in await connection.execute(select(table))]
                    if table.name == "vms":
                        vm_names = {row["id"]: row["name"] for row in rows}
                    tables[table.name] = rows
        finally:
            await engine.dispose()
        keyed: dict[str, Any] = {"alembic_version": tables.pop("alembic_version")}
        for name, rows in tables.items():
            if name == "vms":
                keyed[name] = {row["name"]: {**row, "id": None} for row in rows}
            elif name == "vm_grants":
                keyed[name] = {
                    (vm_names[row["vm_id"]], row["fingerprint"]): {**row, "vm_id": None}
                    for row in rows
                }
            elif name == "legacy_rejected_vms":
                keyed[name] = sorted(
                    (tuple(sorted((k, str(v)) for k, v in row.items() if k != "id")))
                    for row in rows
                )
            else:
                primary_key = [column.name for column in Base.metadata.tables[name].primary_key]
                keyed[name] = {tuple(row[c] for c in primary_key): row for row in rows}
        return keyed

    return asyncio.run(read())


def _copy(golem: Any, *args: str, env: dict[str, str] | None = None) -> Any:
    return golem("db", "copy", *args, env=env)


def _no_secret(password: str, *outputs: str) -> None:
    for output in outputs:
        assert password not in output


def test_a_fleet_moves_to_postgresql_works_there_and_comes_back(
    golem_env: GolemEnv,
    golem: Any,
    fleet: list[str],
    pg_server: PostgresServer,
    pg_url: str,
    tmp_path: Path,
) -> None:
    source_file = golem_env.db_path
    # A teammate's key and a grant, as team mode records them, travel too.
    _sqlite_execute(
        source_file,
        "INSERT INTO user_keys (user, fingerprint, public_key, host, added_at)"
        " VALUES ('bob', 'SHA256:bobkey', 'ssh-ed25519 AAAAbob', 'bobs-laptop',"
        " '2026-12-01 10:00:00.000000')",
    )
    _sqlite_execute(
        source_file,
        "INSERT INTO vm_grants (vm_id, fingerprint, public_key, user, granted_by, granted_at)"
        " SELECT id, 'SHA256:bobkey', 'ssh-ed25519 AAAAbob', 'bob', 'alice@here',"
        " '2026-12-01 11:00:00.000000' FROM vms WHERE name = ?",
        (fleet[1],),
    )
    # A row the earlier requestor's database could not adopt, kept verbatim.
    _sqlite_execute(
        source_file,
        "INSERT INTO legacy_rejected_vms (name, provider_ip, vm_id, config, status,"
        " created_at, reason) VALUES ('old', '10.1.2.3', 'x', '{bad', 'running', NULL,"
        " 'config is not JSON')",
    )
    before = _tables(source_file)
    assert all(vm["host_key"] for vm in before["vms"].values())

    result = _copy(golem, "--to", pg_url, "--json")
    assert_ok(result)
    _no_secret(pg_server.password, result.output)
    report = json.loads(result.stdout)
    assert report["copied"] is True and report["dry_run"] is False
    assert report["source"] == str(source_file)
    assert (
        report["target"]
        == f"postgresql+asyncpg://***@127.0.0.1:{pg_server.port}/" + (pg_url.rsplit("/", 1)[1])
    )
    assert report["target_backend"] == "postgresql"
    assert report["schema"] == "created"
    assert report["counts"] == {
        "vms": 3,
        "providers": 3,
        "provider_capabilities": 3,
        "user_keys": 1,
        "vm_grants": 1,
        "legacy_rejected_vms": 1,
    }
    assert report["owner_assigned"] == {"user": USER, "vms": [fleet[0]]}
    assert report["conflicts"] == []
    assert URL_ENV in report["next_step"]
    # The source is only read.
    assert _tables(source_file) == before

    copied = _tables(pg_url)
    expected = copy.deepcopy(before)
    owned = expected["vms"][fleet[0]]
    owned["created_by_user"], owned["created_by_host"] = USER, load_settings().host
    assert copied == expected

    team = {URL_ENV: pg_url}
    listed = golem("vm", "list", "--json", env=team)
    assert_ok(listed)
    assert sorted(vm["name"] for vm in json.loads(listed.stdout)) == sorted(fleet)
    # The pin made on the SQLite side protects the connection from PostgreSQL.
    ssh = run_golem(golem_env, "vm", "ssh", fleet[1], "--", "true", extra_env=team)
    assert_ok(ssh)
    assert_ok(golem("vm", "stop", fleet[1], env=team))
    assert_ok(golem("vm", "destroy", fleet[2], "--yes", env=team))
    after_use = _tables(pg_url)
    assert after_use["vms"][fleet[1]]["status"].value == "stopped"
    assert fleet[2] not in after_use["vms"]
    # The SQLite file was not touched by commands in team mode.
    assert _tables(source_file) == before

    back = tmp_path / "back" / "vms.db"
    result = _copy(golem, "--to", f"sqlite:///{back}", env=team)
    assert_ok(result)
    _no_secret(pg_server.password, result.output)
    assert f"Copied to {back}" in result.stdout
    assert "GOLEM_REQUESTOR_DB_PATH" in result.stdout
    assert oct(back.stat().st_mode & 0o777) == "0o600"
    assert oct(back.parent.stat().st_mode & 0o777) == "0o700"
    assert _tables(back) == _tables(pg_url)
    assert _tables(back)["alembic_version"] == HEAD_REVISION


def test_vms_already_there_refuse_the_whole_copy(
    golem_env: GolemEnv, golem: Any, fleet: list[str], pg_url: str, pg_server: PostgresServer
) -> None:
    assert_ok(_copy(golem, "--to", pg_url))
    team = {URL_ENV: pg_url}
    # The target keeps one VM under its own name, another under a new name (a
    # teammate's record of the same VM), and loses the third.
    assert_ok(golem("vm", "forget", fleet[2], "--force", "--yes", env=team))
    asyncio.run(_execute(pg_url, f"UPDATE vms SET name = 'theirs' WHERE name = '{fleet[1]}'"))
    # Something new in the source, that must not arrive either.
    _sqlite_execute(
        golem_env.db_path,
        "INSERT INTO user_keys (user, fingerprint, public_key, host, added_at)"
        " VALUES ('carol', 'SHA256:carolkey', 'ssh-ed25519 AAAAcarol', NULL,"
        " '2026-12-01 10:00:00.000000')",
    )
    before = _tables(pg_url)

    dry = _copy(golem, "--to", pg_url, "--dry-run", "--json")
    assert dry.exit_code == 1, dry.output
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and report["copied"] is False
    assert report["conflicts"] == [
        {"name": fleet[0], "reason": "name", "existing": fleet[0]},
        {"name": fleet[1], "reason": "provider_vm_name", "existing": "theirs"},
    ]
    assert report["already_there"]["providers"] == 3
    assert report["next_step"] is None
    assert _tables(pg_url) == before

    text_dry = _copy(golem, "--to", pg_url, "--dry-run")
    assert text_dry.exit_code == 1
    assert "The copy would be refused: 2 VM(s) already there" in text_dry.stdout
    assert "the same VM at its provider" in text_dry.stdout

    refused = _copy(golem, "--to", pg_url)
    assert refused.exit_code == 1
    assert "2 VMs of this database already in postgresql+asyncpg://***@" in refused.stderr
    assert f"{fleet[0]}, {fleet[1]} (there as theirs)" in refused.stderr
    assert "Solution: Nothing was copied." in refused.stderr
    _no_secret(pg_server.password, refused.output)
    as_json = _copy(golem, "--to", pg_url, "--json")
    assert as_json.exit_code == 1
    error = json.loads(as_json.stderr)["error"]
    assert error["code"] == "copy_conflict" and error["exit_code"] == 1
    _no_secret(pg_server.password, as_json.output)
    # Nothing arrived: not the third VM, not the new user key.
    assert _tables(pg_url) == before


def test_a_dry_run_into_nothing_creates_nothing(
    golem: Any, fleet: list[str], pg_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "new" / "vms.db"
    result = _copy(golem, "--to", str(missing), "--dry-run")
    assert_ok(result)
    assert f"Dry run, nothing changed: a copy to {missing} would copy" in result.stdout
    assert re.search(r"^  VMs +3 *$", result.stdout, re.MULTILINE)
    assert re.search(r"^  schema +created *$", result.stdout, re.MULTILINE)
    assert f"1 VM recorded before golem kept owners get {USER} as owner there" in result.stdout
    assert not missing.exists()

    result = _copy(golem, "--to", pg_url, "--dry-run", "--json")
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report["counts"]["vms"] == 3 and report["schema"] == "created"
    assert (
        asyncio.run(_scalar(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        == 0
    )


def test_a_copy_into_a_database_with_other_vms_merges_providers(
    golem: Any, fleet: list[str], pg_url: str, devnet: DevnetThread
) -> None:
    """Two people copy their files into one database: the VMs add up, the providers
    they share are merged (one row each, the fresher record)."""
    assert_ok(_copy(golem, "--to", pg_url))
    team = {URL_ENV: pg_url}
    # The second person's fleet: the same providers, other VMs.
    assert_ok(golem("vm", "forget", *fleet, "--force", "--yes"))
    names = asyncio.run(
        create_fleet(load_settings(), [p.provider_id for p in devnet.providers], 2, prefix="other")
    )
    # The shared database knows one provider better (seen later), another worse.
    fresher, staler = sorted(_tables(pg_url)["providers"])[:2]
    asyncio.run(
        _execute(
            pg_url,
            "UPDATE providers SET country = 'XX', last_seen = '2999-01-01'"
            f" WHERE provider_id = '{fresher[0]}'",
        )
    )
    asyncio.run(
        _execute(
            pg_url,
            "UPDATE providers SET country = 'YY', last_seen = '2000-01-01'"
            f" WHERE provider_id = '{staler[0]}'",
        )
    )
    result = _copy(golem, "--to", pg_url, "--json")
    assert_ok(result)
    providers = _tables(pg_url)["providers"]
    assert providers[fresher]["country"] == "XX"
    assert providers[staler]["country"] != "YY"
    assert providers[staler]["last_seen"].year > 2000
    report = json.loads(result.stdout)
    assert report["counts"]["vms"] == 2
    assert report["already_there"]["providers"] == report["counts"]["providers"] == 3
    assert report["schema"] == "current"
    listed = json.loads(golem("vm", "list", "--json", env=team).stdout)
    assert sorted(vm["name"] for vm in listed) == sorted([*fleet, *names])
    assert len(_tables(pg_url)["providers"]) == 3


async def _execute(url: str, sql: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


async def _scalar(url: str, sql: str) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound by this test and not listening: connections are refused,
    and nothing else can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_bad_targets_are_one_clear_error_each_without_credentials(
    golem_env: GolemEnv,
    golem: Any,
    pg_server: PostgresServer,
    pg_url_factory: Callable[[], str],
    closed_port: int,
    tmp_path: Path,
) -> None:
    secret = "s3cr3t-pw"
    source = pg_url_factory()
    cases: list[tuple[list[str], int, str, dict[str, str] | None]] = [
        (["--to", f"mysql://u:{secret}@127.0.0.1/db"], 2, "--to must name PostgreSQL", None),
        (
            ["--to", f"postgresql://u:{secret}@127.0.0.1:5432"],
            2,
            "--to is invalid: it names no database",
            None,
        ),
        (
            ["--to", f"postgresql://u:{secret}@127.0.0.1:{closed_port}/db"],
            1,
            f"Cannot reach the database server at postgresql+asyncpg://***@127.0.0.1:{closed_port}/db",
            None,
        ),
        (
            ["--to", pg_server.url("postgres", password=secret)],
            2,
            "refused the login",
            None,
        ),
        (
            ["--to", pg_server.url("no_such_db")],
            2,
            "does not exist on its server",
            None,
        ),
        (["--to", str(golem_env.db_path)], 2, "--to names the database golem uses now", None),
        (
            # Another name for the same server: found by the database's identity.
            ["--to", source.replace("@127.0.0.1:", "@localhost:")],
            2,
            "--to names the database golem uses now",
            {URL_ENV: source},
        ),
        (["--to", str(tmp_path)], 2, "--to names a folder", None),
    ]
    for args, code, message, env in cases:
        for json_flag in ([], ["--json"]):
            result = _copy(golem, *args, *json_flag, env=env)
            assert result.exit_code == code, (args, result.output)
            assert result.stdout == ""
            _no_secret(secret, result.output)
            _no_secret(pg_server.password, result.output)
            if json_flag:
                error = json.loads(result.stderr)["error"]
                assert message in error["message"], (args, error)
                assert error["hint"]
            else:
                assert message in result.stderr, (args, result.stderr)
                assert "Solution:" in result.stderr


def test_a_target_written_by_a_newer_golem_is_refused_and_left_alone(
    golem: Any, tmp_path: Path
) -> None:
    newer = tmp_path / "newer.db"
    connection = sqlite3.connect(newer)
    with connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES ('9999')")
    connection.close()
    content = newer.read_bytes()
    result = _copy(golem, "--to", f"sqlite:///{newer}")
    assert result.exit_code == 1
    assert f"The database {newer} was written by a newer golem (schema 9999)" in result.stderr
    assert newer.read_bytes() == content


def test_another_programs_database_is_not_a_target(golem: Any, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    connection = sqlite3.connect(foreign)
    with connection:
        connection.execute(
            "CREATE TABLE vms (name TEXT, provider_ip TEXT, vm_id TEXT, config TEXT)"
        )
    connection.close()
    result = _copy(golem, "--to", str(foreign))
    assert result.exit_code == 2
    assert "holds tables that are not golem's" in result.stderr
