"""One selection grammar for start, stop, destroy and forget: names, globs,
--all, --provider; and forget, which asks the provider before dropping a record.

The tests that change or drop records run on both backends (they take db_backend)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from requestor.services.create import CreateRequest, create_vm
from requestor.services.runtime import open_services
from requestor.settings import load_settings
from tests.conftest import GolemEnv, assert_ok, run_golem
from tests.helpers import state_rows
from tests.plugins.postgres import DbBackend
from tests.support.threaded import DevnetThread

# name -> index of the provider that holds it
LAYOUT = {"web-1": 0, "web-2": 0, "db-1": 1, "bulk-2": 2}


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest,
    golem_env: GolemEnv,
    devnet: DevnetThread,
    monkeypatch: pytest.MonkeyPatch,
) -> DevnetThread:
    if "db_backend" in request.fixturenames:
        request.getfixturevalue("db_backend")  # the database is chosen before the VMs
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", devnet.discovery_url)
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url
    ids = [p.provider_id for p in devnet.providers]

    async def create_all() -> None:
        async with open_services(load_settings(dict(os.environ))) as services:
            for name, index in LAYOUT.items():
                request = CreateRequest(
                    name=name, cpu=1, memory=1, storage=10, provider_id=ids[index]
                )
                await create_vm(services, request)

    asyncio.run(create_all())
    return devnet


def _provider(devnet: DevnetThread, index: int) -> str:
    return devnet.providers[index].provider_id


def db_rows(golem_env: GolemEnv) -> dict[str, dict[str, object]]:
    """The VMs in the test's state: its SQLite file, or the db_backend's database."""
    return state_rows(os.environ.get("GOLEM_REQUESTOR_DATABASE_URL") or golem_env.db_path)


def _statuses(golem_env: GolemEnv) -> dict[str, str]:
    return {name: str(row["status"]) for name, row in db_rows(golem_env).items()}


def _all_requests(devnet: DevnetThread) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for index in range(len(devnet.providers))
        for r in devnet.requests(index)
    ]


def _changing_requests(devnet: DevnetThread) -> list[str]:
    """Requests that change a VM (not the reads of create's own checks)."""
    return [
        r
        for r in _all_requests(devnet)
        if r.startswith(("PUT", "DELETE")) or r.endswith(("/stop", "/start"))
    ]


def test_names_with_all_are_refused_before_anything(
    golem_env: GolemEnv, fleet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    before = len(_changing_requests(fleet))
    for command in ("stop", "start", "destroy", "forget"):
        result = golem(
            "vm",
            command,
            "web-1",
            "--all",
            "--yes" if command != "stop" and command != "start" else "--json",
        )
        assert result.exit_code == 2, result.output
        if command in ("stop", "start"):  # --json: the error is one JSON object
            error = json.loads(result.stderr)["error"]
            assert error["message"] == "Name VMs or use --all, not both"
            assert error["hint"] and error["code"] == "input"
        else:
            assert "Error: Name VMs or use --all, not both" in result.output
            assert "Solution:" in result.output
    assert set(_statuses(golem_env).values()) == {"running"}
    assert len(_changing_requests(fleet)) == before


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("nope-1",), "VM not found in local database: nope-1"),
        (("nope-*",), "VM not found in local database: no VM matches 'nope-*'"),
        (("web-1", "nope-*", "x-1"), "no VM matches 'nope-*', x-1"),
        (("--provider", "devnet-provider-99"), "devnet-provider-99"),
        (("bulk-2", "--provider", "{p0}"), "bulk-2 is on {p2}"),
    ],
)
@pytest.mark.parametrize("command", ["start", "stop", "destroy", "forget"])
def test_a_selection_that_matches_nothing_is_one_error(
    golem_env: GolemEnv, fleet: DevnetThread, golem, command: str, args: tuple[str, ...], named: str
) -> None:  # type: ignore[no-untyped-def]
    ids = {"p0": _provider(fleet, 0), "p2": _provider(fleet, 2)}
    args = tuple(a.format(**ids) for a in args)
    extra = ("--yes",) if command in ("destroy", "forget") else ()
    before = len(_changing_requests(fleet))
    result = golem("vm", command, *args, *extra)
    assert result.exit_code == 2, result.output
    assert named.format(**ids) in result.output
    assert "Solution:" in result.output and "Traceback" not in result.output
    assert set(_statuses(golem_env).values()) == {"running"}
    assert set(_statuses(golem_env)) == set(LAYOUT)
    assert len(_changing_requests(fleet)) == before


