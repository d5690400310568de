"""Stop, start and delete of one VM, racing: each waits for the one before (a per-VM lock)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from golem_devnet.network import Devnet
from golem_devnet.provider import DevnetVM, ProviderNode
from tests.devnet.helpers import FAST, create_vm, new_key, port_is_free, refuses
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(60)


async def _stopped_vm(net: DevnetThread, name: str) -> int:
    key, _ = new_key()
    provider = net.providers[0]
    async with aiohttp.ClientSession(timeout=FAST) as session:
        info = await create_vm(session, provider, name, key)
        async with session.post(f"{provider.api_url}/vms/{name}/stop") as response:
            assert response.status == 200
    port: int = info["ssh_port"]
    return port


def _slow_bind(vm: DevnetVM, delay: float) -> None:
    """Make the VM's next port bind take ``delay`` seconds, so a delete runs during it."""
    listen = vm.proxy.listen

    async def slow_listen() -> None:
        await asyncio.sleep(delay)
        await listen()

    vm.proxy.listen = slow_listen  # type: ignore[method-assign]


def _left_over(node: ProviderNode, vm: DevnetVM) -> dict[str, Any]:
    return {
        "status": vm.status,
        "proxy listening": vm.proxy.listening,
        "sshd listening": vm.server.listening,
        "registered": node.vms.get(vm.name) is vm,
        "folder": vm.root.exists(),
        "all free": node.free()
        == {"cpu": node.spec.cpu, "memory": node.spec.memory, "storage": node.spec.storage},
    }


GONE = {
    "status": "deleted",
    "proxy listening": False,
    "sshd listening": False,
    "registered": False,
    "folder": False,
    "all free": True,
}


def _assert_port_closed(net: DevnetThread, port: int) -> None:
    host = net.providers[0].ip_address
    assert refuses(host, port)
    assert port_is_free(host, port)


async def test_delete_while_start_binds_leaves_the_port_closed(devnet: DevnetThread) -> None:
    port = await _stopped_vm(devnet, "racer")
    provider_id = devnet.providers[0].provider_id

    async def race(net: Devnet) -> dict[str, Any]:
        node = net.node(provider_id)
        vm = node.vms["racer"]
        _slow_bind(vm, 0.3)
        start = asyncio.ensure_future(node.start_vm(vm))
        await asyncio.sleep(0.05)  # start is now inside its (slow) bind
        await node.delete_vm(vm)
        await start
        return _left_over(node, vm)

    assert await asyncio.to_thread(devnet.run, race) == GONE
    _assert_port_closed(devnet, port)


async def test_start_after_delete_does_nothing(devnet: DevnetThread) -> None:
    port = await _stopped_vm(devnet, "late")
    provider_id = devnet.providers[0].provider_id

    async def race(net: Devnet) -> dict[str, Any]:
        node = net.node(provider_id)
        vm = node.vms["late"]
        delete = asyncio.ensure_future(node.delete_vm(vm))
        start = asyncio.ensure_future(node.start_vm(vm))
        stop = asyncio.ensure_future(node.stop_vm(vm))
        await asyncio.gather(delete, start, stop)
        return _left_over(node, vm)

    assert await asyncio.to_thread(devnet.run, race) == GONE
    _assert_port_closed(devnet, port)


async def test_concurrent_start_and_delete_over_http(devnet: DevnetThread) -> None:
    api = devnet.providers[0].api_url
    for round_ in range(5):
        name = f"http-race-{round_}"
        port = await _stopped_vm(devnet, name)
        async with aiohttp.ClientSession(timeout=FAST) as session:

            async def call(method: str, url: str) -> int:
                async with session.request(method, url) as response:
                    await response.read()
                    return response.status

            statuses = await asyncio.gather(
                call("POST", f"{api}/vms/{name}/start"), call("DELETE", f"{api}/vms/{name}")
            )
            assert statuses[1] == 200
        _assert_port_closed(devnet, port)
        assert devnet.summaries()[0]["vms"] == []


async def test_stop_during_a_delayed_boot_cancels_it(devnet: DevnetThread) -> None:
    provider = devnet.providers[0]
    devnet.set_faults(provider.provider_id, boot_delay_s=0.3)
    key, _ = new_key()
    async with aiohttp.ClientSession(timeout=FAST) as session:
        info = await create_vm(session, provider, "slowboot", key)
        assert info["status"] == "creating"
        async with session.post(f"{provider.api_url}/vms/slowboot/stop") as response:
            assert (await response.json())["status"] == "stopped"
    await asyncio.sleep(0.6)  # well past when the boot would have happened

    async def look(net: Devnet) -> tuple[str, bool, bool]:
        vm = net.node(provider.provider_id).vms["slowboot"]
        return vm.status, vm.proxy.listening, vm.server.listening

    assert await asyncio.to_thread(devnet.run, look) == ("stopped", False, False)
    assert refuses(provider.ip_address, info["ssh_port"])
