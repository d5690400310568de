"""Act on VMs: select them (names, globs, --all, --provider), then start, stop,
destroy or refresh them concurrently, with a bound overall and per provider.

Each VM's result is reported and recorded as it arrives (one short transaction
each), so an interruption loses nothing that finished and the report matches
the database.

In a shared database (team mode) several machines may act on the same VMs at
once: each VM is claimed (``Database.take_claim``) for its provider call and
its record, and its row read again first, so that each VM is acted on once; the
other machines report it as handled elsewhere. A refresh claims nothing (it
must never make an action skip a VM); its record is written only if nobody
recorded anything newer meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import fnmatch
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from requestor.db import repository
from requestor.db.models import VM, utcnow
from requestor.errors import (
    DatabaseLockedError,
    GolemError,
    InputError,
    NothingMatchedError,
    ProviderRefusedError,
    UnrecordedActionsError,
    UnsupportedOperationError,
    VMGoneError,
    forget_hint,
)
from requestor.services.access import sync_ssh_config
from requestor.services.capabilities import restart_support
from requestor.services.provider import ProviderClient, ProviderUnreachable
from requestor.services.runtime import DEFAULT_CONCURRENCY, PER_PROVIDER_CONNECTIONS, Services
from requestor.services.views import CountsOutcomes, VMFilter, VMListing, VMView, vm_view
from requestor.status import VMStatus
from requestor.text import clean
from requestor.wire.models import Advertisement, VMInfo

# --- selection -----------------------------------------------------------------


_GLOB_CHARS = set("*?[")


def is_glob(pattern: str) -> bool:
    """Whether a name given on the command line is a shell glob ('web-*')."""
    return bool(_GLOB_CHARS & set(pattern))


# How long refresh waits for the SSH of a crashed create it completes, to pin its key.
FIRST_PIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class Selection:
    """The VMs a selection chose, oldest first, and a note when ``--provider``
    left out some of the VMs named (for the user, on stderr)."""

    vms: list[VM]
    note: str | None = None


def check_selection(names: Sequence[str], *, all_vms: bool, provider_id: str | None) -> None:
    """Refuse a selection that is ambiguous or empty, before anything is read or done."""
    if names and all_vms:
        raise InputError(
            "Name VMs or use --all, not both",
            "Drop --all to act on the VMs named, or drop the names to act on every VM.",
        )
    if not names and not all_vms and provider_id is None:
        raise InputError(
            "Name at least one VM, or use --all or --provider ID",
            "See your VMs with 'golem vm list'.",
        )


async def select_vms(
    services: Services,
    names: Sequence[str],
    *,
    all_vms: bool = False,
    provider_id: str | None = None,
) -> Selection:
    """The VMs chosen by the one selection grammar of every command that acts on VMs.

    ``names`` are exact names or shell globs, each of which must match; ``all_vms``
    is every VM (never together with names); ``provider_id`` alone is that
    provider's VMs, and with names or ``all_vms`` narrows them to that provider.
    Anything that matches nothing (an unknown name, an unmatched glob, a provider
    with no VMs) raises ``NothingMatchedError`` before anything is done; only
    ``--all`` on an empty local state selects nothing without an error.
    """
    check_selection(names, all_vms=all_vms, provider_id=provider_id)
    async with services.db.read() as session:
        everything = await repository.list_vms(session)
    by_name = {vm.name: vm for vm in everything}
    chosen: dict[str, VM] = {}
    if all_vms or not names:
        chosen.update(by_name)
    unmatched: list[str] = []
    for pattern in names:
        if is_glob(pattern):
            matches = fnmatch.filter(by_name, pattern)
        else:
            matches = [pattern] if pattern in by_name else []
        if not matches:
            unmatched.append(pattern)
        chosen.update((name, by_name[name]) for name in matches)
    if unmatched:
        shown = ", ".join(
            f"no VM matches {clean(p, 80)!r}" if is_glob(p) else clean(p, 80) for p in unmatched
        )
        raise NothingMatchedError(f"VM not found in local database: {shown}")
    note = None
    if provider_id is not None:
        on_provider = {n: vm for n, vm in chosen.items() if vm.provider_id == provider_id}
        shown_id = clean(provider_id, 80)
        if not on_provider:
            if names:
                elsewhere = ", ".join(
                    f"{clean(n, 64)} is on {clean(vm.provider_id or vm.provider_ip, 80)}"
                    for n, vm in list(chosen.items())[:5]
                )
                raise NothingMatchedError(
                    f"None of the VMs named is on provider {shown_id} ({elsewhere})"
                )
            raise NothingMatchedError(f"No VM in local state is on provider {shown_id}")
        if names and len(on_provider) < len(chosen):
            note = f"Only VMs on provider {shown_id}: {len(on_provider)} of {len(chosen)} named"
        chosen = on_provider
    return Selection(sorted(chosen.values(), key=lambda vm: (vm.created_at, vm.id)), note)


# --- actions on many VMs at once ---------------------------------------------------


class Action(enum.StrEnum):
    START = "start"
    STOP = "stop"
    DESTROY = "destroy"
    REFRESH = "refresh"
    FORGET = "forget"  # drop the local record, after the provider confirms the VM is gone


class Result(enum.StrEnum):
    DONE = "done"
    ALREADY = "already"  # it was in the wanted state: counts as success
    # Another golem sharing the database acted on it (or is acting on it now),
    # so this one did not: counts as success, the user's wish holds.
    HANDLED_ELSEWHERE = "handled_elsewhere"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Outcome:
    name: str
    provider: str
    result: Result
    status: VMStatus | None  # after the action; None when the VM was removed
    error: str | None = None
    hint: str | None = None
    provider_vm_name: str | None = None  # how the provider knows it
    note: str | None = None  # what the user must know although it worked
    # HANDLED_ELSEWHERE: the golem (user@host) that did it, when known.
    handled_by: str | None = None

    @property
    def ok(self) -> bool:
        return self.result in (Result.DONE, Result.ALREADY, Result.HANDLED_ELSEWHERE)


@dataclass
class BulkReport(CountsOutcomes):
    action: Action
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0


_WANTED = {
    Action.STOP: (VMStatus.STOPPED, VMStatus.STOPPING),
    Action.START: (VMStatus.RUNNING,),
}


@dataclass(frozen=True)
class _Change:
    """What to write for one VM after its provider answered."""

    status: VMStatus | None = None
    delete: bool = False
    error: str | None = None
    ssh_host: str | None = None
    ssh_port: int | None = None
    host_key: str | None = None  # a first pin, for a crashed create that refresh completed
    unreachable: bool = False  # the provider's API gave no answer at all
    moved_to: Advertisement | None = None  # the provider answers at a new address
    record: bool = True  # False: nothing to write (a refused forget changes nothing)
    cannot_start: bool = False  # the provider has no start route (remembered per provider)
    # Written only if the row's updated_at is still this: a refresh's answer may be
    # older than what another golem recorded meanwhile (a stop it just did).
    unless_changed: datetime | None = None

    @property
    def changes_access(self) -> bool:
        """Whether the VM's existence, SSH address or host key changes."""
        return self.delete or self.ssh_port is not None or self.moved_to is not None


