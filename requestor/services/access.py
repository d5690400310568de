"""Reaching a VM: the service that owns everything about a VM's SSH access.

It resolves a VM from local state, connects through ``requestor.ssh.client``
(transport only), waits while the provider says the VM is coming up, asks the
provider once when SSH does not answer and records what it says, pins the host
key at the first connection, re-pins on request, and keeps the ssh config and
known_hosts that 'golem vm ssh-config --write' wrote current.

``sync_ssh_config`` is the ONE function that rewrites those files. Every path
that changes a VM's existence, SSH address or host key calls it: create,
destroy, forget, a provider found at a new address (actions.py), ``list
--refresh`` filling in a crashed create, the first-use pin and ``--repin``.

asyncssh and the HTTP stack are imported in the functions that need them, so
the bulk commands (which call ``sync_ssh_config``) never load asyncssh.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from requestor.errors import (
    PROVIDER_GONE_MESSAGE,
    GolemError,
    GolemWarning,
    ProviderUnavailableError,
    SSHAuthError,
    SSHError,
    SSHUnreachableError,
    VMGoneError,
    VMNotFoundError,
    forget_hint,
)
from requestor.services.views import VMView
from requestor.settings import PROVIDER_PORT, Settings
from requestor.status import VMStatus

if TYPE_CHECKING:
    from requestor.db.engine import Database
    from requestor.ssh._asyncssh import asyncssh
    from requestor.ssh.client import Endpoint

RETRY_INTERVAL = 1.0
PROVIDER_PROBE_TIMEOUT = 2.0
PROVIDER_QUERY_TIMEOUT = 5.0
REPIN_TIMEOUT = 10.0  # fetching the key to re-pin: one handshake, nothing to wait for


# One connection attempt's bound when little or no waiting time is left.
MIN_ATTEMPT_S = 3.0


# --- the written ssh config follows local state -------------------------------------


async def sync_ssh_config(settings: Settings, db: Database) -> None:
    """Rewrite golem's ssh config and known_hosts from local state, but only where
    'golem vm ssh-config --write' (or a plain 'ssh-config') wrote them before.

    A cheap stat when the user never wrote them. Called after every change of a
    VM's existence, SSH address or host key, so plain ``ssh golem-NAME`` keeps
    reaching the right VM with the right pin (a re-created VM with the same name
    is not refused with the old VM's key, a moved VM is not looked for at its old
    address).
    """
    from requestor.ssh import sshconfig

    if not sshconfig.written(settings):
        return
    try:
        # Two golem processes rewriting at once must not let the older snapshot
        # land last (a pin missing from known_hosts makes OpenSSH refuse the VM).
        lock_fd = await asyncio.to_thread(sshconfig.lock, settings.ssh_key_dir)
        try:
            vms, _ = await _reachable_vms(settings, db)
            sshconfig.refresh_written(settings, vms)
        finally:
            os.close(lock_fd)
    except (OSError, GolemError) as error:
        # The state change it follows is committed: a full disk or a read-only
        # folder must not turn it into a failed command. Say so and go on.
        reason = error.message if isinstance(error, GolemError) else error.strerror or str(error)
        warnings.warn(
            GolemWarning(
                f"golem's ssh config in {settings.ssh_key_dir} was not updated: {reason}",
                "Run 'golem vm ssh-config --write' once the folder is writable again.",
            ),
            stacklevel=2,
        )


async def _reachable_vms(
    settings: Settings, db: Database
) -> tuple[list[VMView], list[tuple[str, str]]]:
    """Every VM this machine can reach (with the key it reaches it with), and
    (name, why not) for the others: the written ssh config is per machine."""
    from requestor.db import repository
    from requestor.services import keyring
    from requestor.services.views import vm_view

    async with db.read() as session:
        vms = [vm_view(vm) for vm in await repository.list_vms(session)]
        grants = await keyring.read_grants(session, [vm.id for vm in vms])
    ring = keyring.preloaded_keyring(settings, db.shared, grants)
    if db.shared:
        await keyring.ensure_recorded(db, settings, await ring.own())
    return await keyring.reachable(ring, vms)


@dataclass(frozen=True)
class SSHConfigResult:
    """What 'golem vm ssh-config' produced."""

    text: str  # the config entries (printed, or written to ``config_path``)
    entries: int
    skipped: list[tuple[str, str]]  # (VM name, why it has no entry)
    config_path: Path | None = None  # set when written
    include_line: str | None = None  # what to add to ~/.ssh/config, when written


async def ssh_config(settings: Settings, names: tuple[str, ...], write: bool) -> SSHConfigResult:
    """Config entries for ``names`` (every VM when empty); known_hosts is always
    written (every pin, so entries printed earlier stay valid), the config only
    with ``write``."""
    from requestor.db.engine import Database
    from requestor.ssh import sshconfig

    async with Database.for_settings(settings) as db:
        vms, unreachable = await _reachable_vms(settings, db)
    known = {vm.name for vm in vms} | {name for name, _ in unreachable}
    for name in names:
        if name not in known:
            raise VMNotFoundError(name)
    usable, skipped = sshconfig.entries(vms)
    skipped = [*skipped, *unreachable]
    chosen = [e for e in usable if not names or e.name in names]
    skipped = [(n, why) for n, why in skipped if not names or n in names]
    key_dir = settings.ssh_key_dir
    known_hosts = key_dir / sshconfig.KNOWN_HOSTS_NAME
    sshconfig.write_private(known_hosts, sshconfig.render_known_hosts(usable))
    text = sshconfig.render_config(chosen, known_hosts, sorted(set(names)) or None)
    if not write:
        return SSHConfigResult(text, len(chosen), skipped)
    config = key_dir / sshconfig.CONFIG_NAME
    sshconfig.write_private(config, text)
    return SSHConfigResult(
        text, len(chosen), skipped, config_path=config, include_line=sshconfig.include_line(config)
    )


# --- one VM's access -----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A VM to connect to, resolved from local state."""

    vm_id: int
    status: VMStatus
    provider_api_url: str
    provider_vm_name: str
    endpoint: Endpoint

    @property
    def name(self) -> str:
        return self.endpoint.name


