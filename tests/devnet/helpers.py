"""Shared helpers for the devnet tests."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh

from tests.support.threaded import ProviderHandle

FAST = aiohttp.ClientTimeout(total=10)


def new_key(directory: Path | None = None) -> tuple[asyncssh.SSHKey, Path | None]:
    """An ed25519 key; also written (0600, OpenSSH format) into ``directory`` if given."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    if directory is None:
        return key, None
    path = directory / "id_ed25519"
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    return key, path


def public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


def vm_body(
    name: str,
    key: asyncssh.SSHKey | str,
    cpu: int = 1,
    memory: int = 1,
    storage: int = 10,
    **extra: Any,
) -> dict[str, Any]:
    ssh_key = key if isinstance(key, str) else public(key)
    return {
        "name": name,
        "resources": {"cpu": cpu, "memory": memory, "storage": storage},
        "ssh_key": ssh_key,
        **extra,
    }


async def create_vm(
    session: aiohttp.ClientSession,
    provider: ProviderHandle,
    name: str,
    key: asyncssh.SSHKey,
    **resources: int,
) -> dict[str, Any]:
    async with session.post(
        f"{provider.api_url}/vms", json=vm_body(name, key, **resources)
    ) as response:
        assert response.status == 200, await response.text()
        info: dict[str, Any] = await response.json()
        return info


async def ssh(
    host: str, port: int, key: asyncssh.SSHKey, username: str = "ubuntu", **options: Any
) -> asyncssh.SSHClientConnection:
    """An asyncssh client that reads nothing from ~/.ssh and checks no host key."""
    return await asyncssh.connect(
        host,
        port,
        username=username,
        client_keys=[key],
        known_hosts=None,
        config=None,
        agent_path=None,
        connect_timeout=10,
        **options,
    )


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def refuses(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False
