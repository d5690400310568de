"""A provider that answers garbage must not take a command down with it: it is
reported, named, and every other provider's work completes and is recorded."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from golem_devnet.network import Devnet
from requestor.db.engine import Database
from requestor.db.models import VM, VMStatus
from tests.conftest import GolemEnv, assert_ok
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread

HOSTILE_ID = "hostile-provider"
DEEP = ("[" * 200_000 + "]" * 200_000).encode()


async def _hostile_app(request: web.Request) -> web.Response:
    if request.method == "POST":  # a 422 whose "loc" is not a list
        return web.json_response({"detail": [{"loc": 5, "msg": {"x": [1]}}]}, status=422)
    return web.Response(body=DEEP, content_type="application/json")


@pytest.fixture
def hostile(devnet: DevnetThread) -> Iterator[str]:
    """A hostile provider API on the network's port, advertised on the devnet's discovery."""
    first = ipaddress.ip_address(devnet.providers[0].ip_address)
    address = str(first + 100)

    async def start(_net: Devnet) -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", _hostile_app)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, address, 7466).start()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{devnet.discovery_url}/api/v1/advertisements",
                headers={"X-Provider-ID": HOSTILE_ID, "X-Provider-Signature": "sig"},
                json={
                    "ip_address": address,
                    "country": "SE",
                    "resources": {"cpu": 16, "memory": 64, "storage": 1000},
                },
            ) as response,
        ):
            assert response.status == 200, await response.text()
        return runner

    runner = devnet.run(start)
    yield address

    async def stop(_net: Devnet) -> None:
        await runner.cleanup()

    devnet.run(stop)


def _error(output: str) -> str:
    assert "Traceback" not in output and "Unexpected internal error" not in output, output
    return next(line for line in output.splitlines() if line.startswith("Error:"))


def test_hostile_provider_is_named_and_others_complete(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    hostile: str,
    golem: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", devnet.discovery_url)

    result = golem("vm", "providers", "--json")
    assert_ok(result)
    listed = {p["provider_id"]: p for p in json.loads(result.output)}
    assert listed[HOSTILE_ID]["reachable"] is False
    assert "not JSON" in listed[HOSTILE_ID]["error"]
    assert all(listed[p.provider_id]["reachable"] for p in devnet.providers)

    # Create on it: the odd 422 becomes a clear refusal naming the provider.
    result = golem(
        "vm",
        "create",
        "vm-bad",
        "--provider-id",
        HOSTILE_ID,
        *SMALL_VM,
    )
    assert result.exit_code == 1
    assert f"Provider {HOSTILE_ID} refused to create the VM (HTTP 422" in _error(result.output)
    assert "vm-bad" not in db_rows(golem_env.db_path)

    # A good VM, and one recorded on the hostile provider (as if it turned hostile later).
    assert_ok(
        golem(
            "vm",
            "create",
            "vm-good",
            "--provider-id",
            devnet.providers[0].provider_id,
            *SMALL_VM,
        )
    )

    async def record_hostile_vm() -> None:
        async with Database(golem_env.db_path) as db, db.write() as session:
            session.add(
                VM(
                    name="vm-hostile",
                    provider_id=None,
                    provider_ip=hostile,
                    provider_vm_name="vm-hostile-0001",
                    cpu=1,
                    memory=1,
                    storage=10,
                    status=VMStatus.RUNNING,
                    ssh_user="ubuntu",
                )
            )

    asyncio.run(record_hostile_vm())

    result = golem("vm", "stop", "--all", "--json")
    assert result.exit_code == 3, result.output  # partly failed
    outcomes = {o["name"]: o for o in json.loads(result.output)}
    assert outcomes["vm-good"]["ok"] is True
    assert outcomes["vm-hostile"]["ok"] is False
    assert f"Provider {hostile} sent an unusable answer" in outcomes["vm-hostile"]["error"]
    rows = db_rows(golem_env.db_path)
    assert rows["vm-good"]["status"] == "stopped"
    assert rows["vm-hostile"]["status"] == "running"

    result = golem("vm", "list", "--refresh", "--json")
    assert result.exit_code == 3, result.output  # the hostile provider's answer is unusable
    assert db_rows(golem_env.db_path)["vm-good"]["status"] == "stopped"
    assert db_rows(golem_env.db_path)["vm-hostile"]["status"] == "unreachable"