def target_of(vm: VMView, settings: Settings, key_path: Path | None = None) -> Target:
    """``vm`` as a target, reached with ``key_path`` (``Keyring.key_for``'s answer;
    None: the key local state recorded)."""
    from requestor.ssh.client import Endpoint

    name = vm.name
    if vm.status in (VMStatus.GONE, VMStatus.DELETED):
        raise _gone(name)
    if vm.ssh_host is None or vm.ssh_port is None:
        raise SSHError(
            f"VM {name} has no SSH address in local state (its create did not finish)",
            hint="Run 'golem vm list --refresh' to find out what the provider holds.",
        )
    if key_path is None:
        if vm.ssh_key_path is None:
            raise SSHAuthError(f"No SSH key is recorded for VM {name}")
        key_path = Path(vm.ssh_key_path)
    return Target(
        vm_id=vm.id,
        status=vm.status,
        provider_api_url=settings.provider_api_url(vm.provider_ip),
        provider_vm_name=vm.provider_vm_name,
        endpoint=Endpoint(
            name=name,
            host=vm.ssh_host,
            port=vm.ssh_port,
            user=vm.ssh_user,
            key_path=key_path,
            host_key=vm.host_key,
        ),
    )


def _gone(name: str) -> VMGoneError:
    return VMGoneError(
        f"VM {name} is gone: its provider no longer knows it",
        hint=forget_hint(name),
    )


def broken_ssh_error(name: str, reason: str) -> SSHUnreachableError:
    """A VM whose SSH port answers, but not as an SSH server (``reason`` says how)."""
    return SSHUnreachableError(
        f"Unable to establish SSH connection to VM {name}: {reason}",
        hint=(
            "Its SSH server or its provider's SSH proxy is not working. Check its status "
            f"with 'golem vm list --refresh'; if this persists, destroy it "
            f"('golem vm destroy {name}') and create a new one."
        ),
    )


def _stopped(name: str) -> SSHUnreachableError:
    return SSHUnreachableError(
        f"VM {name} is stopped", hint=f"Start it with 'golem vm start {name}'."
    )


@dataclass(frozen=True)
class RepinResult:
    old: str | None  # fingerprint pinned before; None at a first use
    new: str  # fingerprint the VM shows now
    changed: bool


# Asked before a re-pin replaces a key: (old fingerprint or None, new) -> go ahead?
ConfirmRepin = Callable[[str | None, str], bool]