class _Relocator:
    """Where a provider that stopped answering at its recorded address is now, per
    discovery (providers can change address). Asked once per provider per command:
    discovery limits how often it may be asked."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._lookups: dict[str, asyncio.Task[Advertisement | None]] = {}

    async def find(self, provider_id: str) -> Advertisement | None:
        if provider_id not in self._lookups:
            self._lookups[provider_id] = asyncio.ensure_future(self._lookup(provider_id))
        return await self._lookups[provider_id]

    async def _lookup(self, provider_id: str) -> Advertisement | None:
        try:
            return await self._services.discovery.advertisement(provider_id)
        except GolemError:
            return None

    def cancel(self) -> None:
        for task in self._lookups.values():
            task.cancel()


async def _perform(
    services: Services, action: Action, vm: VM, relocator: _Relocator | None = None
) -> tuple[Outcome, _Change]:
    """Act on one VM; if its provider does not answer where we knew it, ask
    discovery whether it moved, and try once more there."""
    outcome, change = await _perform_at(services, action, vm, vm.provider_ip)
    if not change.unreachable or vm.provider_id is None or relocator is None:
        return outcome, change
    ad = await relocator.find(vm.provider_id)
    if ad is None or ad.ip_address == vm.provider_ip:
        return outcome, change
    moved_outcome, moved_change = await _perform_at(services, action, vm, ad.ip_address)
    if moved_change.unreachable:
        return outcome, change
    if not moved_change.delete and moved_outcome.ok:
        # The VM's SSH endpoint moved with its provider.
        with contextlib.suppress(GolemError):
            access = await services.provider(ad.ip_address, vm.provider_id).access(
                vm.provider_vm_name
            )
            if access is not None:
                moved_change = dataclasses.replace(
                    moved_change,
                    ssh_host=services.settings.ssh_host(access.ssh_host),
                    ssh_port=access.ssh_port,
                )
    return moved_outcome, dataclasses.replace(moved_change, moved_to=ad)


async def _perform_at(
    services: Services, action: Action, vm: VM, provider_ip: str
) -> tuple[Outcome, _Change]:
    label = vm.provider_id or provider_ip
    client = services.provider(provider_ip, label)

    def outcome(
        result: Result, status: VMStatus | None, error: GolemError | None = None
    ) -> Outcome:
        return Outcome(
            vm.name,
            label,
            result,
            status,
            None if error is None else error.message,
            None if error is None else error.hint,
            vm.provider_vm_name,
        )

    try:
        if action is Action.DESTROY:
            await client.delete(vm.provider_vm_name)
            return outcome(Result.DONE, None), _Change(delete=True)
        if action is Action.REFRESH:
            return await _refresh_one(services, client, vm, outcome)
        if action is Action.FORGET:
            return await _forget_one(client, vm, outcome)
        try:
            info = await (client.stop if action is Action.STOP else client.start)(
                vm.provider_vm_name
            )
        except ProviderRefusedError as refusal:
            # Some providers refuse to stop what is stopped: that is what we wanted.
            try:
                current = await client.get_vm(vm.provider_vm_name)
            except ProviderRefusedError:
                # It refuses to describe the VM too: the refusal of the action is
                # what the user asked about, not that of the follow-up question.
                # (An unusable or missing answer still says more, and propagates.)
                raise refusal from None
            if current is None or current.status.value not in _WANTED[action]:
                raise
            status = VMStatus(current.status.value)
            return outcome(Result.ALREADY, status), _Change(status=status)
        status = _status_after(action, info)
        return outcome(Result.DONE, status), _Change(status=status)
    except VMGoneError as error:
        named = VMGoneError(error.message, forget_hint(vm.name))
        return outcome(Result.FAILED, VMStatus.GONE, named), _Change(
            status=VMStatus.GONE, error=error.message
        )
    except ProviderUnreachable as error:
        if action is Action.DESTROY:
            # Another provider cannot destroy this VM: only its own can, once back.
            error = ProviderUnreachable(
                error.label,
                error.transport,
                hint="Try again when the provider is back online, or drop the local record "
                f"with 'golem vm forget {vm.name}' (the VM may run on until the provider "
                "deletes it).",
            )
        return outcome(Result.FAILED, vm.status, error), _Change(
            error=error.message, unreachable=True
        )
    except UnsupportedOperationError as error:
        return outcome(Result.FAILED, vm.status, error), _Change(
            error=error.message, cannot_start=action is Action.START
        )
    except GolemError as error:
        return outcome(Result.FAILED, vm.status, error), _Change(error=error.message)
    except Exception as error:  # isolate one VM's surprise from the others
        failure = GolemError(f"internal error: {type(error).__name__}: {clean(error, 200)}")
        return outcome(Result.FAILED, vm.status, failure), _Change(error=failure.message)


def _status_after(action: Action, info: VMInfo | None) -> VMStatus:
    if info is not None and info.status.value in _WANTED[action]:
        return VMStatus(info.status.value)
    # Providers answer with the VM as it was when asked; the action succeeded.
    return _WANTED[action][0]


async def _refresh_one(
    services: Services, client: ProviderClient, vm: VM, outcome: Callable[..., Outcome]
) -> tuple[Outcome, _Change]:
    try:
        info = await client.get_vm(vm.provider_vm_name)
    except VMGoneError:
        info = None
    except GolemError as error:
        # Any answer that cannot be used (none at all, a 500, malformed or oversized)
        # tells nothing about the VM: show it unreachable, never the old status as if
        # it were current.
        return outcome(Result.FAILED, VMStatus.UNREACHABLE, error), _Change(
            status=VMStatus.UNREACHABLE,
            error=error.message,
            unreachable=isinstance(error, ProviderUnreachable),
        )
    if info is None:
        gone = VMGoneError(f"Provider {client.label} no longer knows this VM")
        return outcome(Result.DONE, VMStatus.GONE), _Change(
            status=VMStatus.GONE, error=gone.message
        )
    status = VMStatus(info.status.value)
    change = _Change(status=status)
    if vm.ssh_port is None:
        # A create interrupted before its access details were stored: finish
        # what create would have done, including the first host-key pin.
        access = await client.access(vm.provider_vm_name)
        if access is None:  # no SSH port yet: a later refresh completes it
            return outcome(Result.DONE, status), change
        ssh_host = services.settings.ssh_host(access.ssh_host)
        host_key = None
        if status is VMStatus.RUNNING and vm.host_key is None:
            host_key = await first_host_key(ssh_host, access.ssh_port)
        change = _Change(
            status=status, ssh_host=ssh_host, ssh_port=access.ssh_port, host_key=host_key
        )
    return outcome(Result.DONE, status), change


def _forget_refused(vm: VM, message: str) -> GolemError:
    return GolemError(
        message,
        f"Destroy it with 'golem vm destroy {vm.name}', or drop the record anyway with"
        f" 'golem vm forget {vm.name} --force' (the provider may keep it running and billing).",
    )


async def _forget_one(
    client: ProviderClient, vm: VM, outcome: Callable[..., Outcome]
) -> tuple[Outcome, _Change]:
    """Forget a VM only once its provider says it does not hold it (any more)."""
    try:
        info = await client.get_vm(vm.provider_vm_name)
    except ProviderUnreachable as error:
        refusal = _forget_refused(vm, f"Cannot ask provider {client.label}: {error.message}")
        return outcome(Result.FAILED, vm.status, refusal), _Change(record=False, unreachable=True)
    except GolemError as error:
        refusal = _forget_refused(vm, f"Cannot ask provider {client.label}: {error.message}")
        return outcome(Result.FAILED, vm.status, refusal), _Change(record=False)
    if info is None or info.status.value == VMStatus.DELETED:
        return outcome(Result.DONE, None), _Change(delete=True)
    refusal = _forget_refused(
        vm, f"Provider {client.label} still holds this VM (status {clean(info.status.value, 20)})"
    )
    return outcome(Result.FAILED, VMStatus(info.status.value), refusal), _Change(record=False)


async def first_host_key(host: str, port: int) -> str | None:
    """The key a completed create would have pinned; None when SSH does not answer
    (then the first 'golem vm ssh' pins it)."""
    from requestor.ssh._asyncssh import asyncssh
    from requestor.ssh.hostkeys import BrokenSSHServer, fetch_host_key

    try:
        return await fetch_host_key(host, port, limit=FIRST_PIN_TIMEOUT)
    except (OSError, TimeoutError, asyncssh.Error, GolemError, BrokenSSHServer):
        return None


async def _record(
    services: Services, vm_id: int, provider_ip: str, change: _Change, acted: Action | None
) -> None:
    """Write one VM's result; raises DatabaseLockedError after a short wait.
    ``acted``: the action that succeeded on it (who did what); None when it
    failed or only observed (refresh)."""
    if not change.record:
        return
    values: repository.VMChanges = {"last_error": change.error}
    if acted is not None:
        values["last_actor"] = services.settings.actor
        values["last_action"] = acted.value
        values["last_action_at"] = utcnow()
    if change.status is not None:
        values["status"] = change.status
    if change.ssh_port is not None:
        values["ssh_host"] = change.ssh_host
        values["ssh_port"] = change.ssh_port
    if change.moved_to is not None:
        values["provider_ip"] = change.moved_to.ip_address
    async with services.db.write(after_remote=True) as session:
        if change.unless_changed is not None:
            stored = await repository.get_vm_by_id(session, vm_id)
            if stored is None or stored.updated_at != change.unless_changed:
                return  # what was recorded meanwhile is newer than this answer
        if change.delete:
            await repository.delete_vm(session, vm_id)
            return
        if change.host_key is not None:
            # A first pin only: never replace a key another golem pinned meanwhile.
            stored = await repository.get_vm_by_id(session, vm_id)
            if stored is not None and stored.host_key is None:
                values["host_key"] = change.host_key
        if change.moved_to is not None:
            await repository.remember_provider(session, change.moved_to)
        if change.cannot_start:
            await repository.note_cannot_start(session, provider_ip)
        await repository.update_vm(session, vm_id, **values)


def _elsewhere(vm: VM, status: VMStatus | None, note: str, by: str | None = None) -> Outcome:
    return Outcome(
        vm.name,
        vm.provider_id or vm.provider_ip,
        Result.HANDLED_ELSEWHERE,
        status,
        provider_vm_name=vm.provider_vm_name,
        note=note,
        handled_by=by,
    )


async def _settled_elsewhere(
    services: Services, action: Action, selected: VM
) -> tuple[VM, Outcome | None]:
    """The VM as it is now, and the outcome when there is nothing left to do.

    In a shared database the row is read again once claimed (a refresh, which
    does not claim, reads it right before asking): the selection's copy may be
    stale, because another machine acted on the VM in between. If it
    removed the VM, or did this very action (its status is the wanted one),
    the provider is not asked again. A VM that this golem itself had already
    brought there before this command is ``already``; anyone else's doing is
    handled elsewhere. On SQLite (one machine) the selection's copy is used.
    """
    if not services.db.shared:
        return selected, None
    async with services.db.read() as session:
        current = await repository.get_vm_by_id(session, selected.id)
    if current is None:
        return selected, _elsewhere(selected, None, "removed by another golem meanwhile")
    wanted = _WANTED.get(action)
    if wanted is None or current.last_action != action.value or current.status not in wanted:
        return current, None
    status = VMStatus(current.status)
    mine_before = (
        current.last_actor == services.settings.actor
        and current.last_action_at == selected.last_action_at
    )
    if mine_before:
        return current, Outcome(
            current.name,
            current.provider_id or current.provider_ip,
            Result.ALREADY,
            status,
            provider_vm_name=current.provider_vm_name,
        )
    actor = current.last_actor or "another golem"
    return current, _elsewhere(
        current, status, f"{_DONE_REMOTELY[action]} by {actor}", current.last_actor
    )


async def run_action(
    services: Services,
    action: Action,
    vms: Sequence[VM],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
    report: BulkReport | None = None,
) -> BulkReport:
    """Act on every VM concurrently (at most ``concurrency`` at once).

    Each result is written to the database as it arrives, into ``report`` (pass
    your own to keep it when cancelled). On cancellation (Ctrl-C, a timeout or
    a TaskGroup around the call) the pending work stops, the writes already
    under way finish, the VMs not reached are added to ``report`` as cancelled
    with ``report.interrupted`` set, and the CancelledError propagates.
    """
    if report is None:
        report = BulkReport(action)
    started = time.perf_counter()
    bound = asyncio.Semaphore(max(1, concurrency))
    # Never queue more calls on a provider than it gets connections: time spent
    # waiting for a pooled connection would count against the call's timeout.
    per_provider: dict[str, asyncio.Semaphore] = {}
    writes: set[asyncio.Task[None]] = set()
    relocator = _Relocator(services)
    access_changed = False
    unrecorded: list[Outcome] = []
    locked = False

    # Writes are one at a time anyway (one writer per process); taking turns here
    # lets each see whether an earlier one already waited for the lock in vain.
    recording = asyncio.Lock()
    # Refresh observes: it neither claims VMs (a stop must never skip a VM
    # because a refresh was looking at it) nor changes who acted last. In a
    # shared database its write is conditional instead (_Change.unless_changed).
    acts = action is not Action.REFRESH

    async def release(vm: VM) -> None:
        if acts:
            await services.db.release_claim(vm.id)

    async def record(vm: VM, outcome: Outcome, change: _Change) -> None:
        nonlocal locked
        try:
            async with recording:
                if not locked:  # once the lock was not had in time, the others do not wait
                    try:
                        acted = action if acts and outcome.ok else None
                        await _record(services, vm.id, vm.provider_ip, change, acted)
                        return
                    except DatabaseLockedError:
                        locked = True
                unrecorded.append(outcome)
        finally:
            # Only once the answer is recorded: another machine that claims the
            # VM next reads what this one did.
            await release(vm)

    def finish(outcome: Outcome) -> None:
        report.outcomes.append(outcome)
        on_outcome(outcome)

    async def one(vm: VM) -> None:
        nonlocal access_changed
        provider_turn = per_provider.setdefault(
            vm.provider_ip, asyncio.Semaphore(PER_PROVIDER_CONNECTIONS)
        )
        async with bound, provider_turn:
            if acts and not await services.db.take_claim(vm.id):
                finish(_elsewhere(vm, vm.status, "in progress in another golem process"))
                return
            try:
                current, settled = await _settled_elsewhere(services, action, vm)
                if settled is not None:
                    finish(settled)
                    await release(vm)
                    return
                outcome, change = await _perform(services, action, current, relocator)
                if not acts and services.db.shared:
                    change = dataclasses.replace(change, unless_changed=current.updated_at)
            except BaseException:
                await release(vm)
                raise
        # The write releases the claim when it is done.
        write = asyncio.ensure_future(record(current, outcome, change))
        writes.add(write)
        if change.changes_access:
            access_changed = True
        # Reported as soon as the provider answered; the write below finishes
        # even on Ctrl-C (shielded), so the report and the database agree.
        finish(outcome)
        await asyncio.shield(write)

    tasks = [asyncio.create_task(one(vm)) for vm in vms]
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        report.interrupted = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        relocator.cancel()
        await asyncio.gather(*writes, return_exceptions=True)
        done = {o.name for o in report.outcomes}
        for vm in vms:
            if vm.name not in done:
                report.outcomes.append(
                    Outcome(
                        vm.name,
                        vm.provider_id or vm.provider_ip,
                        Result.CANCELLED,
                        vm.status,
                        "interrupted before the provider answered",
                    )
                )
        report.seconds = time.perf_counter() - started
        if access_changed:
            await sync_ssh_config(services.settings, services.db)  # never raises
        if unrecorded:
            raise _unrecorded(services, action, unrecorded) from None
        raise
    else:
        # Only the local database can fail here (each provider error is an
        # outcome); every other VM has finished and been recorded by now.
        failures = [r for r in results if isinstance(r, BaseException)]
        if access_changed:
            # Also when a write failed: what did change must reach the config.
            await sync_ssh_config(services.settings, services.db)  # never raises
        if failures:
            raise failures[0]
    if unrecorded:
        raise _unrecorded(services, action, unrecorded)
    report.seconds = time.perf_counter() - started
    return report


_DONE_REMOTELY = {
    Action.START: "started",
    Action.STOP: "stopped",
    Action.DESTROY: "destroyed",
}


def _unrecorded(
    services: Services, action: Action, outcomes: Sequence[Outcome]
) -> UnrecordedActionsError:
    """Which results the providers gave that local state does not hold."""

    def what(outcome: Outcome) -> str:
        name = clean(outcome.name, 64)
        if not outcome.ok:
            return f"{name} not {_DONE_REMOTELY.get(action, action.value + 'ed')}"
        if action is Action.REFRESH:
            return f"{name} is {outcome.status.value if outcome.status else 'gone'}"
        if action is Action.FORGET:
            return f"{name} not forgotten (its provider no longer holds it)"
        return f"{name} {_DONE_REMOTELY[action]}"

    ordered = sorted(outcomes, key=lambda o: (not o.ok, o.name))
    shown = ", ".join(what(o) for o in ordered[:20])
    if len(ordered) > 20:
        shown += f", and {len(ordered) - 20} more"
    done = sum(1 for o in outcomes if o.ok)
    return UnrecordedActionsError(
        f"The database {services.settings.database_label} stayed locked by another golem process,"
        f" so {len(outcomes)} result(s) from the providers ({done} done) are not recorded:"
        f" {shown}"
    )


async def list_vms(
    services: Services,
    chosen: VMFilter | None = None,
    *,
    refresh: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    scan_advertised: bool = False,
) -> tuple[VMListing, BulkReport | None]:
    """The VMs in local state that ``chosen`` keeps (every one without it); with
    ``refresh``, after asking the providers of those its names and provider match
    (the status filter applies to what they answer), and with the orphans found on
    the providers asked (``scan_advertised``: also on every provider discovery
    advertises)."""
    from requestor.services.orphans import find_orphans

    chosen = chosen or VMFilter()
    report = None
    scan = None
    if refresh:
        async with services.db.read() as session:
            vms = [vm for vm in await repository.list_vms(session) if chosen.place(vm_view(vm))]
        report = await run_action(services, Action.REFRESH, vms, concurrency=concurrency)
        scan = await find_orphans(services, advertised=scan_advertised)
    async with services.db.read() as session:
        views = chosen.apply([vm_view(vm) for vm in await repository.list_vms(session)])
        rejected = await repository.count_rejected_legacy(session)
    listing = VMListing(
        views, rejected, services.settings.database_label, shared=services.db.shared
    )
    if scan is not None:
        listing = dataclasses.replace(listing, orphans=scan.orphans, orphan_scan_failed=scan.failed)
    return listing, report


async def cannot_restart(services: Services, vms: Sequence[VM]) -> list[str]:
    """The VMs among ``vms`` (not yet stopped) that could never run again once
    stopped: their provider is known to have no start route."""
    running = [vm for vm in vms if vm.status not in (VMStatus.STOPPED, VMStatus.GONE)]
    support = await restart_support(
        services, ((vm.provider_ip, vm.provider_id or vm.provider_ip) for vm in running)
    )
    return [vm.name for vm in running if support.get(vm.provider_ip) is False]


async def forget_unchecked(services: Services, vms: Sequence[VM], report: BulkReport) -> BulkReport:
    """``forget --force``: drop the records without asking the providers; each
    outcome says where the VM may still run, so the user can still find it."""
    started = time.perf_counter()
    async with services.db.write() as session:
        for vm in vms:
            await repository.delete_vm(session, vm.id)
    for vm in vms:
        provider = vm.provider_id or vm.provider_ip
        report.outcomes.append(
            Outcome(
                vm.name,
                provider,
                Result.DONE,
                None,
                provider_vm_name=vm.provider_vm_name,
                note=(
                    f"provider {clean(provider, 80)} may still hold it as"
                    f" {clean(vm.provider_vm_name, 80)}"
                ),
            )
        )
    await sync_ssh_config(services.settings, services.db)
    report.seconds = time.perf_counter() - started
    return report


async def act(
    services: Services,
    action: Action,
    names: Sequence[str],
    report: BulkReport,
    *,
    all_vms: bool = False,
    provider_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    force: bool = False,
    on_selected: Callable[[list[str], str | None], None] = lambda _names, _note: None,
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
    on_final_stop: Callable[[list[str], int], None] | None = None,
) -> BulkReport | None:
    """Select VMs (``select_vms``), then ``run_action`` on them; None when
    ``--all`` found no VM at all.

    ``on_selected`` sees the names and the selection's note first, and may raise
    to stop (a confirmation refused); ``report`` is filled as results arrive,
    also when cancelled. ``force`` is for FORGET alone: no provider is asked.
    For a stop, ``on_final_stop`` first sees the VMs whose provider cannot start
    a stopped VM (a stop there is final) and how many were selected, if any are.
    """
    selection = await select_vms(services, names, all_vms=all_vms, provider_id=provider_id)
    if not selection.vms:
        return None
    if action is Action.STOP and on_final_stop is not None:
        final = await cannot_restart(services, selection.vms)
        if final:
            on_final_stop(final, len(selection.vms))
    on_selected([vm.name for vm in selection.vms], selection.note)
    if action is Action.FORGET and force:
        return await forget_unchecked(services, selection.vms, report)
    return await run_action(
        services,
        action,
        selection.vms,
        concurrency=concurrency,
        on_outcome=on_outcome,
        report=report,
    )


async def refreshed_vm(services: Services, name: str) -> tuple[VMView, Outcome]:
    """Ask the VM's provider about it (as ``list --refresh`` does), record the
    answer, and return the VM as local state now holds it, with the outcome."""
    async with services.db.read() as session:
        stored = await repository.get_vm(session, name)  # this exact name, never a glob
    report = await run_action(services, Action.REFRESH, [stored])
    async with services.db.read() as session:
        vm = vm_view(await repository.get_vm(session, name))
    return vm, report.outcomes[0]
