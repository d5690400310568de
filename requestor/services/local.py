"""Reads of local state alone, for commands that need no network: no HTTP stack
is loaded on these paths."""

from __future__ import annotations

from requestor.errors import VMNotFoundError
from requestor.services.views import VMListing, VMView, vm_view
from requestor.settings import Settings


async def local_vms(settings: Settings) -> VMListing:
    """Every VM in local state, oldest first, and the count of the earlier golem's
    rows that could not be adopted.

    Through the lean ``sqlite3`` read when the schema is at head (no SQLAlchemy
    import); else the ORM path, which creates or migrates the database first.
    """
    from requestor.db import lean

    snapshot = lean.read(settings.db_path)
    if snapshot is not None:
        return VMListing(
            [VMView(**row) for row in snapshot.vms], snapshot.rejected_legacy, str(settings.db_path)
        )
    from requestor.db import repository
    from requestor.db.engine import Database

    async with Database(settings.db_path) as db, db.read() as session:
        vms = [vm_view(vm) for vm in await repository.list_vms(session)]
        rejected = await repository.count_rejected_legacy(session)
    return VMListing(vms, rejected, str(settings.db_path))


async def local_vm(settings: Settings, name: str) -> VMView:
    """One VM from local state (``VMNotFoundError`` when there is none by that name),
    through the lean read when it can, as ``local_vms``."""
    from requestor.db import lean

    snapshot = lean.read(settings.db_path, name)
    if snapshot is not None:
        if not snapshot.vms:
            raise VMNotFoundError(name)
        return VMView(**snapshot.vms[0])
    from requestor.db import repository
    from requestor.db.engine import Database

    async with Database(settings.db_path) as db, db.read() as session:
        return vm_view(await repository.get_vm(session, name))
