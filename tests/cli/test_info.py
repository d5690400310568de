"""``golem vm info NAME [--refresh] [--json]``: everything known about one VM."""

from __future__ import annotations

import json
import urllib.request

from requestor.ssh.hostkeys import fingerprint
from tests.conftest import GolemEnv, assert_ok, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread


def _create(golem_env: GolemEnv, devnet: DevnetThread, name: str) -> dict[str, object]:
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url
    provider = devnet.providers[0].provider_id
    assert_ok(run_golem(golem_env, "vm", "create", name, "--provider-id", provider, *SMALL_VM))
    return db_rows(golem_env.db_path)[name]


def test_info_shows_everything_known(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    row = _create(golem_env, devnet, "info-vm")
    pinned = fingerprint(str(row["host_key"]))
    assert pinned.startswith("SHA256:")

    result = run_golem(golem_env, "vm", "info", "info-vm", "--json")
    assert_ok(result)
    data = json.loads(result.stdout)
    assert data["name"] == "info-vm"
    assert data["provider_id"] == devnet.providers[0].provider_id
    assert data["provider_ip"] == devnet.providers[0].ip_address
    assert data["provider_vm_name"] == row["provider_vm_name"]
    assert data["resources"] == {"cpu": 1, "memory": 1, "storage": 10}
    assert data["ssh_host"] == row["ssh_host"]
    assert data["ssh_port"] == row["ssh_port"]
    assert data["host_key_fingerprint"] == pinned
    assert data["status"] == "running"
    assert data["last_error"] is None
    assert data["created_at"] and data["updated_at"]

    table = run_golem(golem_env, "vm", "info", "info-vm")
    assert_ok(table)
    for text in (
        "VM info-vm",
        pinned,
        str(row["provider_vm_name"]),
        devnet.providers[0].provider_id,
        f"ubuntu@{row['ssh_host']} port {row['ssh_port']}",
        "1 CPU, 1GB RAM, 10GB Storage",
        "● running",
        "Last error",
    ):
        assert text in table.stdout, text


def test_refresh_asks_the_provider_first(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    row = _create(golem_env, devnet, "stale-vm")
    provider = devnet.providers[0]
    # Stopped behind golem's back: local state still says running.
    request = urllib.request.Request(
        f"{provider.api_url}/vms/{row['provider_vm_name']}/stop", method="POST", data=b""
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200

    stale = json.loads(run_golem(golem_env, "vm", "info", "stale-vm", "--json").stdout)
    assert stale["status"] == "running"
    before = len(provider_gets(devnet, str(row["provider_vm_name"])))

    fresh = run_golem(golem_env, "vm", "info", "stale-vm", "--refresh", "--json")
    assert_ok(fresh)
    assert json.loads(fresh.stdout)["status"] == "stopped"
    assert len(provider_gets(devnet, str(row["provider_vm_name"]))) == before + 1
    assert db_rows(golem_env.db_path)["stale-vm"]["status"] == "stopped"

    # The provider gone: the last known state, a warning, and what happened recorded.
    devnet.set_faults(provider.provider_id, offline=True)
    offline = run_golem(golem_env, "vm", "info", "stale-vm", "--refresh", "--timeout", "2")
    assert_ok(offline)
    assert "Warning:" in offline.stderr
    assert "● unreachable" in offline.stdout
    assert "Last error" in offline.stdout


def provider_gets(devnet: DevnetThread, vm: str) -> list[object]:
    return list(devnet.requests(0, route="get", vm=vm))


def test_unknown_name_is_one_clear_error(golem_env: GolemEnv) -> None:
    result = run_golem(golem_env, "vm", "info", "nope-vm")
    assert result.returncode != 0
    assert "Error:" in result.stderr and "Solution:" in result.stderr
    assert "Traceback" not in result.stderr
    refresh = run_golem(golem_env, "vm", "info", "nope-*", "--refresh")
    assert refresh.returncode != 0
    assert "Solution:" in refresh.stderr