@dataclass
class Access:
    """One VM's access for one command; see ``open_access``.

    The database (SQLAlchemy, ~200 ms to load) is opened only when something is
    written: a first-use pin, a re-pin, a status the provider reported.
    """

    settings: Settings
    target: Target
    _stack: AsyncExitStack = field(repr=False)
    _db: Database | None = field(default=None, repr=False)
    # Set once SSH let us in: the VM runs, whatever status local state had.
    connected: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return self.target.name

    async def database(self) -> Database:
        if self._db is None:
            from requestor.db.engine import Database

            self._db = await self._stack.enter_async_context(Database.for_settings(self.settings))
        return self._db

    async def connect(
        self,
        *,
        wait: float = 0.0,
        on_wait: Callable[[], None] | None = None,
        attempt_limit: float | None = None,
    ) -> asyncssh.SSHClientConnection:
        """An authenticated connection, retried for up to ``wait`` seconds while
        nothing answers and the provider says the VM is creating or running
        (``on_wait`` is called once, when waiting starts).

        Each attempt gets what is left of ``wait`` (at least 1 s, at most the
        connect timeout), or ``attempt_limit`` when given: many handshakes at
        once (``exec``) need more than 1 s each even when nobody waits.
        """
        from requestor.ssh.client import CONNECT_TIMEOUT, Unreachable, connect_once
        from requestor.ssh.hostkeys import BrokenSSHServer, diagnose_ssh_port

        target = self.target
        deadline = time.monotonic() + wait
        waiting = False
        asked = False
        while True:
            remaining = deadline - time.monotonic()
            try:
                connection = await connect_once(
                    target.endpoint,
                    # At least a few seconds even with --no-wait: a handshake
                    # on a busy machine or a far provider can take over 1 s.
                    attempt_limit or max(MIN_ATTEMPT_S, min(CONNECT_TIMEOUT, remaining)),
                    first_use=self._pin_first_key,
                )
            except BrokenSSHServer as error:
                raise broken_ssh_error(target.name, error.reason) from None
            except Unreachable:
                if target.status is VMStatus.STOPPED:
                    raise _stopped(target.name) from None
                if not asked:
                    asked = True
                    await self._ask_provider()
                if time.monotonic() + RETRY_INTERVAL >= deadline:
                    if not await provider_answers(target.provider_api_url):
                        raise ProviderUnavailableError(PROVIDER_GONE_MESSAGE) from None
                    endpoint = target.endpoint
                    broken = await diagnose_ssh_port(endpoint.host, endpoint.port)
                    if broken is not None:
                        raise broken_ssh_error(target.name, broken) from None
                    raise SSHUnreachableError() from None
                if not waiting and on_wait is not None:
                    on_wait()
                waiting = True
                await asyncio.sleep(RETRY_INTERVAL)
            else:
                self.connected = True
                return connection

    async def record_seen_running(self) -> None:
        """After the session: a VM that SSH let us into runs, so a status that says
        otherwise (creating, unreachable, stopped, error...) is corrected. Written
        only when it needs changing, so the usual SSH path opens no ORM."""
        if self.connected and self.target.status is not VMStatus.RUNNING:
            await self._record_status(VMStatus.RUNNING)

    async def _pin_first_key(self, line: str) -> None:
        from requestor.db import repository
        from requestor.ssh.hostkeys import host_key_changed, same_key

        db = await self.database()
        async with db.write() as session:
            pinned = await repository.pin_host_key(session, self.target.vm_id, line)
        if pinned is None:
            return  # the VM was removed meanwhile
        if pinned != line:
            # Another golem (maybe on another machine sharing the database) pinned
            # a key meanwhile, and kept it: it must be the one we saw.
            if not same_key(pinned, line):
                raise host_key_changed(self.target.name, pinned, line)
            return
        await sync_ssh_config(self.settings, db)

    async def repin(self, confirm: ConfirmRepin) -> RepinResult:
        """Fetch the key the VM shows now and pin it if ``confirm(old, new)`` agrees."""
        from requestor.db import repository
        from requestor.ssh._asyncssh import asyncssh
        from requestor.ssh.hostkeys import (
            BrokenSSHServer,
            diagnose_ssh_port,
            fetch_host_key,
            fingerprint,
            same_key,
        )

        endpoint = self.target.endpoint
        try:
            seen = await fetch_host_key(endpoint.host, endpoint.port, limit=REPIN_TIMEOUT)
        except BrokenSSHServer as error:
            raise broken_ssh_error(self.target.name, error.reason) from None
        except (OSError, TimeoutError, asyncssh.Error):
            if not await provider_answers(self.target.provider_api_url):
                raise ProviderUnavailableError(PROVIDER_GONE_MESSAGE) from None
            broken = await diagnose_ssh_port(endpoint.host, endpoint.port)
            if broken is not None:
                raise broken_ssh_error(self.target.name, broken) from None
            raise SSHUnreachableError() from None
        old = fingerprint(endpoint.host_key) if endpoint.host_key is not None else None
        new = fingerprint(seen)
        db = await self.database()
        if endpoint.host_key is not None and same_key(endpoint.host_key, seen):
            await sync_ssh_config(self.settings, db)
            return RepinResult(old, new, False)
        if not confirm(old, new):
            raise GolemError("The pinned host key was left unchanged.")
        async with db.write() as session:
            stored = await repository.update_vm(session, self.target.vm_id, host_key=seen)
        if stored is None:
            raise GolemError(f"VM {self.target.name} was removed from local state meanwhile")
        await sync_ssh_config(self.settings, db)
        return RepinResult(old, new, True)

    async def _record_status(self, status: VMStatus, error: str | None = None) -> None:
        from requestor.db import repository

        db = await self.database()
        async with db.write() as session:
            await repository.update_vm(session, self.target.vm_id, status=status, last_error=error)

    async def _ask_provider(self) -> None:
        """SSH did not answer: ask the provider once what became of the VM.

        Raises when waiting cannot help (the VM is gone, stopped or broken, or the
        provider does not answer); returns when it is creating or running. The HTTP
        stack is loaded here, on this failure path only.
        """
        from requestor.errors import ProviderProtocolError, ProviderRefusedError
        from requestor.services.http import HttpClient
        from requestor.services.provider import ProviderClient
        from requestor.text import clean

        target = self.target
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
            await self._record_status(VMStatus.GONE, "The provider no longer knows this VM")
            raise _gone(target.name)
        if info.status in ("stopped", "stopping"):
            await self._record_status(VMStatus.STOPPED)
            raise _stopped(target.name)
        if info.status == "error":
            detail = clean(info.error_message or "", 200)
            await self._record_status(VMStatus.ERROR, detail or None)
            raise SSHError(
                f"VM {target.name} is in an error state at its provider"
                + (f": {detail}" if detail else ""),
                hint=f"Destroy it with 'golem vm destroy {target.name}' and create a new one.",
            )


