"""Connect to a VM the way every golem SSH command does.

Connection details come from local state, the key is the one ``create`` used,
and the host key is checked against the pin taken at the VM's first connection
(trust on first use). asyncssh's own defaults are not safe for machines we do
not control, so every option that matters is set here, in one place: no
``~/.ssh/config``, no agent, keepalives on, a connect timeout, and never
``known_hosts=None``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncssh

from requestor.db import repository
from requestor.db.engine import Database
from requestor.db.models import VMStatus
from requestor.errors import (
    PROVIDER_GONE_MESSAGE,
    GolemError,
    ProviderUnavailableError,
    SSHAuthError,
    SSHError,
    SSHUnreachableError,
    StateError,
    VMGoneError,
)
from requestor.settings import PROVIDER_PORT, Settings
from requestor.ssh.hostkeys import (
    HOST_KEY_ALGORITHMS,
    fetch_host_key,
    fingerprint,
    host_key_changed,
    same_key,
)
from requestor.ssh.keys import load_client_key
from requestor.ssh.tuning import connect_options

KEEPALIVE_INTERVAL = 15.0
KEEPALIVE_COUNT_MAX = 3
CONNECT_TIMEOUT = 10.0
RETRY_INTERVAL = 1.0
PROVIDER_PROBE_TIMEOUT = 2.0
PROVIDER_QUERY_TIMEOUT = 5.0


@dataclass(frozen=True)
class Target:
    """What a connection needs, read from local state in one short transaction."""

    vm_id: int
    name: str
    host: str
    port: int
    user: str
    key_path: Path
    host_key: str | None
    status: VMStatus
    provider_api_url: str
    provider_vm_name: str


async def load_target(db: Database, settings: Settings, name: str) -> Target:
    async with db.read() as session:
        vm = await repository.get_vm(session, name)
    if vm.status in (VMStatus.GONE, VMStatus.DELETED):
        raise _gone(name)
    if vm.ssh_host is None or vm.ssh_port is None:
        raise SSHError(
            f"VM {name} has no SSH address in local state (its create did not finish)",
            hint="Run 'golem vm list --refresh' to find out what the provider holds.",
        )
    if vm.ssh_key_path is None:
        raise SSHAuthError(f"No SSH key is recorded for VM {name}")
    return Target(
        vm_id=vm.id,
        name=vm.name,
        host=vm.ssh_host,
        port=vm.ssh_port,
        user=vm.ssh_user,
        key_path=Path(vm.ssh_key_path),
        host_key=vm.host_key,
        status=vm.status,
        provider_api_url=settings.provider_api_url(vm.provider_ip),
        provider_vm_name=vm.provider_vm_name,
    )


def _gone(name: str) -> VMGoneError:
    return VMGoneError(
        f"VM {name} is gone: its provider no longer knows it",
        hint=f"Remove the local record with 'golem vm forget {name}', or create a new VM.",
    )


def _stopped(name: str) -> SSHUnreachableError:
    return SSHUnreachableError(
        f"VM {name} is stopped", hint=f"Start it with 'golem vm start {name}'."
    )


class _FirstUseClient(asyncssh.SSHClient):
    """Accepts the host key it is shown; used only when no key is pinned yet."""

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return True


class _Unreachable(Exception):
    """Nothing answered the SSH handshake (refused, reset, timed out): worth retrying."""


def _pinned_key(target: Target) -> asyncssh.SSHKey | None:
    if target.host_key is None:
        return None
    try:
        return asyncssh.import_public_key(target.host_key)
    except (asyncssh.KeyImportError, ValueError):
        raise StateError(
            f"The pinned host key of VM {target.name} in local state cannot be read",
            hint=f"Re-pin it with 'golem vm ssh {target.name} --repin'.",
        ) from None


async def _seen_host_key(target: Target) -> str | None:
    try:
        return await fetch_host_key(target.host, target.port)
    except (OSError, TimeoutError, asyncssh.Error, GolemError):
        return None


async def _host_key_mismatch(target: Target) -> GolemError:
    assert target.host_key is not None
    seen = await _seen_host_key(target)
    if seen is None:
        return host_key_changed(target.name, target.host_key, "(could not be read again)")
    return host_key_changed(target.name, target.host_key, seen)


async def _connect_once(target: Target, limit: float) -> asyncssh.SSHClientConnection:
    client_key = load_client_key(target.key_path)
    pinned = _pinned_key(target)
    options: dict[str, object] = {}
    if pinned is None:
        # A first connection: accept what the VM shows, preferring ed25519 as
        # create's pin does, and pin it once the connection is up.
        known_hosts: tuple[list[asyncssh.SSHKey], list[object], list[object]] = ([], [], [])
        options["server_host_key_algs"] = list(HOST_KEY_ALGORITHMS)
    else:
        known_hosts = ([pinned], [], [])
    try:
        conn: asyncssh.SSHClientConnection = await asyncssh.connect(
            target.host,
            target.port,
            username=target.user,
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
        raise await _host_key_mismatch(target) from None
    except asyncssh.KeyExchangeFailed as error:
        # A pinned key whose algorithm the server no longer offers ends here,
        # not in HostKeyNotVerifiable; it is the same risk.
        if target.host_key is not None:
            seen = await _seen_host_key(target)
            if seen is not None and not same_key(seen, target.host_key):
                raise host_key_changed(target.name, target.host_key, seen) from None
        raise SSHError(f"SSH key exchange with VM {target.name} failed: {error.reason}") from None
    except asyncssh.PermissionDenied:
        raise SSHAuthError(
            f"VM {target.name} refused the SSH key {target.key_path}",
        ) from None
    except (OSError, TimeoutError, asyncssh.DisconnectError) as error:
        raise _Unreachable(str(error) or type(error).__name__) from None
    return conn


async def _pin_first_key(db: Database, target: Target, conn: asyncssh.SSHClientConnection) -> None:
    key = conn.get_server_host_key()
    if key is None:  # pragma: no cover - asyncssh always has one after the handshake
        return
    line = key.export_public_key("openssh").decode().strip()
    async with db.write() as session:
        stored = await repository.get_vm_by_id(session, target.vm_id)
        if stored is None:
            return
        if stored.host_key is None:
            stored.host_key = line
            return
        pinned = stored.host_key
    # Another golem process pinned a key meanwhile: it must be the one we saw.
    if not same_key(pinned, line):
        conn.close()
        raise host_key_changed(target.name, pinned, line)


async def _provider_answers(api_url: str) -> bool:
    """A TCP connect to the provider's API port: the cheap liveness probe the
    wire contract names; it needs no HTTP stack."""
    parts = urlsplit(api_url)
    host = parts.hostname or ""
    try:
        async with asyncio.timeout(PROVIDER_PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(host, parts.port or PROVIDER_PORT)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def _record_status(
    db: Database, target: Target, status: VMStatus, error: str | None = None
) -> None:
    async with db.write() as session:
        await repository.update_vm(session, target.vm_id, status=status, last_error=error)


async def _ask_provider(db: Database, target: Target) -> None:
    """SSH did not answer: ask the provider once what became of the VM.

    Raises when waiting cannot help (the VM is gone, stopped or broken, or the
    provider does not answer); returns when it is creating or running. The HTTP
    stack is loaded here, on this failure path only.
    """
    from requestor.errors import ProviderProtocolError, ProviderRefusedError
    from requestor.services.http import HttpClient
    from requestor.services.provider import ProviderClient
    from requestor.text import clean

    try:
        async with HttpClient(
            limit=2, limit_per_host=2, timeout_cap=PROVIDER_QUERY_TIMEOUT
        ) as http:
            provider = ProviderClient(http, target.provider_api_url, target.provider_api_url)
            info = await provider.get_vm(target.provider_vm_name)
    except ProviderUnavailableError:
        raise ProviderUnavailableError(PROVIDER_GONE_MESSAGE) from None
    except (ProviderProtocolError, ProviderRefusedError):
        return  # an answer we cannot read tells us nothing: keep waiting for SSH
    if info is None or info.status == "deleted":
        await _record_status(db, target, VMStatus.GONE, "The provider no longer knows this VM")
        raise _gone(target.name)
    if info.status in ("stopped", "stopping"):
        await _record_status(db, target, VMStatus.STOPPED)
        raise _stopped(target.name)
    if info.status == "error":
        detail = clean(info.error_message or "", 200)
        await _record_status(db, target, VMStatus.ERROR, detail or None)
        raise SSHError(
            f"VM {target.name} is in an error state at its provider"
            + (f": {detail}" if detail else ""),
            hint=f"Destroy it with 'golem vm destroy {target.name}' and create a new one.",
        )


async def connect(
    db: Database, target: Target, *, wait: float = 0.0, on_wait: Callable[[], None] | None = None
) -> asyncssh.SSHClientConnection:
    """An authenticated connection to ``target``, retried for up to ``wait`` seconds
    while nothing answers and the provider says the VM is creating or running
    (``on_wait`` is called once, when waiting starts)."""
    deadline = time.monotonic() + wait
    waiting = False
    asked = False
    while True:
        remaining = deadline - time.monotonic()
        try:
            conn = await _connect_once(target, max(1.0, min(CONNECT_TIMEOUT, remaining)))
        except _Unreachable:
            if target.status is VMStatus.STOPPED:
                raise _stopped(target.name) from None
            if not asked:
                asked = True
                await _ask_provider(db, target)
            if time.monotonic() + RETRY_INTERVAL >= deadline:
                if not await _provider_answers(target.provider_api_url):
                    raise ProviderUnavailableError(PROVIDER_GONE_MESSAGE) from None
                raise SSHUnreachableError() from None
            if not waiting and on_wait is not None:
                on_wait()
            waiting = True
            await asyncio.sleep(RETRY_INTERVAL)
            continue
        if target.host_key is None:
            try:
                await _pin_first_key(db, target, conn)
            except BaseException:
                conn.close()
                raise
        return conn


async def repin(
    db: Database, target: Target, confirm: Callable[[str | None, str], bool]
) -> tuple[str | None, str, bool]:
    """Fetch the key the VM shows now and pin it if ``confirm(old_fp, new_fp)`` agrees.

    Returns (old fingerprint or None, new fingerprint, whether anything changed).
    """
    try:
        seen = await fetch_host_key(target.host, target.port)
    except (OSError, TimeoutError, asyncssh.Error):
        if not await _provider_answers(target.provider_api_url):
            raise ProviderUnavailableError(PROVIDER_GONE_MESSAGE) from None
        raise SSHUnreachableError() from None
    old = fingerprint(target.host_key) if target.host_key is not None else None
    new = fingerprint(seen)
    if target.host_key is not None and same_key(target.host_key, seen):
        return old, new, False
    if not confirm(old, new):
        raise GolemError("The pinned host key was left unchanged.")
    async with db.write() as session:
        stored = await repository.update_vm(session, target.vm_id, host_key=seen)
    if stored is None:
        raise GolemError(f"VM {target.name} was removed from local state meanwhile")
    return old, new, True
