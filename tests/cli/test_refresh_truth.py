"""`golem vm list --refresh` tells the truth: every provider whose answer could not
be used is named on stderr with the reason, its VMs show `unreachable`, the exit
code says some (3) or all (1) refreshes failed, and --json says which VM was
refreshed."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from requestor.services.create import CreateRequest, create_vm
from requestor.services.runtime import open_services
from requestor.settings import load_settings
from tests.conftest import GolemEnv, run_golem
from tests.helpers import db_rows
from tests.support.threaded import DevnetThread


@pytest.fixture
def two(golem_env: GolemEnv, devnet: DevnetThread, monkeypatch: pytest.MonkeyPatch) -> DevnetThread:
    """ok-1 on the first provider, bad-1 on the second."""
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", devnet.discovery_url)
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url

    async def create_all() -> None:
        async with open_services(load_settings(dict(os.environ))) as services:
            for name, index in (("ok-1", 0), ("bad-1", 1)):
                provider_id = devnet.providers[index].provider_id
                request = CreateRequest(
                    name=name, cpu=1, memory=1, storage=10, provider_id=provider_id
                )
                await create_vm(services, request)

    asyncio.run(create_all())
    return devnet


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"error_rate": 1.0}, "HTTP 500"),
        ({"malformed_json": True}, "not JSON"),
        ({"oversized_body": True}, "too large"),
        ({"hang": True}, "answer within 1 s"),
        ({"offline": True}, "no longer available"),
    ],
)
def test_a_provider_whose_answer_cannot_be_used_is_named(
    golem_env: GolemEnv, two: DevnetThread, faults: dict[str, Any], reason: str
) -> None:
    bad = two.providers[1].provider_id
    two.set_faults(bad, **faults)
    result = run_golem(golem_env, "vm", "list", "--refresh", "--timeout", "1")
    assert result.returncode == 3, result.stdout + result.stderr  # partly failed
    assert "Traceback" not in result.stderr
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("Not refreshed"))
    assert f"provider {bad} (1 VM(s): bad-1)" in line
    assert reason in line
    rows = db_rows(golem_env.db_path)
    assert rows["bad-1"]["status"] == "unreachable"  # never the old status as if current
    assert rows["ok-1"]["status"] == "running"
    assert "● unreachable" in result.stdout

    result = run_golem(golem_env, "vm", "list", "--refresh", "--timeout", "1", "--json")
    assert result.returncode == 3
    listed = {vm["name"]: vm for vm in json.loads(result.stdout)}
    assert listed["ok-1"]["refreshed"] is True and listed["ok-1"]["refresh_error"] is None
    assert listed["bad-1"]["refreshed"] is False
    assert reason in listed["bad-1"]["refresh_error"]
    assert bad in result.stderr


def test_all_refreshes_failed_is_exit_1_and_recovers(
    golem_env: GolemEnv, two: DevnetThread
) -> None:
    two.set_all_faults(error_rate=1.0)
    result = run_golem(golem_env, "vm", "list", "--refresh")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("Not refreshed: provider") == 2
    assert {r["status"] for r in db_rows(golem_env.db_path).values()} == {"unreachable"}

    two.clear_faults()
    result = run_golem(golem_env, "vm", "list", "--refresh", "--json")
    assert result.returncode == 0, result.stderr
    assert all(vm["refreshed"] for vm in json.loads(result.stdout))
    assert "Not refreshed" not in result.stderr
    assert {r["status"] for r in db_rows(golem_env.db_path).values()} == {"running"}


def test_list_without_refresh_says_nothing_was_refreshed(
    golem_env: GolemEnv, two: DevnetThread
) -> None:
    result = run_golem(golem_env, "vm", "list", "--json")
    assert result.returncode == 0
    assert {(vm["refreshed"], vm["refresh_error"]) for vm in json.loads(result.stdout)} == {
        (False, None)
    }
