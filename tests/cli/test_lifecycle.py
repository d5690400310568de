"""The whole VM lifecycle as a user drives it: providers → create → list → stop →
start → destroy, against a real devnet, checking output and local state at each step."""

from __future__ import annotations

import json

from tests.conftest import GolemEnv, assert_ok, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread


def _env(devnet: DevnetThread) -> dict[str, str]:
    return {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}


def _provider_vm(devnet: DevnetThread, provider_id: str, vm_name: str) -> dict[str, object]:
    for summary in devnet.summaries():
        if summary["provider_id"] == provider_id:
            for vm in summary["vms"]:
                if vm["name"] == vm_name:
                    return dict(vm)
    raise AssertionError(f"{provider_id} does not hold {vm_name}")


def test_whole_flow_as_a_user(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    env = _env(devnet)
    provider = devnet.providers[1]

    result = run_golem(golem_env, "vm", "providers", extra_env=env)
    assert_ok(result)
    assert "Available Providers (3 total)" in result.stdout
    for handle in devnet.providers:
        assert handle.provider_id in result.stdout
        assert f"🌍 {handle.country}" in result.stdout
    assert "online" in result.stdout

    args = (
        "vm",
        "create",
        "my-webserver",
        "--provider-id",
        provider.provider_id,
        "--cpu",
        "2",
        "--memory",
        "4",
        "--storage",
        "20",
    )
    result = run_golem(golem_env, *args, extra_env=env)
    assert_ok(result, args)
    assert "VM Deployed Successfully!" in result.stdout
    assert "2 CPU, 4GB RAM, 20GB Storage" in result.stdout
    assert provider.ip_address in result.stdout
    row = db_rows(golem_env.db_path)["my-webserver"]
    assert row["status"] == "running"
    assert row["provider_id"] == provider.provider_id
    assert row["host_key"].startswith("ssh-ed25519 ")
    assert f"-p {row['ssh_port']} ubuntu@{provider.ip_address}" in result.stdout
    # The provider-side name is unique, not the user's name.
    assert row["provider_vm_name"] != "my-webserver"
    assert row["provider_vm_name"].startswith("my-webserver-")
    assert (
        _provider_vm(devnet, provider.provider_id, row["provider_vm_name"])["status"] == "running"
    )

    result = run_golem(golem_env, "vm", "list", extra_env=env)
    assert_ok(result)
    assert "Your VMs (1 total)" in result.stdout
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("my-webserver"))
    assert "● running" in line and provider.ip_address in line and "2 CPU, 4GB RAM" in line

    result = run_golem(golem_env, "vm", "stop", "my-webserver", extra_env=env)
    assert_ok(result)
    assert "Stopped my-webserver" in result.stdout
    assert db_rows(golem_env.db_path)["my-webserver"]["status"] == "stopped"
    assert (
        _provider_vm(devnet, provider.provider_id, row["provider_vm_name"])["status"] == "stopped"
    )
    result = run_golem(golem_env, "vm", "list", extra_env=env)
    assert "● stopped" in result.stdout

    result = run_golem(golem_env, "vm", "start", "my-webserver", extra_env=env)
    assert_ok(result)
    assert db_rows(golem_env.db_path)["my-webserver"]["status"] == "running"
    assert (
        _provider_vm(devnet, provider.provider_id, row["provider_vm_name"])["status"] == "running"
    )

    # Destroy asks first; "n" changes nothing.
    result = run_golem(golem_env, "vm", "destroy", "my-webserver", input="n\n", extra_env=env)
    assert result.returncode != 0
    assert "my-webserver" in db_rows(golem_env.db_path)

    result = run_golem(golem_env, "vm", "destroy", "my-webserver", "--yes", extra_env=env)
    assert_ok(result)
    assert "Destroyed my-webserver" in result.stdout
    assert db_rows(golem_env.db_path) == {}
    assert all(not s["vms"] for s in devnet.summaries())
    result = run_golem(golem_env, "vm", "list", extra_env=env)
    assert "Your VMs (0 total)" in result.stdout


