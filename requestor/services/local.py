"""Reads of local state alone, for commands that need no network: no HTTP stack
is loaded on these paths, and at head not even SQLAlchemy or asyncio."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

from requestor.errors import VMNotFoundError
from requestor.services.views import VMFilter, VMListing, VMView, vm_view
from requestor.settings import Settings

# Runs a coroutine to its end: the command's one event loop (AppContext.run).
Runner = Callable[[Coroutine[Any, Any, VMListing]], VMListing]


def local_vms(settings: Settings, run: Runner, chosen: VMFilter | None = None) -> VMListing:
    """The VMs in local state (those ``chosen`` keeps), oldest first, and the
    count of the earlier golem's rows that could not be adopted.

    Through the lean ``sqlite3`` read when the schema is at head: synchronous, so
    neither SQLAlchemy nor asyncio is loaded. Otherwise the ORM path, on ``run``'s
    event loop, creates or migrates the database first (or says why it cannot).
    """
    from requestor.db import lean

    snapshot = lean.snapshot(settings)
    if snapshot is not None:
        vms = [VMView(**row) for row in snapshot.vms]
        return VMListing(_kept(vms, chosen), snapshot.rejected_legacy, settings.database_label)
    listing = run(_orm_listing(settings))
    return dataclasses.replace(listing, vms=_kept(listing.vms, chosen))


async def _orm_listing(settings: Settings) -> VMListing:
    from requestor.db import repository
    from requestor.db.engine import Database

    async with Database.for_settings(settings) as db, db.read() as session:
        vms = [vm_view(vm) for vm in await repository.list_vms(session)]
        rejected = await repository.count_rejected_legacy(session)
    return VMListing(vms, rejected, settings.database_label, shared=settings.shared_database)


def _kept(vms: list[VMView], chosen: VMFilter | None) -> list[VMView]:
    return vms if chosen is None else chosen.apply(vms)


def local_vm(
    settings: Settings, name: str, run: Callable[[Coroutine[Any, Any, VMView]], VMView]
) -> VMView:
    """One VM from local state (``VMNotFoundError`` when there is none by that name),
    read as ``local_vms`` reads them."""
    from requestor.db import lean

    snapshot = lean.snapshot(settings, name)
    if snapshot is not None:
        if not snapshot.vms:
            raise VMNotFoundError(name)
        return VMView(**snapshot.vms[0])
    return run(_orm_vm(settings, name))


async def _orm_vm(settings: Settings, name: str) -> VMView:
    from requestor.db import repository
    from requestor.db.engine import Database

    async with Database.for_settings(settings) as db, db.read() as session:
        return vm_view(await repository.get_vm(session, name))


def provider_can_start(
    settings: Settings, vm: VMView, run: Callable[[Coroutine[Any, Any, bool | None]], bool | None]
) -> bool | None:
    """Whether ``vm``'s provider can start it again once stopped, as last detected
    (current-generation providers cannot); None when golem has not learned it.
    A shared database is read through the ORM, on ``run``'s event loop."""
    if settings.shared_database:
        return run(_orm_can_start(settings, vm.provider_ip))
    from requestor.db import lean

    return lean.can_start(settings.db_path, vm.provider_ip)


async def _orm_can_start(settings: Settings, ip_address: str) -> bool | None:
    from requestor.db import repository
    from requestor.db.engine import Database

    async with Database.for_settings(settings) as db, db.read() as session:
        capabilities = await repository.find_capabilities(session, ip_address)
    return None if capabilities is None else capabilities.can_start
