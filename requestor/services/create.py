"""Create a VM: the spec's five steps.

Local state is written before the provider creates anything, so a crash leaves
a ``creating`` record that ``golem vm list --refresh`` resolves; no database
transaction is held across a network call.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from requestor.db import repository
from requestor.db.models import VM
from requestor.errors import (
    GolemError,
    InsufficientResourcesError,
    NameTakenError,
    ProviderProtocolError,
    ProviderRefusedError,
    ProviderUnavailableError,
    SSHUnreachableError,
)
from requestor.services.access import broken_ssh_error, sync_ssh_config
from requestor.services.provider import ProviderClient, ProviderUnreachable
from requestor.services.provider_search import Progress, choose_provider
from requestor.services.runtime import Services
from requestor.services.views import VMView, vm_view
from requestor.status import VMStatus
from requestor.text import clean
from requestor.wire import rules
from requestor.wire.models import Advertisement, CreateVMRequest

DEFAULT_SSH_WAIT = 180.0  # the CLI passes --wait-timeout (same default)


@dataclass(frozen=True)
class CreateRequest:
    name: str
    cpu: int
    memory: int
    storage: int
    provider_id: str | None = None
    ssh_wait: float = DEFAULT_SSH_WAIT


@dataclass(frozen=True)
class CreateResult:
    vm: VMView
    provider: Advertisement
    choice_reason: str | None = None  # set when golem picked the provider


def validate_create(request: CreateRequest) -> None:
    rules.check_vm_name(request.name)
    rules.check_resources(request.cpu, request.memory, request.storage)


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
        ad, choice_reason = await choose_provider(
            services, request.cpu, request.memory, request.storage, progress
        )
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
    # The new VM (or a re-created one with a name an old entry had) gets its entry.
    await sync_ssh_config(services.settings, services.db)
    return CreateResult(vm=vm_view(vm), provider=ad, choice_reason=choice_reason)


async def _deploy(
    services: Services,
    provider: ProviderClient,
    vm: VM,
    public_key: str,
    request: CreateRequest,
    progress: Progress,
) -> VM:
    """Steps 4-5 of create, for a VM already recorded locally as ``creating``."""
    from requestor.ssh.hostkeys import BrokenSSHServer, wait_for_host_key

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
        # A refresh that ran while the provider was still creating may have
        # called it gone; it exists.
        stored = await repository.update_vm(
            session,
            vm.id,
            ssh_host=ssh_host,
            ssh_port=access.ssh_port,
            status=VMStatus(info.status.value),
        )
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
    except BrokenSSHServer as error:
        await _note_error(services, vm.id, f"SSH after create: {error.reason}")
        raise broken_ssh_error(request.name, error.reason) from None
    except SSHUnreachableError:
        await _note_error(services, vm.id, "SSH did not answer after create")
        raise SSHUnreachableError(
            f"Unable to establish SSH connection (VM may be starting up): {request.name} "
            f"was created, but its SSH did not answer within {request.ssh_wait:g} s",
        ) from None
    async with services.db.write() as session:
        stored = await repository.update_vm(
            session, vm.id, host_key=host_key, status=VMStatus.RUNNING, last_error=None
        )
    return stored or vm


async def _forget_id(services: Services, vm_id: int) -> None:
    async with services.db.write() as session:
        await repository.delete_vm(session, vm_id)


async def _note_error(services: Services, vm_id: int, message: str) -> None:
    async with services.db.write() as session:
        await repository.update_vm(session, vm_id, last_error=message)
