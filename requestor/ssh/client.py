"""Open one SSH connection with the parameters given: transport only.

Which VM, which key and which pin come from the caller (``requestor.services.access``
reads them from local state, retries, asks the provider and records pins);
this module knows nothing of the database or the services. asyncssh's own
defaults are not safe for machines we do not control, so every option that
matters is set here, in one place: no ``~/.ssh/config``, no agent, keepalives
on, a connect timeout, and never ``known_hosts=None``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from requestor.errors import GolemError, SSHAuthError, SSHError, StateError
from requestor.ssh._asyncssh import asyncssh
from requestor.ssh.hostkeys import (
    HOST_KEY_ALGORITHMS,
    NON_ASCII_VERSION,
    BrokenSSHServer,
    fetch_host_key,
    host_key_changed,
    same_key,
)
from requestor.ssh.keys import load_client_key
from requestor.ssh.tuning import connect_options

KEEPALIVE_INTERVAL = 15.0
KEEPALIVE_COUNT_MAX = 3
CONNECT_TIMEOUT = 10.0

# Called with the host key a VM showed at a first connection (nothing pinned
# yet), once the connection is up; it records the pin, or raises to refuse.
FirstUse = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Endpoint:
    """Everything one connection needs."""

    name: str  # the VM's name, for messages
    host: str
    port: int
    user: str
    key_path: Path
    host_key: str | None  # the pinned one-line key; None: first use


class Unreachable(Exception):
    """The SSH handshake did not complete (refused, reset, cut, timed out): worth
    retrying; ``hostkeys.diagnose_ssh_port`` tells a broken server from a VM that
    is not up yet."""


class _FirstUseClient(asyncssh.SSHClient):
    """Accepts the host key it is shown; used only when no key is pinned yet."""

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return True


def _pinned_key(endpoint: Endpoint) -> asyncssh.SSHKey | None:
    if endpoint.host_key is None:
        return None
    try:
        return asyncssh.import_public_key(endpoint.host_key)
    except (asyncssh.KeyImportError, ValueError):
        raise StateError(
            f"The pinned host key of VM {endpoint.name} in local state cannot be read",
            hint=f"Re-pin it with 'golem vm ssh {endpoint.name} --repin'.",
        ) from None


async def _seen_host_key(endpoint: Endpoint) -> str | None:
    try:
        return await fetch_host_key(endpoint.host, endpoint.port)
    except (OSError, TimeoutError, asyncssh.Error, GolemError, BrokenSSHServer):
        return None


async def _host_key_mismatch(endpoint: Endpoint) -> GolemError:
    assert endpoint.host_key is not None
    seen = await _seen_host_key(endpoint)
    if seen is None:
        return host_key_changed(endpoint.name, endpoint.host_key, "(could not be read again)")
    return host_key_changed(endpoint.name, endpoint.host_key, seen)


def server_key_line(conn: asyncssh.SSHClientConnection) -> str | None:
    """The host key the server showed, as an OpenSSH one-line public key."""
    key = conn.get_server_host_key()
    return None if key is None else key.export_public_key("openssh").decode().strip()


async def connect_once(
    endpoint: Endpoint, limit: float, first_use: FirstUse | None = None
) -> asyncssh.SSHClientConnection:
    """One authenticated connection; ``Unreachable`` when the handshake did not
    complete within ``limit``, ``BrokenSSHServer`` when it never will.

    With a pinned key only that key is accepted (a different one is a
    ``HostKeyChangedError`` naming both fingerprints). Without one, the key
    shown is accepted (ed25519 preferred, as create's pin), and ``first_use``
    is awaited with it before the connection is handed out.
    """
    client_key = load_client_key(endpoint.key_path)
    pinned = _pinned_key(endpoint)
    options: dict[str, object] = {}
    if pinned is None:
        known_hosts: tuple[list[asyncssh.SSHKey], list[object], list[object]] = ([], [], [])
        options["server_host_key_algs"] = list(HOST_KEY_ALGORITHMS)
    else:
        known_hosts = ([pinned], [], [])
    try:
        conn: asyncssh.SSHClientConnection = await asyncssh.connect(
            endpoint.host,
            endpoint.port,
            username=endpoint.user,
            client_factory=_FirstUseClient if pinned is None else None,
            client_keys=[client_key],
            known_hosts=known_hosts,
            config=None,
            agent_path=None,
            agent_forwarding=False,
            x11_forwarding=False,
            keepalive_interval=KEEPALIVE_INTERVAL,
            keepalive_count_max=KEEPALIVE_COUNT_MAX,
            connect_timeout=limit,
            login_timeout=limit,
            **connect_options(),  # cipher order: AES-GCM first where the CPU has AES
            **options,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise await _host_key_mismatch(endpoint) from None
    except asyncssh.KeyExchangeFailed as error:
        # A pinned key whose algorithm the server no longer offers ends here,
        # not in HostKeyNotVerifiable; it is the same risk.
        if endpoint.host_key is not None:
            seen = await _seen_host_key(endpoint)
            if seen is not None and not same_key(seen, endpoint.host_key):
                raise host_key_changed(endpoint.name, endpoint.host_key, seen) from None
        raise SSHError(f"SSH key exchange with VM {endpoint.name} failed: {error.reason}") from None
    except asyncssh.PermissionDenied:
        raise SSHAuthError(
            f"VM {endpoint.name} refused the SSH key {endpoint.key_path}",
        ) from None
    except UnicodeDecodeError:
        # asyncssh decodes the server's version line as ASCII and lets this through.
        raise BrokenSSHServer(NON_ASCII_VERSION) from None
    except (OSError, TimeoutError, asyncssh.DisconnectError) as error:
        raise Unreachable(str(error) or type(error).__name__) from None
    if pinned is None and first_use is not None:
        line = server_key_line(conn)
        try:
            if line is not None:
                await first_use(line)
        except BaseException:
            conn.close()
            raise
    return conn
