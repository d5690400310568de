"""Create a VM: the spec's five steps.

Local state is written before the provider creates anything, so a crash leaves
a ``creating`` record that ``golem vm list --refresh`` resolves; no database
transaction is held across a network call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from requestor.db import repository
from requestor.db.errors import violates_unique_name
from requestor.db.models import VM
from requestor.errors import (
    CreateInterruptedError,
    DatabaseLockedError,
    GolemError,
    InsufficientResourcesError,
    NameTakenError,
    PaymentRequiredError,
    ProviderProtocolError,
    ProviderRefusedError,
    ProviderUnavailableError,
    SSHUnreachableError,
    UnrecordedActionsError,
)
from requestor.services.access import broken_ssh_error, sync_ssh_config
from requestor.services.capabilities import Capabilities, capabilities_of, remembered
from requestor.services.installation import installation_id
from requestor.services.provider import ProviderClient, ProviderUnreachable
from requestor.services.provider_search import Progress, choose_provider
from requestor.services.runtime import Services
from requestor.services.views import VMView, vm_view
from requestor.status import VMStatus
from requestor.text import clean
from requestor.wire import rules
from requestor.wire.models import (
    Advertisement,
    CreateJob,
    CreateVMRequest,
    JobStatus,
    MonthlyPrice,
    VMAccess,
)

DEFAULT_SSH_WAIT = 180.0  # the CLI passes --wait-timeout (same default)
# Polling a create job or a pending SSH port: start quick, back off to this.
POLL_FIRST_S = 0.2
POLL_MAX_S = 2.0


@dataclass(frozen=True)
class CreateRequest:
    name: str
    cpu: int
    memory: int
    storage: int
    provider_id: str | None = None
    ssh_wait: float = DEFAULT_SSH_WAIT
    # A payment stream for providers that require one; no flag sets it yet.
    stream_id: int | str | None = None


@dataclass
class CreateTrace:
    """How far a create got, for its caller to say what an interrupt left behind."""

    recorded: bool = False  # the local record exists
    sent: bool = False  # POST /vms went out: the provider may hold the VM


@dataclass(frozen=True)
class CreateResult:
    vm: VMView
    provider: Advertisement
    choice_reason: str | None = None  # set when golem picked the provider
    # The size's monthly price from the advertisement; None: the provider gives none.
    price: MonthlyPrice | None = None


@dataclass(frozen=True)
class Placement:
    advertisement: Advertisement
    reason: str | None = None  # why golem picked it; None when the user named it
    capabilities: Capabilities | None = None  # what its probe found, when golem picked it


def interrupted_error(request: CreateRequest, trace: CreateTrace) -> GolemError:
    """What Ctrl-C during a create left behind, and the command that resolves it."""
    name = request.name
    if not trace.recorded:
        message = f"Interrupted: nothing was created and nothing was kept for {name}"
        hint = None
    elif trace.sent:
        message = (
            f"Interrupted while the provider was creating {name}: it may hold the VM, "
            f"so {name} is kept, as 'error'"
        )
        hint = _resolve_hint(name)
    else:
        message = f"Interrupted before the provider was asked; {name} is kept, as 'creating'"
        hint = f"Run 'golem vm list --refresh' to resolve {name}, or 'golem vm forget {name}'."
    return CreateInterruptedError(message, hint)


def validate_create(request: CreateRequest) -> None:
    rules.check_vm_name(request.name)
    rules.check_resources(request.cpu, request.memory, request.storage)


async def create_vm(
    services: Services,
    request: CreateRequest,
    progress: Progress = lambda _step: None,
    trace: CreateTrace | None = None,
    *,
    placed: Placement | None = None,
) -> CreateResult:
    """Create one VM; ``trace`` (if given) follows how far it got. ``placed``: a
    provider already chosen and checked for this VM (several creates at once,
    ``create_many``); discovery is not asked again."""
    from requestor.ssh.hostkeys import fingerprint
    from requestor.ssh.keys import ensure_key_pair, key_id

    trace = trace if trace is not None else CreateTrace()

    validate_create(request)
    async with services.db.read() as session:
        if await repository.find_vm(session, request.name) is not None:
            raise NameTakenError(f"A VM named {request.name} already exists")

    # 1-2. Verify the provider and that it advertises enough free resources.
    choice_reason: str | None = None
    probed: Capabilities | None = None
    if placed is not None:
        ad, choice_reason, probed = placed.advertisement, placed.reason, placed.capabilities
    elif request.provider_id is None:
        view, choice_reason = await choose_provider(
            services, request.cpu, request.memory, request.storage, progress
        )
        ad, probed = view.advertisement, view.capabilities
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
    if probed is None and await remembered(services, ad.ip_address) is None:
        # Seconds, not the create call's minutes: a provider that accepts
        # connections and never answers is found out before anything is recorded
        # or sent. The same call tells what it supports (one /provider/info); a
        # provider that answered it within the capabilities' lifetime is not asked.
        progress(f"Checking that provider {provider.label} answers")
        with contextlib.suppress(ProviderProtocolError):
            survey = await provider.survey()
            if survey.detected:
                probed = Capabilities.from_info(survey.info)

    # What the provider supports decides the path; some providers golem cannot use.
    progress(f"Checking what provider {provider.label} supports")
    capabilities = await capabilities_of(services, ad.ip_address, ad.provider_id, detected=probed)
    if capabilities is not None:
        capabilities.check_usable(ad.provider_id, has_stream=request.stream_id is not None)

    # 3. SSH access: the user's key, or golem's own.
    progress("Setting up SSH access")
    key = await asyncio.to_thread(ensure_key_pair, services.settings.ssh_key_dir)
    rules.check_ssh_key(key.public_key)
    installation = await asyncio.to_thread(installation_id, services.settings.ssh_key_dir)

    # Record locally before the provider creates anything.
    vm = VM(
        name=request.name,
        provider_id=ad.provider_id,
        provider_ip=ad.ip_address,
        provider_vm_name=rules.provider_vm_name(request.name, installation),
        cpu=request.cpu,
        memory=request.memory,
        storage=request.storage,
        status=VMStatus.CREATING,
        ssh_user="ubuntu",
        ssh_key_path=str(key.private_path),
        **repository.created_by(services.settings.user, services.settings.host, key.public_key),
    )
    try:
        async with services.db.write() as session:
            await repository.remember_provider(session, ad)
            session.add(vm)
            if services.db.shared:
                # Teammates can grant this user's key by name (golem vm grant --user).
                await repository.add_user_key(
                    session,
                    services.settings.user,
                    fingerprint(key.public_key),
                    key_id(key.public_key),
                    services.settings.host,
                )
    except IntegrityError as error:
        if not violates_unique_name(error):
            raise
        # Another golem (maybe on another machine sharing the database) took the
        # name between the check and this insert: nothing was sent to a provider.
        raise NameTakenError(f"A VM named {request.name} already exists") from None
    trace.recorded = True

    try:
        vm = await _deploy(
            services,
            provider,
            vm,
            key.public_key,
            request,
            progress,
            trace,
            background=capabilities is not None and capabilities.async_create,
        )
    except DatabaseLockedError:
        raise UnrecordedActionsError(
            f"The database {services.settings.database_label} stayed locked by another golem"
            f" process after provider {ad.provider_id} was asked to create {request.name}"
            f" (as {vm.provider_vm_name}): what the provider did is not fully recorded"
        ) from None
    except GolemError:
        raise
    except asyncio.CancelledError:
        # Ctrl-C: record what is known, shielded so the interrupt cannot cut the write.
        if trace.sent:
            await asyncio.shield(
                _keep_as_error(services, vm.id, "create was interrupted; the provider may hold it")
            )
        else:
            await asyncio.shield(_forget_id(services, vm.id))
            trace.recorded = False
        raise
    except Exception as error:  # a bug must not leave the record without a trace
        await _keep_as_error(services, vm.id, f"create failed: {type(error).__name__}: {error}")
        raise
    # The new VM (or a re-created one with a name an old entry had) gets its entry.
    await sync_ssh_config(services.settings, services.db)
    return CreateResult(
        vm=vm_view(vm),
        provider=ad,
        choice_reason=choice_reason,
        price=ad.monthly_price(request.cpu, request.memory, request.storage),
    )


async def _deploy(
    services: Services,
    provider: ProviderClient,
    vm: VM,
    public_key: str,
    request: CreateRequest,
    progress: Progress,
    trace: CreateTrace,
    *,
    background: bool,
) -> VM:
    """Steps 4-5 of create, for a VM already recorded locally as ``creating``.

    After any failure that may have reached the provider the record stays, as
    ``error`` with the reason, unless the provider confirms that it holds no such
    VM (a clean-up DELETE that succeeded). With ``background`` (the current
    generation) the provider makes the VM in a job that is polled; the job, the
    SSH port and SSH itself all fit in ``request.ssh_wait``."""
    from requestor.ssh.hostkeys import BrokenSSHServer, wait_for_host_key

    deadline = time.monotonic() + request.ssh_wait
    progress(f"Deploying on provider {provider.label}")
    body = CreateVMRequest(
        name=vm.provider_vm_name,
        resources={"cpu": request.cpu, "memory": request.memory, "storage": request.storage},
        ssh_key=public_key,
        stream_id=request.stream_id,
    )
    trace.sent = True
    try:
        answer = await provider.create_vm(body, background=background)
    except PaymentRequiredError:
        # Refused before anything was made (a detection older than the provider's
        # change of mind): nothing to resolve.
        await _forget_id(services, vm.id)
        raise
    except (InsufficientResourcesError, ProviderRefusedError) as error:
        # The provider said no, yet a failed launch may hold a VM by that name (the
        # deployed catch-all answers 500 after creating it). Only a clean-up DELETE
        # that succeeds (unknown names are fine) proves nothing is left.
        try:
            await provider.delete(vm.provider_vm_name)
        except GolemError as cleanup:
            if isinstance(error, ProviderRefusedError) and (error.status or 500) < 500:
                # A 4xx: the request itself was turned down, nothing was made.
                await _forget_id(services, vm.id)
                trace.recorded = False
                raise error from None
            await _keep_as_error(
                services,
                vm.id,
                f"create failed ({error.message}); the clean-up failed ({cleanup.message})",
            )
            raise type(error)(
                f"{error.message}. The provider may still hold the VM (its clean-up "
                f"failed), so {request.name} is kept, as 'error'",
                hint=_resolve_hint(request.name),
            ) from None
        await _forget_id(services, vm.id)
        trace.recorded = False
        raise error from None
    except ProviderUnreachable as error:
        if error.transport.refused:
            await _forget_id(services, vm.id)  # the request never reached the provider
            trace.recorded = False
            raise
        # A timeout or a cut after sending: the provider may be creating it now,
        # so a clean-up DELETE could come first and prove nothing.
        await _keep_as_error(services, vm.id, error.message)
        raise ProviderUnavailableError(
            f"{error.message}; the VM may or may not have been created, so "
            f"{request.name} is kept, as 'error'",
            hint=_resolve_hint(request.name),
        ) from None
    except ProviderProtocolError as error:
        await _keep_as_error(services, vm.id, error.message)
        raise ProviderProtocolError(
            f"{error.message}; the VM may or may not have been created, so "
            f"{request.name} is kept, as 'error'",
            hint=_resolve_hint(request.name),
        ) from None

    if isinstance(answer, CreateJob):
        status = VMStatus.CREATING
        try:
            await _wait_for_job(provider, answer, deadline, progress)
        except _JobFailed as failed:
            # A failed job made nothing (wire contract): nothing to resolve or delete.
            await _forget_id(services, vm.id)
            raise ProviderRefusedError(
                f"Provider {provider.label} could not create {request.name}: "
                f"{clean(failed.job.error or 'its create job failed', 300)}",
                hint="Nothing was created. Try again, or choose a different provider.",
            ) from None
        except ProviderUnreachable as error:
            # It accepted the create: the VM may exist, now or later.
            await _note_error(services, vm.id, error.message)
            raise ProviderUnavailableError(
                f"{error.message}; it was creating the VM",
                hint=f"Run 'golem vm list --refresh' later; it resolves {request.name}.",
            ) from None
        except GolemError as error:
            await _note_error(services, vm.id, error.message)
            raise
    else:
        status = VMStatus(answer.status.value)

    # 5. Connection details, then wait until SSH answers and pin its host key.
    progress("Fetching connection details")
    try:
        access = await _wait_for_access(provider, vm.provider_vm_name, deadline, progress)
    except _StillCreating as error:
        await _note_error(services, vm.id, error.message)
        raise
    ssh_host = services.settings.ssh_host(access.ssh_host)
    async with services.db.write(after_remote=True) as session:
        # A refresh that ran while the provider was still creating may have
        # called it gone; it exists.
        stored = await repository.update_vm(
            session,
            vm.id,
            ssh_host=ssh_host,
            ssh_port=access.ssh_port,
            status=status,
        )
    if stored is None:
        raise await _removed_meanwhile(provider, vm, request.name)
    vm.ssh_host, vm.ssh_port = ssh_host, access.ssh_port

    async def still_recorded() -> bool:
        async with services.db.read() as session:
            return await repository.get_vm_by_id(session, vm.id) is not None

    progress(f"Waiting for SSH on {ssh_host}:{access.ssh_port}")
    try:
        host_key = await wait_for_host_key(
            ssh_host,
            access.ssh_port,
            max(0.0, deadline - time.monotonic()),
            keep_waiting=still_recorded,
        )
    except BrokenSSHServer as error:
        if not await _note_error(services, vm.id, f"SSH after create: {error.reason}"):
            raise await _removed_meanwhile(provider, vm, request.name) from None
        raise broken_ssh_error(request.name, error.reason) from None
    except SSHUnreachableError:
        if not await _note_error(services, vm.id, "SSH did not answer after create"):
            raise await _removed_meanwhile(provider, vm, request.name) from None
        raise SSHUnreachableError(
            f"Unable to establish SSH connection (VM may be starting up): {request.name} "
            f"was created, but its SSH did not answer within {request.ssh_wait:g} s",
        ) from None
    async with services.db.write(after_remote=True) as session:
        stored = await repository.update_vm(
            session, vm.id, host_key=host_key, status=VMStatus.RUNNING, last_error=None
        )
    if stored is None:
        raise await _removed_meanwhile(provider, vm, request.name)
    return stored


def _resolve_hint(name: str) -> str:
    return (
        f"Run 'golem vm list --refresh' to see what the provider holds (it resolves {name}), "
        f"or 'golem vm destroy {name}' to remove it there."
    )


async def _removed_meanwhile(provider: ProviderClient, vm: VM, name: str) -> GolemError:
    """The record went away while create ran (destroyed or forgotten by another golem
    process): never report success for it, and leave nothing running (and billed)
    at the provider."""
    try:
        await provider.delete(vm.provider_vm_name)
    except GolemError as error:
        return GolemError(
            f"VM {name} was removed from local state while it was being created, and "
            f"deleting it at the provider failed: {error.message}",
            hint="Run 'golem vm list --refresh': it shows the VM as an orphan if the "
            "provider still holds it.",
        )
    return GolemError(
        f"VM {name} was removed from local state while it was being created (destroyed or "
        "forgotten by another golem command); it is deleted at the provider too",
        hint="Create it again if you still want it.",
    )


class _JobFailed(Exception):
    def __init__(self, job: CreateJob) -> None:
        self.job = job


class _StillCreating(SSHUnreachableError):
    """The provider did not finish within --wait-timeout; the VM may still appear."""

    code = SSHUnreachableError.code  # to a script, the same: SSH is not up yet

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            hint="Run 'golem vm list --refresh' later to find out, or wait longer with "
            "--wait-timeout.",
        )


async def _wait_for_job(
    provider: ProviderClient, job: CreateJob, deadline: float, progress: Progress
) -> None:
    """Poll an async create's job until it is ready; raise _JobFailed when it failed."""
    started = time.monotonic()
    interval = POLL_FIRST_S
    while job.status is not JobStatus.READY:
        if job.status is JobStatus.FAILED:
            raise _JobFailed(job)
        left = deadline - time.monotonic()
        if left <= 0:
            raise _StillCreating(
                f"Provider {provider.label} was still creating the VM after "
                f"{time.monotonic() - started:.0f} s (job {clean(job.job_id, 64)})"
            )
        progress(
            f"Provider {provider.label} is creating the VM "
            f"(job {job.status.value}, {time.monotonic() - started:.0f} s)"
        )
        await asyncio.sleep(min(interval, left))
        interval = min(interval * 1.5, POLL_MAX_S)
        job = await provider.job(job.job_id)


