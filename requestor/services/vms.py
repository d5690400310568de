"""The VM service: everything the ``golem vm`` commands do, without any output.

Rules it keeps:
- local state is written before the network call that creates something remote,
  so a crash leaves a ``creating`` record that ``list --refresh`` resolves;
- no database transaction is held across a network call;
- multi-VM actions run concurrently with a bound, and each VM's result is
  recorded as it arrives (one short transaction each), so an interruption loses
  nothing that finished.
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

from sqlalchemy.exc import IntegrityError

from requestor.db import repository
from requestor.db.models import VM, VMStatus, utcnow
from requestor.errors import (
    GolemError,
    InputError,
    InsufficientResourcesError,
    NameTakenError,
    ProviderProtocolError,
    ProviderRefusedError,
    ProviderUnavailableError,
    SSHUnreachableError,
    VMGoneError,
    VMNotFoundError,
)
from requestor.services.provider import ProviderClient, ProviderUnreachable
from requestor.services.runtime import DEFAULT_CONCURRENCY, PER_PROVIDER_CONNECTIONS, Services
from requestor.text import clean
from requestor.wire import rules
from requestor.wire.models import Advertisement, CreateVMRequest, VMInfo

Progress = Callable[[str], None]
# Probes are tiny and bounded by a 4 s timeout: ask this many providers at once.
PROBE_CONCURRENCY = 256
DEFAULT_SSH_WAIT = 180.0


# --- providers -----------------------------------------------------------------


@dataclass(frozen=True)
class ProviderView:
    advertisement: Advertisement
    reachable: bool | None = None  # None: not probed
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ProviderListing:
    providers: list[ProviderView]
    rejected: list[tuple[int, str]]  # discovery entries that did not fit the contract


async def probe_providers(
    services: Services, ads: Sequence[Advertisement], concurrency: int = PROBE_CONCURRENCY
) -> list[ProviderView]:
    """Ask every provider at once whether its API answers, with a short timeout."""
    bound = asyncio.Semaphore(concurrency)

    async def probe(ad: Advertisement) -> ProviderView:
        async with bound:
            try:
                seconds = await services.provider(ad.ip_address, ad.provider_id).probe()
            except GolemError as error:
                reason = error.message.split(": ")[-1]
                return ProviderView(ad, reachable=False, error=reason)
        return ProviderView(ad, reachable=True, latency_ms=seconds * 1000)

    return list(await asyncio.gather(*(probe(ad) for ad in ads)))


async def list_providers(
    services: Services,
    *,
    cpu: int | None = None,
    memory: int | None = None,
    storage: int | None = None,
    country: str | None = None,
    probe: bool = True,
) -> ProviderListing:
    found = await services.discovery.advertisements(
        cpu=cpu, memory=memory, storage=storage, country=country
    )
    ads = found.advertisements
    views = await probe_providers(services, ads) if probe else [ProviderView(a) for a in ads]
    return ProviderListing(views, found.rejected)


# --- create ----------------------------------------------------------------------


@dataclass(frozen=True)
class CreateRequest:
    name: str
    cpu: int
    memory: int
    storage: int
    provider_id: str | None = None
    ssh_wait: float = DEFAULT_SSH_WAIT


@dataclass
class CreateResult:
    vm: VM
    provider: Advertisement
    choice_reason: str | None = None  # set when golem picked the provider


def validate_create(request: CreateRequest) -> None:
    rules.check_vm_name(request.name)
    rules.check_resources(request.cpu, request.memory, request.storage)


async def _choose_provider(
    services: Services, request: CreateRequest, progress: Progress
) -> tuple[Advertisement, str]:
    progress("Looking for a provider that fits")
    found = await services.discovery.advertisements(
        cpu=request.cpu, memory=request.memory, storage=request.storage
    )
    fitting = [
        ad
        for ad in found.advertisements
        if ad.resources.fits(request.cpu, request.memory, request.storage)
    ]
    if not fitting:
        raise InsufficientResourcesError(
            f"No provider advertises {request.cpu} CPU, {request.memory} GB RAM and "
            f"{request.storage} GB storage free"
        )
    views = [v for v in await probe_providers(services, fitting) if v.reachable]
    if not views:
        raise ProviderUnavailableError(
            f"None of the {len(fitting)} providers that fit answers right now"
        )

    def rank(view: ProviderView) -> tuple[int, int, int, float]:
        free = view.advertisement.resources
        return (-free.cpu, -free.memory, -free.storage, view.latency_ms or 0.0)

    best = min(views, key=rank)
    free = best.advertisement.resources
    reason = (
        f"it has the most free capacity ({free.cpu} CPU, {free.memory} GB RAM, "
        f"{free.storage} GB storage) of the {len(views)} reachable providers that fit, "
        f"and answered in {best.latency_ms or 0:.0f} ms"
    )
    return best.advertisement, reason


async def create_vm(
    services: Services, request: CreateRequest, progress: Progress = lambda _step: None
) -> CreateResult:
    from requestor.ssh.keys import ensure_key_pair

    validate_create(request)
    async with services.db.read() as session:
        if await repository.find_vm(session, request.name) is not None:
            raise NameTakenError(f"A VM named {request.name} already exists")

    # 1-2. Verify the provider and that it advertises enough free resources.
    choice_reason: str | None = None
    if request.provider_id is None:
        ad, choice_reason = await _choose_provider(services, request, progress)
    else:
        progress(f"Verifying provider {clean(request.provider_id, 80)}")
        ad = await services.discovery.advertisement(request.provider_id)
        if not ad.resources.fits(request.cpu, request.memory, request.storage):
            free = ad.resources
            raise InsufficientResourcesError(
                f"Provider {clean(ad.provider_id, 80)} has {free.cpu} CPU, {free.memory} GB RAM "
                f"and {free.storage} GB storage free; asked for {request.cpu} CPU, "
                f"{request.memory} GB RAM and {request.storage} GB storage"
            )
    provider = services.provider(ad.ip_address, ad.provider_id)

    # 3. SSH access: the user's key, or golem's own.
    progress("Setting up SSH access")
    key = await asyncio.to_thread(ensure_key_pair, services.settings.ssh_key_dir)
    rules.check_ssh_key(key.public_key)

    # Record locally before the provider creates anything.
    vm = VM(
        name=request.name,
        provider_id=ad.provider_id,
        provider_ip=ad.ip_address,
        provider_vm_name=rules.provider_vm_name(request.name),
        cpu=request.cpu,
        memory=request.memory,
        storage=request.storage,
        status=VMStatus.CREATING,
        ssh_user="ubuntu",
        ssh_key_path=str(key.private_path),
    )
    try:
        async with services.db.write() as session:
            await repository.remember_provider(session, ad)
            session.add(vm)
    except IntegrityError:
        raise NameTakenError(f"A VM named {request.name} already exists") from None

    try:
        vm = await _deploy(services, provider, vm, key.public_key, request, progress)
    except GolemError:
        raise
    except Exception as error:  # a bug must not leave the record without a trace
        await _note_error(services, vm.id, f"create failed: {type(error).__name__}: {error}")
        raise
    return CreateResult(vm=vm, provider=ad, choice_reason=choice_reason)


async def _deploy(
    services: Services,
    provider: ProviderClient,
    vm: VM,
    public_key: str,
    request: CreateRequest,
    progress: Progress,
) -> VM:
    """Steps 4-5 of create, for a VM already recorded locally as ``creating``."""
    from requestor.ssh.hostkeys import wait_for_host_key

    progress(f"Deploying on provider {provider.label}")
    body = CreateVMRequest(
        name=vm.provider_vm_name,
        resources={"cpu": request.cpu, "memory": request.memory, "storage": request.storage},
        ssh_key=public_key,
    )
    try:
        info = await provider.create_vm(body)
    except (InsufficientResourcesError, ProviderRefusedError) as error:
        # The provider said no. A failed launch may still hold a VM by that name:
        # ask for its removal (unknown names are fine), then drop the record.
        with contextlib.suppress(GolemError):
            await provider.delete(vm.provider_vm_name)
        await _forget_id(services, vm.id)
        raise error from None
    except ProviderUnreachable as error:
        if error.transport.refused:
            await _forget_id(services, vm.id)  # the request never reached the provider
            raise
        await _note_error(services, vm.id, error.message)
        raise ProviderUnavailableError(
            f"{error.message}; the VM may or may not have been created",
            hint=f"Run 'golem vm list --refresh' to find out; it resolves {request.name}.",
        ) from None
    except ProviderProtocolError as error:
        await _note_error(services, vm.id, error.message)
        raise

    # 5. Connection details, then wait until SSH answers and pin its host key.
    progress("Fetching connection details")
    access = await provider.access(vm.provider_vm_name)
    ssh_host = services.settings.ssh_host(access.ssh_host)
    async with services.db.write() as session:
        stored = await repository.get_vm_by_id(session, vm.id)
        if stored is not None:
            stored.ssh_host, stored.ssh_port = ssh_host, access.ssh_port
            # A refresh that ran while the provider was still creating may have
            # called it gone; it exists.
            stored.status = VMStatus(info.status.value)
            stored.updated_at = utcnow()
    if stored is None:
        # Destroyed or forgotten locally while being created: do not leave an
        # orphan running (and billed) at the provider.
        with contextlib.suppress(GolemError):
            await provider.delete(vm.provider_vm_name)
        raise GolemError(
            f"VM {request.name} was removed locally while it was being created; "
            "it was deleted at the provider too",
            hint="Create it again if you still want it.",
        )
    vm.ssh_host, vm.ssh_port = ssh_host, access.ssh_port

    progress(f"Waiting for SSH on {ssh_host}:{access.ssh_port}")
    try:
        host_key = await wait_for_host_key(ssh_host, access.ssh_port, request.ssh_wait)
    except SSHUnreachableError:
        await _note_error(services, vm.id, "SSH did not answer after create")
        raise SSHUnreachableError(
            f"Unable to establish SSH connection (VM may be starting up): {request.name} "
            f"was created, but its SSH did not answer within {request.ssh_wait:g} s",
        ) from None
    async with services.db.write() as session:
        stored = await repository.get_vm_by_id(session, vm.id)
        if stored is not None:
            stored.host_key = host_key
            stored.status = VMStatus.RUNNING
            stored.last_error = None
            stored.updated_at = utcnow()
            vm = stored
    return vm


async def _forget_id(services: Services, vm_id: int) -> None:
    async with services.db.write() as session:
        stored = await repository.get_vm_by_id(session, vm_id)
        if stored is not None:
            await session.delete(stored)


async def _note_error(services: Services, vm_id: int, message: str) -> None:
    async with services.db.write() as session:
        stored = await repository.get_vm_by_id(session, vm_id)
        if stored is not None:
            stored.last_error = message
            stored.updated_at = utcnow()


# --- selection -----------------------------------------------------------------


_GLOB_CHARS = set("*?[")


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
    unreachable: bool = False  # the provider's API gave no answer at all
    moved_to: Advertisement | None = None  # the provider answers at a new address


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
        # A create interrupted before its access details were stored.
        access = await client.access(vm.provider_vm_name)
        change = _Change(
            status=status,
            ssh_host=services.settings.ssh_host(access.ssh_host),
            ssh_port=access.ssh_port,
        )
    return outcome(Result.DONE, status), change


async def _record(services: Services, vm_id: int, change: _Change) -> None:
    async with services.db.write() as session:
        stored = await repository.get_vm_by_id(session, vm_id)
        if stored is None:
            return
        if change.delete:
            await session.delete(stored)
            return
        if change.status is not None:
            stored.status = change.status
        if change.ssh_port is not None:
            stored.ssh_host, stored.ssh_port = change.ssh_host, change.ssh_port
        if change.moved_to is not None:
            await repository.remember_provider(session, change.moved_to)
            stored.provider_ip = change.moved_to.ip_address
        stored.last_error = change.error
        stored.updated_at = utcnow()


async def run_action(
    services: Services,
    action: Action,
    vms: Sequence[VM],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
) -> BulkReport:
    """Act on every VM concurrently (at most ``concurrency`` at once).

    Each result is written to the database as it arrives. On cancellation
    (Ctrl-C) the pending work stops, the writes already under way finish, and
    the report says what was done.
    """
    report = BulkReport(action)
    started = time.perf_counter()
    bound = asyncio.Semaphore(max(1, concurrency))
    # Never queue more calls on a provider than it gets connections: time spent
    # waiting for a pooled connection would count against the call's timeout.
    per_provider: dict[str, asyncio.Semaphore] = {}
    writes: set[asyncio.Task[None]] = set()
    relocator = _Relocator(services)

    async def one(vm: VM) -> None:
        provider_turn = per_provider.setdefault(
            vm.provider_ip, asyncio.Semaphore(PER_PROVIDER_CONNECTIONS)
        )
        async with bound, provider_turn:
            outcome, change = await _perform(services, action, vm, relocator)
        write = asyncio.ensure_future(_record(services, vm.id, change))
        writes.add(write)
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
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
    else:
        # Only the local database can fail here (each provider error is an
        # outcome); every other VM has finished and been recorded by now.
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
    report.seconds = time.perf_counter() - started
    return report


async def list_vms(
    services: Services, *, refresh: bool = False, concurrency: int = DEFAULT_CONCURRENCY
) -> tuple[list[VM], BulkReport | None]:
    report = None
    if refresh:
        async with services.db.read() as session:
            vms = await repository.list_vms(session)
        report = await run_action(services, Action.REFRESH, vms, concurrency=concurrency)
    async with services.db.read() as session:
        return await repository.list_vms(session), report


async def forget_vms(services: Services, names: Sequence[str]) -> list[str]:
    vms = await select_vms(services, names)
    async with services.db.write() as session:
        for vm in vms:
            stored = await repository.get_vm_by_id(session, vm.id)
            if stored is not None:
                await session.delete(stored)
    return [vm.name for vm in vms]
