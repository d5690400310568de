"""Host-key rotation: a provider that re-created a VM, seen from the SSH side."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.devnet.helpers import FAST, create_vm, new_key, ssh
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(60)


async def _served_key(host: str, port: int, key: Any) -> str:
    conn = await ssh(host, port, key)
    try:
        assert (await conn.run("echo in")).stdout == "in\n"
        served = conn.get_server_host_key()
        assert served is not None
        return served.export_public_key().decode().strip()
    finally:
        conn.close()
        await conn.wait_closed()


async def _call(method: str, url: str) -> tuple[int, Any]:
    # The admin route wants this header (test_admin checks that); the provider ignores it.
    headers = {"Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.request(method, url, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_rotated_key_is_served_stored_and_kept_across_stop_start(
    devnet: DevnetThread,
) -> None:
    key, _ = new_key()
    provider = devnet.providers[0]
    async with aiohttp.ClientSession(timeout=FAST) as session:
        info = await create_vm(session, provider, "rekey", key)
    host, port = provider.ip_address, info["ssh_port"]
    before = await _served_key(host, port, key)
    vm_dir = next((devnet.state_dir / "vms" / provider.provider_id).iterdir())
    pub = vm_dir / "etc/ssh/ssh_host_ed25519_key.pub"

    open_conn = await ssh(host, port, key)
    rotated = await asyncio.to_thread(devnet.rotate_host_key, provider.provider_id, "rekey")
    assert rotated.split()[0] == "ssh-ed25519"
    assert rotated.split()[1] != before.split()[1]
    assert pub.read_text().strip() == rotated
    assert (vm_dir / "etc/ssh/ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    # A connection made before keeps working; new ones see the new key.
    assert (await open_conn.run("echo still")).stdout == "still\n"
    open_conn.close()
    assert await _served_key(host, port, key) == rotated

    # Through the admin route, which answers the new key too.
    url = f"{devnet.admin_url}/providers/{provider.provider_id}/vms/rekey/rotate-host-key"
    status, body = await _call("POST", url)
    assert status == 200, body
    assert body["provider_id"] == provider.provider_id and body["name"] == "rekey"
    again = body["host_key"]
    assert again != rotated and pub.read_text().strip() == again

    await _call("POST", f"{provider.api_url}/vms/rekey/stop")
    status, started = await _call("POST", f"{provider.api_url}/vms/rekey/start")
    assert (status, started["status"]) == (200, "running")
    assert await _served_key(host, port, key) == again


async def test_rotating_an_unknown_vm_or_provider(devnet: DevnetThread) -> None:
    base = f"{devnet.admin_url}/providers"
    assert (await _call("POST", f"{base}/devnet-provider-01/vms/nope/rotate-host-key")) == (
        404,
        {"detail": "VM not found"},
    )
    assert (await _call("POST", f"{base}/nobody/vms/nope/rotate-host-key")) == (
        404,
        {"detail": "Provider not found"},
    )
    with pytest.raises(KeyError):
        await asyncio.to_thread(devnet.rotate_host_key, "devnet-provider-01", "nope")
