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


def _gated_bind(vm: DevnetVM) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the VM's next port bind wait for a gate, so a delete can run during it.

    Answers (entered, gate): ``entered`` is set once the bind has begun (the start
    holds the VM's lock by then); the bind goes on when ``gate`` is set.
    """
    listen = vm.proxy.listen
    entered, gate = asyncio.Event(), asyncio.Event()

    async def gated_listen() -> None:
        entered.set()
        await gate.wait()
        await listen()

    vm.proxy.listen = gated_listen  # type: ignore[method-assign]
    return entered, gate


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
        entered, gate = _gated_bind(vm)
        start = asyncio.ensure_future(node.start_vm(vm))
        await entered.wait()  # start is now inside its bind, holding the VM's lock
        delete = asyncio.ensure_future(node.delete_vm(vm))
        # One turn of the loop (a yield, not a wait for time): the delete runs up
        # to the lock the start holds, and queues there.
        await asyncio.sleep(0)
        assert vm.lock.locked() and not delete.done()
        gate.set()
        await asyncio.gather(start, delete)
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
    # Long enough that the boot can only ever happen if stop fails to cancel it.
    devnet.set_faults(provider.provider_id, boot_delay_s=3600)
    key, _ = new_key()
    async with aiohttp.ClientSession(timeout=FAST) as session:
        info = await create_vm(session, provider, "slowboot", key)
        assert info["status"] == "creating"

        async def boot_task(net: Devnet) -> asyncio.Task[None] | None:
            return net.node(provider.provider_id).vms["slowboot"].boot

        boot = await asyncio.to_thread(devnet.run, boot_task)
        assert boot is not None
        async with session.post(f"{provider.api_url}/vms/slowboot/stop") as response:
            assert (await response.json())["status"] == "stopped"

    async def look(net: Devnet) -> tuple[str, bool, bool, bool, bool]:
        vm = net.node(provider.provider_id).vms["slowboot"]
        # Stop has cancelled the boot and waited for it: no boot can come later.
        assert boot is not None
        return (
            vm.status,
            vm.boot is None,
            boot.cancelled(),
            vm.proxy.listening,
            vm.server.listening,
        )

    assert await asyncio.to_thread(devnet.run, look) == ("stopped", True, True, False, False)
    assert refuses(provider.ip_address, info["ssh_port"])