async def _wait_for_access(
    provider: ProviderClient, name: str, deadline: float, progress: Progress
) -> VMAccess:
    """The VM's SSH address; a current provider publishes the port a little after
    the VM exists (``/access`` 202 meanwhile)."""
    started = time.monotonic()
    interval = POLL_FIRST_S
    while (access := await provider.access(name)) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _StillCreating(
                f"Provider {provider.label} had not published the VM's SSH port after "
                f"{time.monotonic() - started:.0f} s"
            )
        progress(
            f"Waiting for provider {provider.label} to open the VM's SSH port "
            f"({time.monotonic() - started:.0f} s)"
        )
        await asyncio.sleep(min(interval, left))
        interval = min(interval * 1.5, POLL_MAX_S)
    return access


async def _forget_id(services: Services, vm_id: int) -> None:
    async with services.db.write(after_remote=True) as session:
        await repository.delete_vm(session, vm_id)


async def _note_error(services: Services, vm_id: int, message: str) -> bool:
    """Record ``message`` as the VM's last error; False if its record is gone."""
    async with services.db.write(after_remote=True) as session:
        return await repository.update_vm(session, vm_id, last_error=message) is not None


async def _keep_as_error(services: Services, vm_id: int, message: str) -> None:
    """The provider may hold the VM: keep the record, as ``error``, with the reason."""
    async with services.db.write(after_remote=True) as session:
        await repository.update_vm(session, vm_id, status=VMStatus.ERROR, last_error=message)
