"""``golem vm grant`` / ``revoke``: add a teammate's public key to VMs' authorized
keys over SSH, or remove it, and record it in ``vm_grants``.

The keys come from ``--key`` (a public key line or a .pub file) or ``--user``
(every key ``user_keys`` holds for that user: recorded by their golem in a
shared database). The VMs are selected as every bulk command selects them
(``actions.select_vms``) and handled concurrently (bounded overall and per
provider), each through its ``Access`` with this machine's key and its pin.

Order of writes, so that ``vm_grants`` never misses a key a VM trusts: a grant
is recorded before the VM is changed (and the record is removed again if that
fails); a revoke changes the VM first, then drops the record. A revoke of a key
that was never granted changes nothing and connects nowhere.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from requestor.errors import DatabaseLockedError, GolemError, InputError
from requestor.services.access import Access, target_of
from requestor.services.actions import Outcome, Result, select_vms
from requestor.services.keyring import Keyring, key_fingerprint, load_keyring
from requestor.services.runtime import DEFAULT_CONCURRENCY, PER_PROVIDER_CONNECTIONS, Services
from requestor.services.views import CountsOutcomes, VMView, vm_view
from requestor.text import clean

# A .pub file is one line; a bigger file is not one.
MAX_KEY_FILE = 64 * 1024
# How long a grant or revoke waits for another golem acting on the same VM (its
# own edit, a stop, a destroy) before it gives up on that VM.
EDIT_CLAIM_WAIT_S = 30.0


class GrantAction(enum.StrEnum):
    GRANT = "grant"
    REVOKE = "revoke"


@dataclass(frozen=True)
class GrantedKey:
    public_key: str  # "type base64"
    fingerprint: str  # SHA256:...
    user: str | None  # whose recorded key it is; None: given with --key

    @property
    def label(self) -> str:
        return f"{self.user}'s key {self.fingerprint}" if self.user else f"key {self.fingerprint}"

    @property
    def blob(self) -> bytes:
        return self.public_key.split()[1].encode()


@dataclass
class GrantReport(CountsOutcomes):
    """Every selected VM's outcome (as a bulk action's), and the keys handled."""

    action: GrantAction
    keys: list[GrantedKey]
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0


def check_whose(key: str | None, user: str | None) -> None:
    if (key is None) == (user is None):
        raise InputError(
            "Give exactly one of --key and --user",
            hint="--key PUBKEY (a public key line or a .pub file), or --user USER.",
        )


def key_from_option(value: str) -> GrantedKey:
    """``--key``: an OpenSSH public key line, or the path of a file holding one."""
    from requestor.ssh.keys import parse_public_key

    path = Path(value).expanduser()
    if path.is_file():
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_KEY_FILE + 1)
        except OSError as error:
            raise InputError(
                f"Cannot read the key file {value}: {error.strerror}",
                hint="Give a readable .pub file, or the public key line itself.",
            ) from None
        if len(data) > MAX_KEY_FILE:
            raise InputError(
                f"{value} is not a public key file (larger than {MAX_KEY_FILE >> 10} KiB)",
                hint="Give the .pub file (one line), or the public key line itself.",
            )
        public_key = parse_public_key(data.decode(errors="replace"), clean(value, 200))
    elif len(value.split()) < 2 and ("/" in value or value.endswith(".pub")):
        raise InputError(
            f"No such key file: {clean(value, 200)}",
            hint="Give the path of a .pub file, or the public key line itself (quoted).",
        )
    else:
        public_key = parse_public_key(value, "The --key value")
    return GrantedKey(public_key, key_fingerprint(public_key), None)


async def keys_of_user(services: Services, user: str) -> list[GrantedKey]:
    """``--user``: every key recorded for ``user``; an error when there is none."""
    from requestor.db import repository

    async with services.db.read() as session:
        recorded = await repository.user_keys(session, user)
    if not recorded:
        if services.db.shared:
            hint = (
                f"{user} must first run a golem command that uses their SSH key against this"
                " shared database (e.g. 'golem vm ssh NAME'), which records it; or"
                f" grant the key itself with --key (their .pub file)."
            )
        else:
            hint = (
                "Keys are recorded per user only in a shared database"
                " (GOLEM_REQUESTOR_DATABASE_URL); here, grant the key itself with --key"
                " (their .pub file, or its line)."
            )
        raise InputError(f"No SSH key is recorded for user {clean(user, 64)}", hint=hint)
    return [GrantedKey(k.public_key, k.fingerprint, k.user) for k in recorded]


async def change_access(
    services: Services,
    action: GrantAction,
    names: Sequence[str],
    *,
    key: str | None = None,
    user: str | None = None,
    all_vms: bool = False,
    provider_id: str | None = None,
    on_selected: Callable[[list[str]], None] = lambda _names: None,
    on_note: Callable[[str], None] = lambda _note: None,
) -> GrantReport | None:
    """Grant (or revoke) the key(s) of ``key`` or ``user`` on the VMs selected;
    None when nothing was selected. A VM that fails is an outcome: the others go on."""
    from requestor.services.actions import check_selection

    check_selection(names, all_vms=all_vms, provider_id=provider_id)
    check_whose(key, user)
    keys = [key_from_option(key)] if key is not None else await keys_of_user(services, user or "")
    selection = await select_vms(services, names, all_vms=all_vms, provider_id=provider_id)
    if selection.note:
        on_note(selection.note)
    vms = [vm_view(vm) for vm in selection.vms]
    if not vms:
        return None
    ring = await load_keyring(services.db, services.settings, [vm.id for vm in vms])
    on_selected([vm.name for vm in vms])
    report = GrantReport(action, keys)
    started = time.perf_counter()
    bound = asyncio.Semaphore(DEFAULT_CONCURRENCY)
    per_provider: dict[str, asyncio.Semaphore] = {}

    async def one(vm: VMView) -> Outcome:
        provider_turn = per_provider.setdefault(
            vm.provider_ip, asyncio.Semaphore(PER_PROVIDER_CONNECTIONS)
        )
        async with bound, provider_turn:
            try:
                return await _change_one(services, ring, action, vm, keys)
            except GolemError as error:
                return _failed(vm, error.message, error.hint)
            except Exception as error:  # isolate one VM's surprise from the others
                return _failed(vm, f"internal error: {type(error).__name__}: {clean(error, 200)}")

    tasks = [asyncio.create_task(one(vm)) for vm in vms]
    try:
        report.outcomes = list(await asyncio.gather(*tasks))
    except BaseException:
        report.interrupted = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        report.outcomes = [
            task.result()
            if task.done() and not task.cancelled()
            else _outcome(vm, Result.CANCELLED, error="interrupted")
            for task, vm in zip(tasks, vms, strict=True)
        ]
        raise
    finally:
        report.seconds = time.perf_counter() - started
    return report


def _outcome(vm: VMView, result: Result, **details: str | None) -> Outcome:
    return Outcome(
        vm.name,
        vm.provider_id or vm.provider_ip,
        result,
        vm.status,
        provider_vm_name=vm.provider_vm_name,
        **details,
    )


def _failed(vm: VMView, error: str, hint: str | None = None) -> Outcome:
    return _outcome(vm, Result.FAILED, error=error, hint=hint)


def _labels(keys: Sequence[GrantedKey]) -> str:
    return ", ".join(k.label for k in keys)


async def _change_one(
    services: Services,
    ring: Keyring,
    action: GrantAction,
    vm: VMView,
    keys: Sequence[GrantedKey],
) -> Outcome:
    from requestor.db import repository

    db = services.db
    actor = services.settings.actor
    granted = {g.fingerprint for g in await ring.grants_of(vm.id)}
    new: list[GrantedKey] = []  # granted here for the first time
    creation = [k for k in keys if k.public_key == vm.ssh_public_key]
    if action is GrantAction.REVOKE:
        if creation:
            return _failed(
                vm,
                f"{_labels(creation)} is the key {vm.name} was created with: it cannot be"
                f" revoked (destroy the VM to end all access, or keep it)",
            )
        todo = [k for k in keys if k.fingerprint in granted]
        if not todo:
            return _outcome(
                vm, Result.ALREADY, note=f"{_labels(keys)} was not granted on it: nothing to do"
            )
    else:
        todo = [k for k in keys if k not in creation]
        if not todo:
            return _outcome(vm, Result.ALREADY, note=f"it was created with {_labels(keys)}")
        new = [k for k in todo if k.fingerprint not in granted]
        # Recorded before the VM changes: vm_grants never misses a key the VM trusts.
        if new:
            async with db.write() as session:
                for k in new:
                    await repository.add_grant(
                        session,
                        vm.id,
                        fingerprint=k.fingerprint,
                        public_key=k.public_key,
                        user=k.user,
                        actor=actor,
                    )
    try:
        # Two golems editing one VM's authorized_keys at once would each write
        # back its own version, and one key would be lost while still recorded.
        async with db.claim(vm.id, wait=EDIT_CLAIM_WAIT_S) as claimed:
            if not claimed:
                raise GolemError(
                    f"Another golem kept {vm.name} busy for {EDIT_CLAIM_WAIT_S:g} s:"
                    " its keys were not changed",
                    hint="Run the same command again once the other command has finished.",
                )
            changed = await _edit_on_vm(services, ring, vm, action, todo)
    except BaseException:
        if action is GrantAction.GRANT and new:
            # The VM did not take the key (or may not have): the record goes too.
            await asyncio.shield(_drop_grants(services, vm.id, [k.fingerprint for k in new]))
        raise
    try:
        async with db.write(after_remote=True) as session:
            if action is GrantAction.GRANT:
                for k in todo:  # renewed: who granted it last, and when
                    await repository.add_grant(
                        session,
                        vm.id,
                        fingerprint=k.fingerprint,
                        public_key=k.public_key,
                        user=k.user,
                        actor=actor,
                    )
            else:
                await repository.delete_grants(session, vm.id, [k.fingerprint for k in todo])
            await repository.record_action(session, vm.id, actor, action.value)
    except DatabaseLockedError:
        done = "added to" if action is GrantAction.GRANT else "removed from"
        return _failed(
            vm,
            f"{_labels(todo)} was {done} the VM, but the database stayed locked: not recorded",
            hint="Run the same command again once the other golem command has finished.",
        )
    verb = "granted" if action is GrantAction.GRANT else "revoked"
    if changed:
        return _outcome(vm, Result.DONE, note=f"{_labels(todo)} {verb}")
    return _outcome(vm, Result.ALREADY, note=f"{_labels(todo)} {verb} (the VM's file had it so)")


async def _drop_grants(services: Services, vm_id: int, fingerprints: list[str]) -> None:
    from requestor.db import repository

    async with services.db.write() as session:
        await repository.delete_grants(session, vm_id, fingerprints)


async def _edit_on_vm(
    services: Services,
    ring: Keyring,
    vm: VMView,
    action: GrantAction,
    keys: Sequence[GrantedKey],
) -> bool:
    from requestor.ssh.authkeys import edit_authorized_keys
    from requestor.ssh.client import CONNECT_TIMEOUT

    edit = _adding(keys) if action is GrantAction.GRANT else _removing(keys)
    async with AsyncExitStack() as stack:
        target = target_of(vm, services.settings, await ring.key_for(vm))
        access = Access(services.settings, target, stack, services.db)
        conn = await access.connect(attempt_limit=CONNECT_TIMEOUT)
        async with conn:
            changed = await edit_authorized_keys(conn, vm.name, edit)
    return changed


def _line_holds(line: bytes, blob: bytes) -> bool:
    # A key line is [options] type base64 [comment]: the base64 word names the key.
    return not line.lstrip().startswith(b"#") and blob in line.split()


def _adding(keys: Sequence[GrantedKey]) -> Callable[[bytes], bytes | None]:
    def edit(current: bytes) -> bytes | None:
        lines = current.splitlines()
        missing = [k for k in keys if not any(_line_holds(line, k.blob) for line in lines)]
        if not missing:
            return None
        text = current if not current or current.endswith(b"\n") else current + b"\n"
        for k in missing:
            comment = f"golem-grant:{k.user}" if k.user else "golem-grant"
            text += f"{k.public_key} {comment}\n".encode()
        return text

    return edit


def _removing(keys: Sequence[GrantedKey]) -> Callable[[bytes], bytes | None]:
    def edit(current: bytes) -> bytes | None:
        lines = current.splitlines(keepends=True)
        kept = [line for line in lines if not any(_line_holds(line, k.blob) for k in keys)]
        return None if len(kept) == len(lines) else b"".join(kept)

    return edit