@asynccontextmanager
async def open_access(settings: Settings, name: str) -> AsyncIterator[Access]:
    """One VM's access for an SSH command; what it opened is closed on exit.

    The VM is read through the lean ``sqlite3`` path when the schema is at head
    (no SQLAlchemy import); else the ORM path brings the schema to head first.
    """
    from requestor.db import lean
    from requestor.services import keyring

    async with AsyncExitStack() as stack:
        snapshot = lean.snapshot(settings, name)
        if snapshot is not None:
            if not snapshot.vms:
                raise VMNotFoundError(name)
            vm = VMView(**snapshot.vms[0])
            key_path = await keyring.lean_keyring(settings).key_for(vm)
            access = Access(settings, target_of(vm, settings, key_path), stack)
        else:
            from requestor.db import repository
            from requestor.db.engine import Database
            from requestor.services.views import vm_view

            db = await stack.enter_async_context(Database.for_settings(settings))
            # In a shared database this machine's key is recorded for teammates to
            # grant, also (above all) when the VM refuses it.
            own = await keyring.own_key(settings) if db.shared else None
            recorded = True
            async with db.read() as session:
                found = await repository.find_vm(session, name)
                if found is not None:
                    vm = vm_view(found)
                    grants = await keyring.read_grants(session, [vm.id])
                if own is not None:
                    recorded = await keyring.key_recorded(session, settings, own)
            if own is not None and not recorded:
                await keyring.record_key(db, settings, own)
            if found is None:
                raise VMNotFoundError(name)
            ring = keyring.preloaded_keyring(settings, db.shared, grants, own)
            access = Access(settings, target_of(vm, settings, await ring.key_for(vm)), stack, db)
        try:
            yield access
        except Exception:
            # A failure after SSH let us in (a copy refused, a dropped session)
            # still showed the VM running; the failure itself is what to report.
            with contextlib.suppress(GolemError):
                await access.record_seen_running()
            raise
        await access.record_seen_running()


async def provider_answers(api_url: str) -> bool:
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
