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
from collections.abc import Awaitable, Callable

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


NON_ASCII_VERSION = "its SSH port sent a version line that is not ASCII"
# How long the diagnosis of a failed handshake waits for each step.
DIAGNOSIS_TIMEOUT = 3.0


async def diagnose_ssh_port(host: str, port: int) -> str | None:
    """Why a handshake with host:port failed, when the port answers but does not
    speak SSH; None when nothing is behind it yet (refused, or closed before a
    version line: a VM still booting behind its provider's proxy).

    Asked only once a connection has failed for good, so the usual path pays
    nothing for it. Every step is bounded by ``DIAGNOSIS_TIMEOUT``.
    """
    try:
        async with asyncio.timeout(DIAGNOSIS_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return None
    try:
        try:
            async with asyncio.timeout(DIAGNOSIS_TIMEOUT):
                line = await reader.readline()
        except TimeoutError:
            return f"its SSH port sent nothing within {DIAGNOSIS_TIMEOUT:g} s"
        except (OSError, ValueError):
            return None
        if not line:
            return None
        try:
            line.decode("ascii")
        except UnicodeDecodeError:
            return NON_ASCII_VERSION
        if not line.startswith(b"SSH-"):
            return "its SSH port does not speak SSH"
        # A version line: go on as a client would, and see whether the key exchange is cut.
        writer.write(b"SSH-2.0-golem_diagnosis\r\n")
        try:
            async with asyncio.timeout(DIAGNOSIS_TIMEOUT):
                await writer.drain()
                more = await reader.read(1)
        except TimeoutError:
            return None
        except OSError:
            more = b""
        if not more:
            return "its SSH port closed the connection during the key exchange"
        return None
    finally:
        writer.transport.abort()


async def fetch_host_key(host: str, port: int, limit: float = 10.0) -> str:
    """The host key the server at host:port shows (no authentication happens).

    A server that sends a version line that is not ASCII is a ``BrokenSSHServer``
    (asyncssh lets the ``UnicodeDecodeError`` through); the whole exchange is
    bounded by ``limit``.
    """
    from requestor.ssh._asyncssh import asyncssh

    try:
        async with asyncio.timeout(limit):
            key = await asyncssh.get_server_host_key(
                host,
                port,
                server_host_key_algs=list(HOST_KEY_ALGORITHMS),
                config=None,
            )
    except UnicodeDecodeError:
        # asyncssh decodes the server's version line as ASCII and lets this through.
        raise BrokenSSHServer(NON_ASCII_VERSION) from None
    if key is None:
        raise SSHUnreachableError()
    return str(key.export_public_key("openssh").decode().strip())


async def wait_for_host_key(
    host: str,
    port: int,
    within: float,
    poll_interval: float = 0.5,
    keep_waiting: Callable[[], Awaitable[bool]] | None = None,
) -> str:
    """Poll until the VM's SSH answers, then return its host key (to pin).

    A port still refusing or resetting is a VM starting up: ``SSHUnreachableError``
    at the deadline. A port that went on answering with something other than SSH
    (the last attempt) is a ``BrokenSSHServer``; a version line that is not ASCII
    is one at once, as waiting will not change it. ``keep_waiting`` is asked before
    each new attempt; False ends the wait with ``SSHUnreachableError``.
    """
    from requestor.ssh._asyncssh import asyncssh

    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await fetch_host_key(host, port, limit=max(1.0, min(10.0, remaining)))
        except (OSError, TimeoutError, asyncssh.Error, SSHUnreachableError):
            if time.monotonic() + poll_interval >= deadline:
                reason = await diagnose_ssh_port(host, port)
                if reason is not None:
                    raise BrokenSSHServer(reason) from None
                raise SSHUnreachableError() from None
        await asyncio.sleep(poll_interval)
        if keep_waiting is not None and not await keep_waiting():
            raise SSHUnreachableError()
