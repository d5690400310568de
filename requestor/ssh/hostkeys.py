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


class BrokenSSHServer(Exception):
    """The port answered, but not as an SSH server does; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def broken_server_reason(error: BaseException, limit: float) -> str | None:
    """How a failed handshake shows a port that answers but does not speak SSH;
    None for the failures of a port nobody listens on yet (refused, reset)."""
    import asyncssh

    if isinstance(error, UnicodeDecodeError):
        return "its SSH port sent a version line that is not ASCII"
    if isinstance(error, asyncssh.ConnectionLost):
        return "its SSH port closed the connection during the key exchange"
    if isinstance(error, TimeoutError):
        return f"its SSH port did not complete the SSH handshake within {limit:g} s"
    return None


async def fetch_host_key(host: str, port: int, limit: float = 10.0) -> str:
    """The host key the server at host:port shows (no authentication happens).

    A server that sends a version line that is not ASCII is a ``BrokenSSHServer``
    (asyncssh lets the ``UnicodeDecodeError`` through); the whole exchange is
    bounded by ``limit``.
    """
    import asyncssh

    try:
        async with asyncio.timeout(limit):
            key = await asyncssh.get_server_host_key(
                host,
                port,
                server_host_key_algs=list(HOST_KEY_ALGORITHMS),
                config=None,
            )
    except UnicodeDecodeError as error:
        raise BrokenSSHServer(broken_server_reason(error, limit) or str(error)) from None
    if key is None:
        raise SSHUnreachableError()
    return str(key.export_public_key("openssh").decode().strip())


async def wait_for_host_key(host: str, port: int, within: float, poll_interval: float = 0.5) -> str:
    """Poll until the VM's SSH answers, then return its host key (to pin).

    A port still refusing or resetting is a VM starting up: ``SSHUnreachableError``
    at the deadline. A port that went on answering with something other than SSH
    (the last attempt) is a ``BrokenSSHServer``; a version line that is not ASCII
    is one at once, as waiting will not change it.
    """
    import asyncssh

    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        limit = max(1.0, min(10.0, remaining))
        try:
            return await fetch_host_key(host, port, limit=limit)
        except (OSError, TimeoutError, asyncssh.Error, SSHUnreachableError) as error:
            if time.monotonic() + poll_interval >= deadline:
                reason = broken_server_reason(error, limit)
                if reason is not None:
                    raise BrokenSSHServer(reason) from None
                raise SSHUnreachableError() from None
        await asyncio.sleep(poll_interval)