def test_whole_flow_with_json(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    env = _env(devnet)
    result = run_golem(golem_env, "vm", "providers", "--json", extra_env=env)
    assert_ok(result)
    providers = json.loads(result.stdout)
    assert {p["provider_id"] for p in providers} == {h.provider_id for h in devnet.providers}
    first = providers[0]
    assert set(first) >= {"provider_id", "ip_address", "country", "resources", "reachable"}
    assert set(first["resources"]) == {"cpu", "memory", "storage"}
    assert all(p["reachable"] is True for p in providers)
    assert result.stderr == ""

    # No --provider-id: golem picks one and says why.
    result = run_golem(
        golem_env,
        "vm",
        "create",
        "db-1",
        *SMALL_VM,
        "--json",
        extra_env=env,
    )
    assert_ok(result)
    created = json.loads(result.stdout)
    assert created["name"] == "db-1" and created["status"] == "running"
    assert created["resources"] == {"cpu": 1, "memory": 1, "storage": 10}
    assert created["provider_id"] in {h.provider_id for h in devnet.providers}
    assert "most free capacity" in created["choice_reason"]
    assert created["host_key_fingerprint"].startswith("SHA256:")

    result = run_golem(golem_env, "vm", "list", "--json", extra_env=env)
    listed = json.loads(result.stdout)
    assert [vm["name"] for vm in listed] == ["db-1"]
    assert listed[0]["ssh_port"] == created["ssh_port"]

    result = run_golem(golem_env, "vm", "stop", "db-1", "--json", extra_env=env)
    assert_ok(result)
    assert json.loads(result.stdout) == [
        {
            "name": "db-1",
            "provider_id": created["provider_id"],
            "result": "done",
            "ok": True,
            "status": "stopped",
            "error": None,
            "provider_vm_name": created["provider_vm_name"],
            "note": None,
            "handled_by": None,
        }
    ]
    result = run_golem(golem_env, "vm", "start", "db-1", "--json", extra_env=env)
    assert json.loads(result.stdout)[0]["status"] == "running"
    result = run_golem(golem_env, "vm", "destroy", "db-1", "--yes", "--json", extra_env=env)
    assert json.loads(result.stdout)[0]["status"] is None
    assert json.loads(run_golem(golem_env, "vm", "list", "--json").stdout) == []


def test_stop_twice_is_idempotent(golem_env: GolemEnv, devnet: DevnetThread, golem) -> None:  # type: ignore[no-untyped-def]
    golem_env_vars = _env(devnet)
    assert_ok(
        golem(
            "vm",
            "create",
            "idem",
            *SMALL_VM,
            env=golem_env_vars,
        )
    )
    assert_ok(golem("vm", "stop", "idem", env=golem_env_vars))
    again = golem("vm", "stop", "idem", env=golem_env_vars)
    assert_ok(again)
    assert db_rows(golem_env.db_path)["idem"]["status"] == "stopped"


def test_list_refresh_shows_gone_and_unreachable(
    golem_env: GolemEnv, devnet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    env = _env(devnet)
    first, second = devnet.providers[0], devnet.providers[1]
    for name, provider in (("keep-1", first), ("lost-1", second)):
        assert_ok(
            golem(
                "vm",
                "create",
                name,
                "--provider-id",
                provider.provider_id,
                *SMALL_VM,
                env=env,
            )
        )
    lost = db_rows(golem_env.db_path)["lost-1"]

    # The provider forgets lost-1 behind our back; the first provider goes offline.
    async def delete(net):  # type: ignore[no-untyped-def]
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.delete(f"{second.api_url}/vms/{lost['provider_vm_name']}") as response,
        ):
            assert response.status == 200

    devnet.run(delete)
    devnet.set_faults(first.provider_id, offline=True)

    result = golem("vm", "list", "--refresh", env=env)
    assert result.exit_code == 3, result.output  # one provider did not answer
    rows = db_rows(golem_env.db_path)
    assert rows["keep-1"]["status"] == "unreachable"
    assert rows["lost-1"]["status"] == "gone"
    assert "● unreachable" in result.output and "● gone" in result.output

    # Back online: the truth comes back; gone stays until forgotten.
    devnet.clear_faults()
    assert_ok(golem("vm", "list", "--refresh", env=env))
    assert db_rows(golem_env.db_path)["keep-1"]["status"] == "running"
    result = golem("vm", "stop", "lost-1", env=env)
    assert result.exit_code == 1
    assert "no longer knows" in result.output
    assert_ok(golem("vm", "forget", "lost-1", env=env))
    assert set(db_rows(golem_env.db_path)) == {"keep-1"}


def test_a_provider_that_moved_is_found_through_discovery(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,  # type: ignore[no-untyped-def]
) -> None:
    import ipaddress
    import sqlite3

    env = _env(devnet)
    provider = devnet.providers[0]
    assert_ok(
        golem(
            "vm",
            "create",
            "mover",
            "--provider-id",
            provider.provider_id,
            *SMALL_VM,
            env=env,
        )
    )
    # What we recorded is now stale: nothing listens at the old address.
    old = str(ipaddress.ip_address(provider.ip_address) + 150)
    connection = sqlite3.connect(golem_env.db_path)
    with connection:
        connection.execute(
            "UPDATE vms SET provider_ip = ?, ssh_host = ? WHERE name = 'mover'", (old, old)
        )
    connection.close()

    result = golem("vm", "stop", "mover", env=env)
    assert_ok(result)
    row = db_rows(golem_env.db_path)["mover"]
    assert row["status"] == "stopped"
    assert row["provider_ip"] == provider.ip_address == row["ssh_host"]

    # The same through a refresh.
    connection = sqlite3.connect(golem_env.db_path)
    with connection:
        connection.execute("UPDATE vms SET provider_ip = ? WHERE name = 'mover'", (old,))
    connection.close()
    assert_ok(golem("vm", "list", "--refresh", env=env))
    row = db_rows(golem_env.db_path)["mover"]
    assert row["status"] == "stopped" and row["provider_ip"] == provider.ip_address
