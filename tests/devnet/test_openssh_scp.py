"""OpenSSH 9's default ``scp`` (SFTP underneath, no ``-O``) to and from a devnet VM.

It needs the SFTP session to end with an exit status, as OpenSSH's sftp-server does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.devnet.helpers import FAST, create_vm, new_key
from tests.support.threaded import DevnetThread

# The OpenSSH client is installed by `make test` (the Makefile's system-deps).
pytestmark = pytest.mark.timeout(60)


def _scp(key: Path, port: int, home: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "scp",
            "-q",
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-i",
            str(key),
            "-P",
            str(port),
            *paths,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )


def test_default_scp_copies_up_and_down_and_exits_0(devnet: DevnetThread, tmp_path: Path) -> None:
    key, key_path = new_key(tmp_path)
    assert key_path is not None
    provider = devnet.providers[0]

    async def create() -> int:
        async with aiohttp.ClientSession(timeout=FAST) as session:
            info = await create_vm(session, provider, "scp-default", key)
        port: int = info["ssh_port"]
        return port

    port = asyncio.run(create())
    remote = f"ubuntu@{provider.ip_address}"
    source = tmp_path / "up.bin"
    source.write_bytes(os.urandom(200_000))

    up = _scp(key_path, port, tmp_path, str(source), f"{remote}:copied.bin")
    assert up.returncode == 0, up.stderr
    vm_dir = next((devnet.state_dir / "vms" / provider.provider_id).iterdir())
    assert (vm_dir / "home/ubuntu/copied.bin").read_bytes() == source.read_bytes()

    back = tmp_path / "down.bin"
    down = _scp(key_path, port, tmp_path, f"{remote}:copied.bin", str(back))
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == source.read_bytes()
