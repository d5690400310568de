"""Who did what: each VM's owner and last action in ``vm list`` / ``vm info``, and
``vm list --mine``, on the local SQLite file and on a shared PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
from typing import Any

from tests.conftest import GolemEnv, assert_ok
from tests.helpers import SMALL_VM
from tests.plugins.devnet import DevnetFactory
from tests.plugins.postgres import DbBackend

HOST = socket.gethostname()


def _forget_owner(backend: DbBackend, golem_env: GolemEnv, name: str) -> None:
    """Make ``name`` a VM recorded before golem kept owners (schema 0004)."""
    sql = "UPDATE vms SET created_by_user = NULL, created_by_host = NULL WHERE name = $1"
    if backend.url is None:
        with sqlite3.connect(golem_env.db_path) as connection:
            connection.execute(sql.replace("$1", "?"), (name,))
        return
    import asyncpg

    async def run() -> None:
        dsn = backend.url.replace("postgresql+asyncpg://", "postgresql://")  # type: ignore[union-attr]
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(sql, name)
        finally:
            await connection.close()

    asyncio.run(run())


def _listed(golem, *args: str, user: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    result = golem("vm", "list", "--json", *args, env={"GOLEM_REQUESTOR_USER": user})
    assert_ok(result, args)
    listed: list[dict[str, Any]] = json.loads(result.output)
    return listed


def test_owner_last_action_and_mine(  # type: ignore[no-untyped-def]
    db_backend: DbBackend, golem_env: GolemEnv, devnet_factory: DevnetFactory, golem
) -> None:
    devnet = devnet_factory(providers=2, current=1)
    legacy, current = (p.provider_id for p in devnet.providers)
    url = {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    for name, user, provider in (
        ("a-1", "alice", legacy),
        ("a-2", "alice", current),
        ("b-1", "bob", legacy),
        ("old-1", "bob", legacy),
    ):
        env = {**url, "GOLEM_REQUESTOR_USER": user}
        assert_ok(golem("vm", "create", name, *SMALL_VM, "--provider", provider, env=env))
    _forget_owner(db_backend, golem_env, "old-1")
    assert_ok(golem("vm", "stop", "a-1", env={**url, "GOLEM_REQUESTOR_USER": "bob"}))

    listed = {vm["name"]: vm for vm in _listed(golem, user="alice")}
    assert listed["a-1"]["owner"] == {"user": "alice", "host": HOST}
    assert listed["old-1"]["owner"] is None
    # Bob stopped alice's VM: the owner stays, the last action is his.
    assert (listed["a-1"]["last_actor"], listed["a-1"]["last_action"]) == (f"bob@{HOST}", "stop")
    assert listed["a-1"]["last_action_at"] >= listed["a-1"]["created_at"]
    assert (listed["b-1"]["last_actor"], listed["b-1"]["last_action"]) == (f"bob@{HOST}", "create")

    # --mine: the VMs the user created. The unowned one is the user's in the local
    # file (it is theirs), nobody's in a shared database.
    unowned = ["old-1"] if db_backend.name == "sqlite" else []
    assert [vm["name"] for vm in _listed(golem, "--mine", user="alice")] == ["a-1", "a-2", *unowned]
    assert [vm["name"] for vm in _listed(golem, "--mine", user="bob")] == ["b-1", *unowned]
    assert _listed(golem, "--mine", user="carol") == [
        vm for vm in _listed(golem, user="carol") if vm["name"] in unowned
    ]
    # ... combined with the other filters.
    assert [
        vm["name"] for vm in _listed(golem, "--mine", "a-*", "--status", "running", user="alice")
    ] == ["a-2"]
    assert [vm["name"] for vm in _listed(golem, "--mine", "--provider", legacy, user="bob")] == [
        "b-1",
        *unowned,
    ]
    quiet = golem("vm", "list", "--mine", "-q", env={"GOLEM_REQUESTOR_USER": "bob"})
    assert quiet.output.split() == ["b-1", *unowned]
    refreshed = golem(
        "vm", "list", "--mine", "--refresh", "--json", env={**url, "GOLEM_REQUESTOR_USER": "bob"}
    )
    assert_ok(refreshed)
    assert {vm["name"]: vm["refreshed"] for vm in json.loads(refreshed.output)} == {
        name: True for name in ["b-1", *unowned]
    }
    # The refresh asked only about bob's VMs.
    asked = {r.vm for p in (legacy, current) for r in devnet.requests(p, route="get")}
    provider_names = {vm["name"]: vm["provider_vm_name"] for vm in _listed(golem, user="bob")}
    assert asked & {provider_names["a-1"], provider_names["a-2"]} == set()

    # The table has an Owner column in team mode only; the spec's table stays as it is.
    table = golem("vm", "list", env={"GOLEM_REQUESTOR_USER": "alice"})
    assert_ok(table)
    header = next(line for line in table.output.splitlines() if "Name" in line)
    if db_backend.name == "postgresql":
        assert "Owner" in header
        rows = {line.split()[0]: line for line in table.output.splitlines() if line.strip()}
        assert rows["a-1"].rstrip().endswith(f"alice@{HOST}")
        assert rows["old-1"].rstrip().endswith("-")
    else:
        assert "Owner" not in header

    info = golem("vm", "info", "a-1", env={"GOLEM_REQUESTOR_USER": "carol"})
    assert_ok(info)
    assert f"Owner             alice@{HOST}" in info.output
    assert f"Last action       stop by bob@{HOST}" in info.output
    assert re.search(rf"stop by bob@{HOST} (just now|\d+ s ago)", info.output)
    old = golem("vm", "info", "old-1")
    assert "Owner             not recorded" in old.output

    # Whether the provider can start it again: known on both backends (the
    # current-generation provider cannot).
    for name, can_start in (("a-2", False), ("a-1", None)):
        data = json.loads(golem("vm", "info", name, "--json").output)
        assert data["can_start_stopped"] is can_start, name
        assert data["owner"] == {"user": "alice", "host": HOST}


def test_how_long_ago_reads() -> None:
    from datetime import UTC, datetime, timedelta

    from requestor.cli.render import ago

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    cases = {
        timedelta(0): "just now",
        timedelta(seconds=42): "42 s ago",
        timedelta(minutes=3, seconds=59): "3 min ago",
        timedelta(hours=5): "5 h ago",
        timedelta(days=1, hours=1): "1 day ago",
        timedelta(days=9): "9 days ago",
    }
    for before, text in cases.items():
        assert ago(now - before, now) == text
    # Times from the database without a zone are UTC.
    assert ago((now - timedelta(minutes=2)).replace(tzinfo=None), now) == "2 min ago"
