"""The provider client against real devnet providers, including deployed quirks."""

from __future__ import annotations

import pytest

from requestor.errors import (
    InsufficientResourcesError,
    ProviderProtocolError,
    UnsupportedOperationError,
    VMGoneError,
)
from requestor.services.http import HttpClient
from requestor.services.provider import ProviderClient, ProviderUnreachable
from requestor.wire.models import CreateVMRequest
from tests.support.threaded import DevnetThread

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC5X5vqz5Y2tVx2S4m3pPZy0d9u4JdC2s9l7h0yJ1d7B test"


def _request(name: str, cpu: int = 1) -> CreateVMRequest:
    return CreateVMRequest(
        name=name, resources={"cpu": cpu, "memory": 1, "storage": 10}, ssh_key=KEY
    )


async def test_quirks_of_deployed_providers(devnet: DevnetThread) -> None:
    handle = devnet.providers[0]
    async with HttpClient() as http:
        client = ProviderClient(http, handle.api_url, handle.provider_id)
        assert await client.probe() >= 0

        # More than it has: the provider's 500 "An unexpected error occurred".
        assert handle.cpu < 16
        with pytest.raises(InsufficientResourcesError, match="does not have the resources"):
            await client.create_vm(_request("too-big-vm", cpu=16))

        info = await client.create_vm(_request("quirk-vm"))
        assert info.name == "quirk-vm"
        access = await client.access("quirk-vm")
        assert access.ssh_host == handle.ip_address and access.ssh_port >= 50800

        # Unknown names: access answers 500, delete answers 200, stop 404.
        with pytest.raises(VMGoneError):
            await client.access("never-created")
        await client.delete("never-created")
        with pytest.raises(VMGoneError):
            await client.stop("never-created")
        assert await client.get_vm("never-created") is None

        # A missing route is not a missing VM.
        devnet.set_faults(handle.provider_id, missing_routes=["stop"])
        with pytest.raises(UnsupportedOperationError, match="no 'stop' route"):
            await client.stop("quirk-vm")
        devnet.clear_faults()
        stopped = await client.stop("quirk-vm")
        assert stopped is not None
        await client.delete("quirk-vm")
        assert await client.get_vm("quirk-vm") is None


async def test_unusable_answers_are_bounded_and_named(devnet: DevnetThread) -> None:
    handle = devnet.providers[1]
    async with HttpClient(max_body_bytes=1024 * 1024) as http:
        client = ProviderClient(http, handle.api_url, handle.provider_id)
        await client.create_vm(_request("known-vm"))
        devnet.set_faults(handle.provider_id, oversized_body=True)
        with pytest.raises(ProviderProtocolError, match="too large") as caught:
            await client.get_vm("anything")
        assert handle.provider_id in caught.value.message
        devnet.set_faults(handle.provider_id, malformed_json=True)
        with pytest.raises(ProviderProtocolError, match="not JSON"):
            await client.get_vm("known-vm")
        devnet.set_faults(handle.provider_id, offline=True)
        with pytest.raises(ProviderUnreachable) as unreachable:
            await client.probe()
        assert unreachable.value.transport.refused


async def test_hanging_provider_is_cut_by_the_timeout(devnet: DevnetThread) -> None:
    handle = devnet.providers[2]
    devnet.set_faults(handle.provider_id, hang=True)
    async with HttpClient(timeout_cap=0.5) as http:
        client = ProviderClient(http, handle.api_url, handle.provider_id)
        with pytest.raises(ProviderUnreachable, match=r"answer within 0\.5 s"):
            await client.get_vm("anything")
