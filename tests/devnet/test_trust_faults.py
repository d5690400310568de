"""The faults that make a provider lie about a create, keep a VM it was told to
delete, or put garbage on a VM's SSH port."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest

from golem_devnet import cli as devnet_cli
from golem_devnet.faults import GARBAGE_SSH_MODES
from tests.devnet.helpers import FAST, new_key, vm_body
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(60)

KEY, _ = new_key()


async def _call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.request(method, url, json=body) as response,
    ):
        return response.status, await response.json()


async def test_create_then_fail_creates_and_answers_500(devnet: DevnetThread) -> None:
    target = devnet.providers[0]
    devnet.set_faults(target.provider_id, create_then_fail=True)
    status, body = await _call("POST", f"{target.api_url}/vms", vm_body("liar", KEY))
    assert (status, body) == (500, {"detail": "An unexpected error occurred"})
    status, info = await _call("GET", f"{target.api_url}/vms/liar")
    assert status == 200 and info["status"] == "running"


async def test_delete_fails_keeps_the_vm(devnet: DevnetThread) -> None:
    target = devnet.providers[0]
    await _call("POST", f"{target.api_url}/vms", vm_body("sticky", KEY))
    devnet.set_faults(target.provider_id, delete_fails=True)
    status, body = await _call("DELETE", f"{target.api_url}/vms/sticky")
    assert (status, body) == (500, {"detail": "An unexpected error occurred"})
    assert (await _call("GET", f"{target.api_url}/vms/sticky"))[0] == 200
    devnet.clear_faults(target.provider_id)
    assert (await _call("DELETE", f"{target.api_url}/vms/sticky"))[0] == 200
    assert (await _call("GET", f"{target.api_url}/vms/sticky"))[0] == 404


def _talk(host: str, port: int, send: bytes) -> bytes:
    """What the port says within 2 s after we send ``send``; b"" if it closed."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.settimeout(2)
        received = b""
        try:
            sock.sendall(send)
            while chunk := sock.recv(4096):
                received += chunk
        except TimeoutError:
            received += b"<silent>"
        except ConnectionResetError:
            received += b"<reset>"
        return received


@pytest.mark.parametrize("mode", GARBAGE_SSH_MODES)
async def test_garbage_ssh(devnet: DevnetThread, mode: str) -> None:
    target = devnet.providers[0]
    _, info = await _call("POST", f"{target.api_url}/vms", vm_body("noisy", KEY))
    port = info["ssh_port"]
    healthy = await asyncio.to_thread(_talk, target.ip_address, port, b"")
    assert healthy.startswith(b"SSH-2.0-")
    devnet.set_faults(target.provider_id, garbage_ssh=mode)
    hello = b"SSH-2.0-test\r\n" + b"\x00\x00\x00\x0c\x0a\x14kexinit...."
    said = await asyncio.to_thread(_talk, target.ip_address, port, hello)
    if mode == "non-ascii":
        line = said.split(b"\r\n")[0]
        assert line.startswith(b"SSH-2.0-")
        with pytest.raises(UnicodeDecodeError):
            line.decode("ascii")
    elif mode == "close":
        assert said.startswith(b"SSH-2.0-OpenSSH") and not said.endswith(b"<silent>")
    else:
        assert said == b"<silent>"
    devnet.clear_faults(target.provider_id)
    assert (await asyncio.to_thread(_talk, target.ip_address, port, b"")).startswith(b"SSH-2.0-")


def test_cli_offers_every_garbage_mode() -> None:
    assert devnet_cli.GARBAGE_SSH_CHOICES == GARBAGE_SSH_MODES
