"""Which of this machine's SSH keys reaches a VM, and the record of the user's
public key in a shared database.

A VM trusts the key it was created with (``vms.ssh_public_key``) and the keys
granted on it (``vm_grants``, ``golem vm grant``). This machine reaches it with:

- the key local state recorded (``vms.ssh_key_path``) when this user created it
  on this host, or when it was recorded before golem kept the key a VM trusts:
  that path is this machine's own file, so today's path costs nothing more;
- else this machine's own key (``ssh/keys.py:ensure_key_pair``, the one create
  uses) when the VM trusts it. Another machine's recorded key path is never used.

Anything else is refused before connecting, with who can grant access.

In a shared database, every command that uses this machine's key (create, ssh,
cp, forward, exec, ssh-config, grant) records the user's public key in
``user_keys`` if it is not there yet, so that teammates can grant it by user
name (``golem vm grant NAME --user USER``).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from requestor.errors import AccessNotGrantedError, GolemError, GolemWarning
from requestor.services.views import GrantView, VMView
from requestor.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from requestor.db.engine import Database
    from requestor.ssh.keys import KeyPair

GrantsOf = Callable[[int], Awaitable[Sequence[GrantView]]]


async def own_key(settings: Settings) -> KeyPair:
    """This machine's key: the user's ``~/.ssh`` key, else golem's (made once)."""
    from requestor.ssh.keys import ensure_key_pair

    return await asyncio.to_thread(ensure_key_pair, settings.ssh_key_dir)


def key_fingerprint(public_key: str) -> str:
    from requestor.ssh.hostkeys import fingerprint

    return fingerprint(public_key)


@dataclass
class Keyring:
    """One command's answer to "which key reaches this VM?"; ``grants_of`` reads
    the keys granted on a VM (only asked when the answer depends on them)."""

    settings: Settings
    shared: bool
    grants_of: GrantsOf
    _own: KeyPair | None = field(default=None, repr=False)

    async def own(self) -> KeyPair:
        if self._own is None:
            self._own = await own_key(self.settings)
        return self._own

    def recorded_here(self, vm: VMView) -> bool:
        """Whether this user created ``vm`` on this host: its recorded key is ours."""
        settings = self.settings
        return vm.created_by_user == settings.user and vm.created_by_host == settings.host

    async def key_for(self, vm: VMView) -> Path | None:
        """The private key that reaches ``vm``; None: the key local state recorded
        (``target_of`` uses it). ``AccessNotGrantedError`` when this machine holds
        no key the VM trusts."""
        if vm.ssh_public_key is None:
            return None  # recorded before golem kept the key a VM trusts: as before
        here = self.recorded_here(vm)
        recorded = _existing(vm.ssh_key_path) if here else None
        if recorded is not None:
            return recorded
        own = await self.own()
        granted = await self.grants_of(vm.id)
        if _trusts(vm, own.public_key, granted):
            return own.private_path
        if here:
            return None  # our own VM whose key file went missing: access says so
        raise not_granted(self.settings, vm, own, granted, shared=self.shared)


def _existing(path: str | None) -> Path | None:
    # A stat: cheap enough for the event loop, and the lean SSH path's only cost.
    return Path(path) if path is not None and Path(path).is_file() else None


def _trusts(vm: VMView, public_key: str, granted: Sequence[GrantView]) -> bool:
    from requestor.ssh.keys import key_id

    wanted = key_id(public_key)
    return vm.ssh_public_key == wanted or any(g.public_key == wanted for g in granted)


def not_granted(
    settings: Settings,
    vm: VMView,
    own: KeyPair,
    granted: Sequence[GrantView],
    *,
    shared: bool,
) -> AccessNotGrantedError:
    """The refusal: which VM, who can grant (its creator, and teammates who hold a
    grant on it), and the exact command for them."""
    from requestor.ssh.keys import key_id

    creator = vm.created_by_user or "its creator"
    if vm.created_by_host:
        creator += f"@{vm.created_by_host}"
    holders = sorted(
        {g.user for g in granted if g.user} - {settings.user, vm.created_by_user or ""}
    )
    message = (
        f"VM {vm.name} does not trust this machine's SSH key"
        f" ({key_fingerprint(own.public_key)}): it was created by {creator}"
    )
    if holders:
        message += f"; keys are granted to {', '.join(holders)}"
    # In a shared database this machine's key is recorded under the user's name
    # (before this error), so the grant can name the user; otherwise the key itself.
    if shared:
        command = f"golem vm grant {vm.name} --user {settings.user}"
    else:
        command = f"golem vm grant {vm.name} --key '{key_id(own.public_key)}'"
    askees = creator + (f" (or {' or '.join(holders)})" if holders else "")
    return AccessNotGrantedError(message, hint=f"Ask {askees} to run: {command}")


