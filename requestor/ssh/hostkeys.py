"""Host keys, trust on first use: the key a VM shows at its first connection is
pinned in local state, and every later connection must see the same key.

Pins are per VM in golem's database, never in ``~/.ssh/known_hosts``: providers
reuse ports, so a host:port is not an identity.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time

from requestor.errors import HostKeyChangedError, SSHUnreachableError

# ed25519 first: without it asyncssh prefers an RSA host key, and a pin made with
# one order would not match a connection made with another.
HOST_KEY_ALGORITHMS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
)


def fingerprint(public_key_line: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a one-line public key."""
    try:
        blob = base64.b64decode(public_key_line.split()[1])
    except (IndexError, ValueError):
        return "SHA256:(unreadable key)"
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def same_key(a: str, b: str) -> bool:
    return a.split()[:2] == b.split()[:2]


def host_key_changed(vm_name: str, pinned: str, seen: str) -> HostKeyChangedError:
    return HostKeyChangedError(
        f"Host key of VM {vm_name} has changed: pinned {fingerprint(pinned)}, "
        f"now {fingerprint(seen)}. Someone may be intercepting the connection, or the "
        "provider re-created the VM",
        hint=(
            f"If you know why it changed (e.g. you re-created the VM), re-pin with "
            f"'golem vm ssh {vm_name} --repin'; otherwise do not connect."
        ),
    )


async def fetch_host_key(host: str, port: int, limit: float = 10.0) -> str:
    """The host key the server at host:port shows (no authentication happens)."""
    from requestor.ssh._asyncssh import asyncssh

    async with asyncio.timeout(limit):
        key = await asyncssh.get_server_host_key(
            host,
            port,
            server_host_key_algs=list(HOST_KEY_ALGORITHMS),
            config=None,
        )
    if key is None:
        raise SSHUnreachableError()
    return str(key.export_public_key("openssh").decode().strip())


async def wait_for_host_key(host: str, port: int, within: float, poll_interval: float = 0.5) -> str:
    """Poll until the VM's SSH answers, then return its host key (to pin)."""
    from requestor.ssh._asyncssh import asyncssh

    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await fetch_host_key(host, port, limit=max(1.0, min(10.0, remaining)))
        except (OSError, TimeoutError, asyncssh.Error, SSHUnreachableError):
            if time.monotonic() + poll_interval >= deadline:
                raise SSHUnreachableError() from None
        await asyncio.sleep(poll_interval)
