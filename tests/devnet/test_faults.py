"""Every fault takes effect, can be changed while the devnet runs, and stays per provider."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import asyncssh
import pytest

from golem_devnet.faults import OVERSIZED_BODY_BYTES, Faults
from golem_devnet.network import Devnet
from tests.devnet.helpers import FAST, create_vm, new_key, refuses, ssh, vm_body
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(60)

KEY, _ = new_key()


async def _get(url: str, timeout: aiohttp.ClientTimeout = FAST) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        return response.status, await response.json()


async def test_latency(devnet: DevnetThread) -> None:
    target, other = devnet.providers[0], devnet.providers[1]
    devnet.set_faults(target.provider_id, latency_ms=1000)
    started = time.monotonic()
    assert (await _get(f"{target.api_url}/vms"))[0] == 200
    assert time.monotonic() - started >= 1.0
    # Not delayed by the other provider's latency. The bound is that latency, not a
    # guess at how fast an answer is: the suite runs on busy machines, in parallel.
    started = time.monotonic()
    await _get(f"{other.api_url}/vms")
    assert time.monotonic() - started < 1.0


async def test_error_rate(devnet: DevnetThread) -> None:
    target = devnet.providers[0]
    devnet.set_faults(target.provider_id, error_rate=1.0)
    for _ in range(5):
        assert await _get(f"{target.api_url}/vms") == (500, {"detail": "Injected fault"})
    devnet.set_faults(target.provider_id, error_rate=0.5)
    statuses = [(await _get(f"{target.api_url}/vms"))[0] for _ in range(60)]
    assert {200, 500} == set(statuses)
    devnet.clear_faults(target.provider_id)
    assert (await _get(f"{target.api_url}/vms"))[0] == 200


async def test_offline_refuses_and_comes_back(devnet: DevnetThread) -> None:
    target = devnet.providers[1]
    async with aiohttp.ClientSession(timeout=FAST) as session:
        # A kept-alive connection from before the outage is cut too.
        async with session.get(f"{target.api_url}/vms") as response:
            assert response.status == 200
        devnet.set_faults(target.provider_id, offline=True)
        assert refuses(target.ip_address, 7466)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(f"{target.api_url}/vms") as response:
                await response.read()
    # Discovery and the admin API stay up, and so do the other providers.
    assert (await _get(f"{devnet.discovery_url}/devnet/providers"))[0] == 200
    assert (await _get(f"{devnet.providers[0].api_url}/vms"))[0] == 200
    devnet.set_faults(target.provider_id, offline=False)
    assert (await _get(f"{target.api_url}/vms"))[0] == 200


async def test_hang_accepts_and_never_answers(devnet: DevnetThread) -> None:
    target = devnet.providers[2]
    devnet.set_faults(target.provider_id, hang=True)
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await _get(f"{target.api_url}/vms", aiohttp.ClientTimeout(total=0.5))
    assert time.monotonic() - started >= 0.5
    devnet.clear_faults()
    assert (await _get(f"{target.api_url}/vms"))[0] == 200


async def test_boot_delay(devnet: DevnetThread) -> None:
    target = devnet.providers[0]
    devnet.set_faults(target.provider_id, boot_delay_s=1.0)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=FAST) as session:
        info = await create_vm(session, target, "slow", KEY)
        assert info["status"] == "creating"
        # The provider's proxy port is there, but nothing answers behind it yet.
        with pytest.raises((asyncssh.Error, OSError)):
            await ssh(target.ip_address, info["ssh_port"], KEY)

    async def booted(net: Devnet) -> None:
        boot = net.node(target.provider_id).vms["slow"].boot
        if boot is not None:
            await asyncio.shield(boot)  # the delayed boot itself, not a poll

    await asyncio.to_thread(devnet.run, booted)
    assert (await _get(f"{target.api_url}/vms/slow"))[1]["status"] == "running"
    assert time.monotonic() - started >= 1.0
    async with await ssh(target.ip_address, info["ssh_port"], KEY) as conn:
        assert (await conn.run("echo up")).stdout == "up\n"


async def test_malformed_json(devnet: DevnetThread) -> None:
    target = devnet.providers[0]
    devnet.set_faults(target.provider_id, malformed_json=True)
    for method, path in (("GET", "/vms"), ("GET", "/vms/ghost"), ("DELETE", "/vms/ghost")):
        async with (
            aiohttp.ClientSession(timeout=FAST) as session,
            session.request(method, f"{target.api_url}{path}") as response,
        ):
            assert response.content_type == "application/json"
            raw = await response.read()
        with pytest.raises(ValueError):
            json.loads(raw)


async def test_oversized_body(devnet: DevnetThread) -> None:
    target = devnet.providers[0]
    devnet.set_faults(target.provider_id, oversized_body=True)
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.get(f"{target.api_url}/vms") as response,
    ):
        assert response.status == 200
        assert response.content_length == OVERSIZED_BODY_BYTES
        first = await response.content.readexactly(1024)
        assert first.startswith(b'{"detail": "xxx')
        total = len(first)
        async for chunk in response.content.iter_chunked(1 << 20):
            total += len(chunk)
    assert total == OVERSIZED_BODY_BYTES


async def test_missing_route_is_not_found_not_vm_not_found(devnet: DevnetThread) -> None:
    target = devnet.providers[1]
    async with aiohttp.ClientSession(timeout=FAST) as session:
        await create_vm(session, target, "nostart", KEY)
        devnet.set_faults(target.provider_id, missing_routes={"start", "delete"})
        async with session.post(f"{target.api_url}/vms/nostart/stop") as response:
            assert response.status == 200
        async with session.post(f"{target.api_url}/vms/nostart/start") as response:
            assert (response.status, await response.json()) == (404, {"detail": "Not Found"})
        # Same path as GET /vms/{name}, which still exists: 405, as FastAPI answers.
        async with session.delete(f"{target.api_url}/vms/nostart") as response:
            assert (response.status, await response.json()) == (
                405,
                {"detail": "Method Not Allowed"},
            )
        async with session.post(f"{target.api_url}/vms/ghost/stop") as response:
            assert (response.status, await response.json()) == (404, {"detail": "VM not found"})
        async with session.get(f"{target.api_url}/vms/nostart") as response:
            assert (await response.json())["status"] == "stopped"


async def test_faults_set_at_start_and_through_the_admin_route(devnet_factory: Any) -> None:
    net = devnet_factory(
        providers=2,
        faults=Faults(latency_ms=300),
        provider_faults={"devnet-provider-02": Faults(offline=True)},
    )
    first, second = net.providers
    assert refuses(second.ip_address, 7466)
    started = time.monotonic()
    await _get(f"{first.api_url}/vms")
    assert time.monotonic() - started >= 0.3
    async with aiohttp.ClientSession(timeout=FAST) as session:
        async with session.put(
            f"{net.admin_url}/providers/{first.provider_id}/faults", json={"error_rate": 1}
        ) as response:
            assert response.status == 200
        async with session.post(f"{first.api_url}/vms", json=vm_body("x-1", KEY)) as response:
            assert response.status == 500
        async with session.put(f"{net.admin_url}/faults", json={}) as response:
            assert (await response.json())["providers"] == [first.provider_id, second.provider_id]
    assert (await _get(f"{second.api_url}/vms"))[0] == 200