NOT_GRANTED_REASON = "this machine's SSH key is not granted on it (see 'golem vm grant')"


async def reachable(
    ring: Keyring, vms: Sequence[VMView]
) -> tuple[list[VMView], list[tuple[str, str]]]:
    """The VMs this machine can reach, each with the key it reaches it with as
    ``ssh_key_path``; and (name, why not) for the others. For the written ssh
    config: it is per machine, while the VMs and their pins are shared."""
    from dataclasses import replace

    usable: list[VMView] = []
    skipped: list[tuple[str, str]] = []
    for vm in vms:
        try:
            path = await ring.key_for(vm)
        except AccessNotGrantedError:
            skipped.append((vm.name, NOT_GRANTED_REASON))
            continue
        except GolemError as error:  # this machine's key cannot be read, say
            skipped.append((vm.name, error.message))
            continue
        usable.append(vm if path is None else replace(vm, ssh_key_path=str(path)))
    return usable, skipped


def lean_keyring(settings: Settings) -> Keyring:
    """For the lean SQLite read: grants are read with ``sqlite3``, only if needed."""

    async def grants_of(vm_id: int) -> list[GrantView]:
        from requestor.db import lean

        rows = lean.grants(settings.db_path, vm_id)
        return [GrantView(*row) for row in rows or ()]

    return Keyring(settings, shared=False, grants_of=grants_of)


def preloaded_keyring(
    settings: Settings,
    shared: bool,
    grants: dict[int, list[GrantView]],
    own: KeyPair | None = None,
) -> Keyring:
    async def grants_of(vm_id: int) -> list[GrantView]:
        return grants.get(vm_id, [])

    return Keyring(settings, shared=shared, grants_of=grants_of, _own=own)


async def read_grants(session: AsyncSession, vm_ids: Sequence[int]) -> dict[int, list[GrantView]]:
    from requestor.db import repository
    from requestor.services.views import grant_view

    found = await repository.grants_of(session, vm_ids)
    return {vm_id: [grant_view(g) for g in grants] for vm_id, grants in found.items()}


async def key_recorded(session: AsyncSession, settings: Settings, key: KeyPair) -> bool:
    """Whether ``user_keys`` holds this user's ``key``: the one cheap read."""
    from requestor.db import repository

    return await repository.has_user_key(session, settings.user, key_fingerprint(key.public_key))


async def record_key(db: Database, settings: Settings, key: KeyPair) -> None:
    """Record this user's ``key`` in ``user_keys`` (kept if already there).

    Best effort: the command that uses the key goes on if the write fails (a
    read-only database role, say), with a warning saying what teammates miss.
    """
    from requestor.db import repository
    from requestor.ssh.keys import key_id

    public_key = key_id(key.public_key)
    try:
        async with db.write() as session:
            await repository.add_user_key(
                session,
                settings.user,
                key_fingerprint(public_key),
                public_key,
                settings.host,
            )
    except GolemError as error:
        warnings.warn(
            GolemWarning(
                f"Your SSH public key was not recorded in {db.label}: {error.message}",
                f"Teammates cannot grant it by user name until it is; they can use"
                f" 'golem vm grant NAME --key' with your .pub file ({key.private_path}.pub).",
            ),
            stacklevel=2,
        )


async def ensure_recorded(db: Database, settings: Settings, key: KeyPair) -> None:
    """In a shared database: record this user's ``key`` unless it is there (one read)."""
    if not db.shared:
        return
    async with db.read() as session:
        if await key_recorded(session, settings, key):
            return
    await record_key(db, settings, key)


async def load_keyring(db: Database, settings: Settings, vm_ids: Sequence[int]) -> Keyring:
    """The keyring for a command on many VMs: their grants in one read; in a shared
    database this machine's key is read and recorded first."""
    own = await own_key(settings) if db.shared else None
    recorded = True
    async with db.read() as session:
        grants = await read_grants(session, vm_ids)
        if own is not None:
            recorded = await key_recorded(session, settings, own)
    if own is not None and not recorded:
        await record_key(db, settings, own)
    return preloaded_keyring(settings, db.shared, grants, own)