def test_a_provider_with_no_vms_is_the_same_error(
    golem_env: GolemEnv, fleet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    # A provider that exists and advertises, but holds none of our VMs any more.
    assert_ok(golem("vm", "destroy", "bulk-2", "--yes"))
    p2 = _provider(fleet, 2)
    for command in ("stop", "start", "destroy", "forget"):
        result = golem(
            "vm", command, "--provider", p2, "--yes" if command == "destroy" else "--json"
        )
        assert result.exit_code == 2, result.output
        assert f"No VM in local state is on provider {p2}" in result.output


def test_provider_narrows_names_and_says_so(
    db_backend: DbBackend, golem_env: GolemEnv, fleet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    p0 = _provider(fleet, 0)
    result = run_golem(golem_env, "vm", "stop", "web-*", "db-1", "--provider", p0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Only VMs on provider {p0}: 2 of 3 named" in result.stderr
    assert _statuses(golem_env) == {
        "web-1": "stopped",
        "web-2": "stopped",
        "db-1": "running",
        "bulk-2": "running",
    }


def test_all_with_provider_is_that_providers_vms(
    golem_env: GolemEnv, fleet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    result = golem("vm", "stop", "--all", "--provider", _provider(fleet, 1), "--json")
    assert_ok(result)
    assert [o["name"] for o in json.loads(result.output)] == ["db-1"]
    assert _statuses(golem_env)["db-1"] == "stopped"


def test_help_documents_the_grammar(golem) -> None:  # type: ignore[no-untyped-def]
    for command in ("start", "stop", "destroy", "forget"):
        text = golem("vm", command, "--help").output
        assert "shell globs" in text and "--all" in text and "--provider ID" in text
        assert "matches nothing is an error (exit 2)" in text


# --- forget -------------------------------------------------------------------


def test_forget_refuses_a_vm_its_provider_still_holds(
    golem_env: GolemEnv, fleet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    vm_name = db_rows(golem_env)["web-1"]["provider_vm_name"]
    asked_before = len(fleet.requests(0, vm=vm_name))
    result = golem("vm", "forget", "web-1")
    assert result.exit_code == 1, result.output
    assert f"Provider {_provider(fleet, 0)} still holds this VM (status running)" in result.output
    assert "golem vm destroy web-1" in result.output and "--force" in result.output
    assert "web-1" in db_rows(golem_env)
    assert len(fleet.requests(0, vm=vm_name)) > asked_before  # the provider was asked


def test_forget_force_says_where_the_vm_still_is(
    db_backend: DbBackend, golem_env: GolemEnv, fleet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    row = db_rows(golem_env)["db-1"]
    result = golem("vm", "forget", "db-1", "--force")
    assert_ok(result)
    assert row["provider_id"] in result.output and row["provider_vm_name"] in result.output
    assert "db-1" not in db_rows(golem_env)


def test_forget_of_a_glob_asks_with_the_count(
    golem_env: GolemEnv, fleet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    # Not at a terminal and no --yes: refused, nothing asked of any provider.
    before = len(_all_requests(fleet))
    result = run_golem(golem_env, "vm", "forget", "web-*")
    assert result.returncode == 2, result.stderr
    assert "Refusing to forget 2 VM(s)" in result.stderr
    assert len(_all_requests(fleet)) == before
    # With --yes: each provider is asked, and both VMs it still holds are kept.
    result = run_golem(golem_env, "vm", "forget", "web-*", "--yes", "--json")
    assert result.returncode == 1, result.stderr
    outcomes = json.loads(result.stdout)
    assert {o["result"] for o in outcomes} == {"failed"}
    assert all("still holds" in o["error"] for o in outcomes)
    assert set(db_rows(golem_env)) == set(LAYOUT)


def test_forget_of_a_vm_the_provider_no_longer_holds(
    db_backend: DbBackend, golem_env: GolemEnv, fleet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    assert_ok(run_golem(golem_env, "vm", "destroy", "web-2", "--yes"))
    # web-1 destroyed behind golem's back: the provider answers 404 for it.
    p0 = fleet.providers[0]
    vm_name = db_rows(golem_env)["web-1"]["provider_vm_name"]

    async def delete(_net):  # type: ignore[no-untyped-def]
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.delete(f"{p0.api_url}/vms/{vm_name}") as response,
        ):
            assert response.status == 200

    fleet.run(delete)
    result = golem("vm", "forget", "web-1")
    assert_ok(result)
    assert "Forgot web-1" in result.output
    assert "web-1" not in db_rows(golem_env)


def test_forget_refuses_when_the_provider_does_not_answer(
    golem_env: GolemEnv, fleet: DevnetThread, golem
) -> None:  # type: ignore[no-untyped-def]
    fleet.set_faults(_provider(fleet, 1), offline=True)
    result = golem("vm", "forget", "db-1")
    assert result.exit_code == 1, result.output
    assert "Cannot ask provider" in result.output and "--force" in result.output
    assert "db-1" in db_rows(golem_env)
    assert_ok(golem("vm", "forget", "db-1", "--force"))
    assert "db-1" not in db_rows(golem_env)


def test_names_with_all_change_nothing_not_even_local_state(golem_env: GolemEnv, golem) -> None:  # type: ignore[no-untyped-def]
    result = golem("vm", "destroy", "web-*", "--all", "--yes")
    assert result.exit_code == 2
    assert not golem_env.db_path.exists()
    result = golem("vm", "forget")
    assert result.exit_code == 2
    assert "Name at least one VM, or use --all or --provider ID" in result.output
    assert not golem_env.db_path.exists()
