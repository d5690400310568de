"""VMs this installation created on a provider but has no record of (a crash,
``forget --force``, a lost database): found by their provider-side names, which
carry the installation id, and recovered by ``adopt``.

Found through each provider's ``GET /vms``. Legacy providers may answer ``[]``
while they hold VMs (see the wire contract): what they hold cannot be found this
way, and the scan says nothing about them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from requestor.db import repository
from requestor.db.errors import violates_unique_name
from requestor.db.models import VM
from requestor.errors import GolemError, InputError, NameTakenError
from requestor.services.access import sync_ssh_config
from requestor.services.installation import installation_id
from requestor.services.runtime import Services
from requestor.services.views import OrphanView, VMView, vm_view
from requestor.status import VMStatus
from requestor.text import clean
from requestor.wire import rules
from requestor.wire.models import VMInfo

# Providers asked at once; each call is bounded by the HTTP client's timeouts.
SCAN_CONCURRENCY = 20


@dataclass(frozen=True)
class OrphanScan:
    orphans: list[OrphanView]
    providers_asked: int
    # Providers whose list could not be read: (provider id or address, reason).
    failed: list[tuple[str, str]]


async def find_orphans(services: Services, *, advertised: bool = False) -> OrphanScan:
    """Ask every provider local state knows (and, with ``advertised``, every one
    discovery advertises) for its VMs; keep those of this installation that no
    local record names."""
    installation = await asyncio.to_thread(installation_id, services.settings.ssh_key_dir)
    async with services.db.read() as session:
        providers = await repository.known_providers(session)
        recorded = {
            (vm.provider_ip, vm.provider_vm_name) for vm in await repository.list_vms(session)
        }
    if advertised:
        for ad in (await services.discovery.advertisements()).advertisements:
            providers.setdefault(ad.ip_address, ad.provider_id)
    limit = asyncio.Semaphore(SCAN_CONCURRENCY)
    failed: list[tuple[str, str]] = []

    async def scan(ip_address: str, provider_id: str | None) -> list[OrphanView]:
        label = provider_id or ip_address
        async with limit:
            try:
                listed = await services.provider(ip_address, label).list_vms()
            except GolemError as error:
                failed.append((clean(label, 80), error.message))
                return []
        return [
            _orphan(provider_id, ip_address, info)
            for info in listed
            if _ours(info.name, installation)
            and info.status.value != "deleted"
            and (ip_address, info.name) not in recorded
        ]

    found = await asyncio.gather(*(scan(ip, pid) for ip, pid in sorted(providers.items())))
    orphans = sorted(
        (orphan for batch in found for orphan in batch),
        key=lambda o: (o.provider_id or o.provider_ip, o.provider_vm_name),
    )
    return OrphanScan(orphans, len(providers), sorted(failed))


def _ours(name: str, installation: str) -> bool:
    parsed = rules.parse_provider_vm_name(name)
    return parsed is not None and parsed[1] == installation


def _orphan(provider_id: str | None, ip_address: str, info: VMInfo) -> OrphanView:
    resources = info.resources
    return OrphanView(
        provider_id=provider_id,
        provider_ip=ip_address,
        provider_vm_name=info.name,
        status=info.status.value,
        cpu=resources.cpu if resources else None,
        memory=resources.memory if resources else None,
        storage=resources.storage if resources else None,
        ssh_port=info.ssh_port,
    )


async def adopt_vm(
    services: Services,
    provider_vm_name: str,
    name: str | None = None,
    provider_id: str | None = None,
    *,
    advertised: bool = False,
) -> VMView:
    """Record an orphan again, under ``name`` (default: the name it was created
    with), with its SSH details; its host key is pinned now if its SSH answers,
    else at the first ``golem vm ssh``."""
    from requestor.services.actions import first_host_key
    from requestor.ssh.keys import ensure_key_pair

    if name is not None:
        rules.check_vm_name(name)
    scan = await find_orphans(services, advertised=advertised)
    matches = [
        o
        for o in scan.orphans
        if o.provider_vm_name == provider_vm_name
        and (provider_id is None or o.provider_id == provider_id)
    ]
    if not matches:
        unreadable = f" ({len(scan.failed)} provider(s) could not be asked)" if scan.failed else ""
        raise GolemError(
            f"No orphan VM named {clean(provider_vm_name, 80)} was found on the "
            f"{scan.providers_asked} provider(s) asked{unreadable}",
            hint="Run 'golem vm list --refresh' to see the orphans (add --scan-advertised "
            "after a lost database).",
        )
    if len(matches) > 1:
        raise InputError(
            f"Several providers hold an orphan named {provider_vm_name}",
            hint="Name one with --provider-id.",
        )
    orphan = matches[0]
    local_name = rules.check_vm_name(name or orphan.suggested_name)
    key = await asyncio.to_thread(ensure_key_pair, services.settings.ssh_key_dir)
    provider = services.provider(orphan.provider_ip, orphan.provider_id or orphan.provider_ip)
    access = await provider.access(orphan.provider_vm_name)
    # None: a current provider has not published its SSH port yet; a refresh adds it.
    ssh_host = None if access is None else services.settings.ssh_host(access.ssh_host)
    ssh_port = None if access is None else access.ssh_port
    status = VMStatus(orphan.status) if orphan.status in set(VMStatus) else VMStatus.ERROR
    host_key = None
    if status is VMStatus.RUNNING and ssh_host is not None and ssh_port is not None:
        host_key = await first_host_key(ssh_host, ssh_port)
    vm = VM(
        name=local_name,
        provider_id=orphan.provider_id,
        provider_ip=orphan.provider_ip,
        provider_vm_name=orphan.provider_vm_name,
        cpu=orphan.cpu or 0,
        memory=orphan.memory or 0,
        storage=orphan.storage or 0,
        status=status,
        ssh_host=ssh_host,
        ssh_port=ssh_port,
        ssh_user="ubuntu",
        ssh_key_path=str(key.private_path),
        host_key=host_key,
        **repository.created_by(
            services.settings.user, services.settings.host, key.public_key, action="adopt"
        ),
    )
    try:
        async with services.db.write() as session:
            if await repository.find_vm(session, local_name) is not None:
                raise NameTakenError(
                    f"A VM named {local_name} already exists",
                    hint=f"Adopt it under another name: 'golem vm adopt {provider_vm_name} "
                    "--name NEW-NAME'.",
                )
            if orphan.provider_id is not None:
                await repository.ensure_provider(session, orphan.provider_id, orphan.provider_ip)
            session.add(vm)
    except IntegrityError as error:
        if violates_unique_name(error):
            raise NameTakenError(f"A VM named {local_name} already exists") from None
        raise GolemError(f"{provider_vm_name} was recorded meanwhile") from None
    await sync_ssh_config(services.settings, services.db)
    return vm_view(vm)
