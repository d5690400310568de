"""Act on VMs: select them (names, globs, --all, --provider), then start, stop,
destroy or refresh them concurrently, with a bound overall and per provider.

Each VM's result is reported and recorded as it arrives (one short transaction
each), so an interruption loses nothing that finished and the report matches
the database.
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

from requestor.db import repository
from requestor.db.models import VM
from requestor.errors import (
    GolemError,
    InputError,
    ProviderRefusedError,
    ProviderUnavailableError,
    VMGoneError,
    VMNotFoundError,
)
from requestor.services.access import sync_ssh_config
from requestor.services.provider import ProviderClient, ProviderUnreachable
from requestor.services.runtime import DEFAULT_CONCURRENCY, PER_PROVIDER_CONNECTIONS, Services
from requestor.services.views import VMListing, vm_view
from requestor.status import VMStatus
from requestor.text import clean
from requestor.wire.models import Advertisement, VMInfo

# --- selection -----------------------------------------------------------------


_GLOB_CHARS = set("*?[")
# How long refresh waits for the SSH of a crashed create it completes, to pin its key.
FIRST_PIN_TIMEOUT = 5.0


async def select_vms(
    services: Services,
    names: Sequence[str],
    *,
    all_vms: bool = False,
    provider_id: str | None = None,
) -> list[VM]:
    """The VMs named (exact names or shell globs), all of them, or one provider's.

    Every name must resolve before anything is done, so a typo changes nothing.
    """
    async with services.db.read() as session:
        everything = await repository.list_vms(session)
    if not names and not all_vms and provider_id is None:
        raise InputError("Name at least one VM, or use --all", "See your VMs with 'golem vm list'.")
    by_name = {vm.name: vm for vm in everything}
    chosen: dict[str, VM] = {}
    if all_vms or (not names and provider_id is not None):
        chosen.update(by_name)
    for pattern in names:
        if _GLOB_CHARS & set(pattern):
            matches = fnmatch.filter(by_name, pattern)
            if not matches:
                raise InputError(
                    f"No VM matches {clean(pattern, 80)!r}", "See your VMs with 'golem vm list'."
                )
            chosen.update((name, by_name[name]) for name in matches)
        elif pattern in by_name:
            chosen[pattern] = by_name[pattern]
        else:
            raise VMNotFoundError(pattern)
    if provider_id is not None:
        chosen = {n: vm for n, vm in chosen.items() if vm.provider_id == provider_id}
    return sorted(chosen.values(), key=lambda vm: (vm.created_at, vm.id))


# --- actions on many VMs at once ---------------------------------------------------


class Action(enum.StrEnum):
    START = "start"
    STOP = "stop"
    DESTROY = "destroy"
    REFRESH = "refresh"


class Result(enum.StrEnum):
    DONE = "done"
    ALREADY = "already"  # it was in the wanted state: counts as success
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

    @property
    def ok(self) -> bool:
        return self.result in (Result.DONE, Result.ALREADY)


@dataclass
class BulkReport:
    action: Action
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if not o.ok)

    @property
    def succeeded(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)


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
        )

    try:
        if action is Action.DESTROY:
            await client.delete(vm.provider_vm_name)
            return outcome(Result.DONE, None), _Change(delete=True)
        if action is Action.REFRESH:
            return await _refresh_one(services, client, vm, outcome)
        try:
            info = await (client.stop if action is Action.STOP else client.start)(
                vm.provider_vm_name
            )
        except ProviderRefusedError:
            # Some providers refuse to stop what is stopped: that is what we wanted.
            current = await client.get_vm(vm.provider_vm_name)
            if current is None or current.status.value not in _WANTED[action]:
                raise
            status = VMStatus(current.status.value)
            return outcome(Result.ALREADY, status), _Change(status=status)
        status = _status_after(action, info)
        return outcome(Result.DONE, status), _Change(status=status)
    except VMGoneError as error:
        return outcome(Result.FAILED, VMStatus.GONE, error), _Change(
            status=VMStatus.GONE, error=error.message
        )
    except ProviderUnreachable as error:
        return outcome(Result.FAILED, vm.status, error), _Change(
            error=error.message, unreachable=True
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
    except ProviderUnavailableError as error:
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
        ssh_host = services.settings.ssh_host(access.ssh_host)
        host_key = None
        if status is VMStatus.RUNNING and vm.host_key is None:
            host_key = await first_host_key(ssh_host, access.ssh_port)
        change = _Change(
            status=status, ssh_host=ssh_host, ssh_port=access.ssh_port, host_key=host_key
        )
    return outcome(Result.DONE, status), change


async def first_host_key(host: str, port: int) -> str | None:
    """The key a completed create would have pinned; None when SSH does not answer
    (then the first 'golem vm ssh' pins it)."""
    from requestor.ssh._asyncssh import asyncssh
    from requestor.ssh.hostkeys import BrokenSSHServer, fetch_host_key

    try:
        return await fetch_host_key(host, port, limit=FIRST_PIN_TIMEOUT)
    except (OSError, TimeoutError, asyncssh.Error, GolemError, BrokenSSHServer):
        return None


async def _record(services: Services, vm_id: int, change: _Change) -> None:
    values: repository.VMChanges = {"last_error": change.error}
    if change.status is not None:
        values["status"] = change.status
    if change.ssh_port is not None:
        values["ssh_host"] = change.ssh_host
        values["ssh_port"] = change.ssh_port
    if change.moved_to is not None:
        values["provider_ip"] = change.moved_to.ip_address
    async with services.db.write() as session:
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
        await repository.update_vm(session, vm_id, **values)


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

    async def one(vm: VM) -> None:
        nonlocal access_changed
        provider_turn = per_provider.setdefault(
            vm.provider_ip, asyncio.Semaphore(PER_PROVIDER_CONNECTIONS)
        )
        async with bound, provider_turn:
            outcome, change = await _perform(services, action, vm, relocator)
        write = asyncio.ensure_future(_record(services, vm.id, change))
        writes.add(write)
        if change.changes_access:
            access_changed = True
        # Reported as soon as the provider answered; the write below finishes
        # even on Ctrl-C (shielded), so the report and the database agree.
        report.outcomes.append(outcome)
        on_outcome(outcome)
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
            # Best effort: a failure here must not replace the cancellation.
            with contextlib.suppress(GolemError):
                await sync_ssh_config(services.settings, services.db)
        raise
    else:
        # Only the local database can fail here (each provider error is an
        # outcome); every other VM has finished and been recorded by now.
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
    if access_changed:
        await sync_ssh_config(services.settings, services.db)
    report.seconds = time.perf_counter() - started
    return report


async def list_vms(
    services: Services,
    *,
    refresh: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    scan_advertised: bool = False,
) -> tuple[VMListing, BulkReport | None]:
    """Every VM in local state; with ``refresh``, after asking each provider, and
    with the orphans found on the providers asked (``scan_advertised``: also on
    every provider discovery advertises)."""
    from requestor.services.orphans import find_orphans

    report = None
    scan = None
    if refresh:
        async with services.db.read() as session:
            vms = await repository.list_vms(session)
        report = await run_action(services, Action.REFRESH, vms, concurrency=concurrency)
        scan = await find_orphans(services, advertised=scan_advertised)
    async with services.db.read() as session:
        views = [vm_view(vm) for vm in await repository.list_vms(session)]
        rejected = await repository.count_rejected_legacy(session)
    listing = VMListing(views, rejected, str(services.settings.db_path))
    if scan is not None:
        listing = dataclasses.replace(listing, orphans=scan.orphans, orphan_scan_failed=scan.failed)
    return listing, report


async def forget_vms(services: Services, names: Sequence[str]) -> list[str]:
    vms = await select_vms(services, names)
    async with services.db.write() as session:
        for vm in vms:
            await repository.delete_vm(session, vm.id)
    await sync_ssh_config(services.settings, services.db)
    return [vm.name for vm in vms]


async def act(
    services: Services,
    action: Action,
    names: Sequence[str],
    report: BulkReport,
    *,
    all_vms: bool = False,
    provider_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_selected: Callable[[list[str]], None] = lambda _names: None,
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
) -> BulkReport | None:
    """Select VMs, then ``run_action`` on them; None when nothing was selected.

    ``on_selected`` sees the names first and may raise to stop (a confirmation
    refused); ``report`` is filled as results arrive, also when cancelled.
    """
    vms = await select_vms(services, names, all_vms=all_vms, provider_id=provider_id)
    if not vms:
        return None
    on_selected([vm.name for vm in vms])
    return await run_action(
        services, action, vms, concurrency=concurrency, on_outcome=on_outcome, report=report
    )
