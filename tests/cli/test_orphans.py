"""Orphans: VMs this installation created that no local record names are found by
`list --refresh` (by the installation id in their provider-side names) and
recovered with `adopt`."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from typing import Any

import pytest

from tests.conftest import GolemEnv, assert_ok
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(devnet: DevnetThread, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", devnet.discovery_url)
    return {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}


def _installation_id(golem_env: GolemEnv) -> str:
    path = golem_env.ssh_dir / "installation-id"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{8}", text)
    return text


def _drop_record(golem_env: GolemEnv, name: str) -> None:
    """The record is lost behind golem's back (a crash, a hand, a restored backup)."""
    connection = sqlite3.connect(golem_env.db_path)
    try:
        with connection:
            connection.execute("DELETE FROM vms WHERE name = ?", (name,))
    finally:
        connection.close()


def _listed(golem: Any) -> list[dict[str, Any]]:
    result = golem("vm", "list", "--refresh", "--json")
    assert_ok(result)
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


def _held(devnet: DevnetThread) -> set[str]:
    return {vm["name"] for summary in devnet.summaries() for vm in summary["vms"]}


def test_an_orphan_is_found_adopted_and_usable(
    golem_env: GolemEnv, devnet: DevnetThread, golem: Any, env: dict[str, str]
) -> None:
    provider = devnet.providers[0].provider_id
    for name in ("kept", "lost"):
        assert_ok(golem("vm", "create", name, "--provider-id", provider, *SMALL_VM))
    ours = _installation_id(golem_env)
    rows = db_rows(golem_env.db_path)
    lost_name = rows["lost"]["provider_vm_name"]
    assert f"-g{ours}-" in lost_name and f"-g{ours}-" in rows["kept"]["provider_vm_name"]
    _drop_record(golem_env, "lost")

    listed = _listed(golem)
    orphans = [row for row in listed if row["status"] == "orphan"]
    assert [(o["provider_id"], o["provider_vm_name"], o["name"]) for o in orphans] == [
        (provider, lost_name, None)
    ]
    assert orphans[0]["suggested_name"] == "lost"
    assert {row["name"] for row in listed if row["status"] != "orphan"} == {"kept"}

    table = golem("vm", "list", "--refresh")
    assert_ok(table)
    assert f"{provider}:{lost_name}" in table.output and "orphan" in table.output
    assert f"golem vm adopt {lost_name}" in table.output  # the note (stderr, mixed here)

    assert_ok(golem("vm", "adopt", lost_name))
    row = db_rows(golem_env.db_path)["lost"]
    assert row["provider_vm_name"] == lost_name and row["status"] == "running"
    assert row["ssh_port"] is not None and row["host_key"] is not None  # pinned at adoption
    assert not [row for row in _listed(golem) if row["status"] == "orphan"]

    # Adopted means usable, and destroyable the normal way.
    assert_ok(golem("vm", "destroy", "lost", "--yes"))
    assert lost_name not in _held(devnet)


def test_a_lost_database_is_recovered_by_scanning_advertised_providers(
    golem_env: GolemEnv, devnet: DevnetThread, golem: Any, env: dict[str, str]
) -> None:
    provider = devnet.providers[1].provider_id
    assert_ok(golem("vm", "create", "precious", "--provider-id", provider, *SMALL_VM))
    provider_name = db_rows(golem_env.db_path)["precious"]["provider_vm_name"]
    for suffix in ("", "-wal", "-shm"):
        golem_env.db_path.with_name(golem_env.db_path.name + suffix).unlink(missing_ok=True)

    # Local state knows no provider now: only the advertised ones can be asked.
    assert not [r for r in _listed(golem) if r["status"] == "orphan"]
    result = golem("vm", "list", "--refresh", "--scan-advertised", "--json")
    assert_ok(result)
    orphans = [r for r in json.loads(result.output) if r["status"] == "orphan"]
    assert [(o["provider_id"], o["provider_vm_name"]) for o in orphans] == [
        (provider, provider_name)
    ]
    assert_ok(golem("vm", "adopt", provider_name, "--name", "found", "--scan-advertised"))
    assert_ok(golem("vm", "ssh", "found", "--", "true"))
    assert db_rows(golem_env.db_path)["found"]["status"] == "running"


def test_other_installations_vms_are_not_orphans(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem: Any,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = devnet.providers[0].provider_id
    assert_ok(golem("vm", "create", "mine", "--provider-id", provider, *SMALL_VM))
    # Another installation (its own key folder, so its own id) on the same provider.
    monkeypatch.setenv("GOLEM_REQUESTOR_SSH_KEY_DIR", str(golem_env.home / "other-keys"))
    monkeypatch.setenv("GOLEM_REQUESTOR_DB_PATH", str(golem_env.home / "other.db"))
    assert_ok(golem("vm", "create", "theirs", "--provider-id", provider, *SMALL_VM))
    monkeypatch.delenv("GOLEM_REQUESTOR_SSH_KEY_DIR")
    monkeypatch.delenv("GOLEM_REQUESTOR_DB_PATH")
    assert len(_held(devnet)) == 2
    assert not [r for r in _listed(golem) if r["status"] == "orphan"]
    result = golem("vm", "adopt", "no-such-vm-g00000000-00000000")
    assert result.exit_code == 1 and "No orphan VM named" in result.output


def test_adopt_refuses_a_taken_name_and_changes_nothing(
    golem_env: GolemEnv, devnet: DevnetThread, golem: Any, env: dict[str, str]
) -> None:
    provider = devnet.providers[0].provider_id
    assert_ok(golem("vm", "create", "twin", "--provider-id", provider, *SMALL_VM))
    lost_name = db_rows(golem_env.db_path)["twin"]["provider_vm_name"]
    _drop_record(golem_env, "twin")
    assert_ok(golem("vm", "create", "twin", "--provider-id", provider, *SMALL_VM))
    before = db_rows(golem_env.db_path)
    result = golem("vm", "adopt", lost_name)
    assert result.exit_code == 2, result.output
    assert "A VM named twin already exists" in result.output and "--name" in result.output
    assert db_rows(golem_env.db_path) == before
    assert_ok(golem("vm", "adopt", lost_name, "--name", "twin-2"))
