"""Reads of local state alone, for commands that need no network: no HTTP stack
is loaded on these paths."""

from __future__ import annotations

from requestor.services.views import VMFilter, VMListing, VMView, vm_view
from requestor.settings import Settings


async def local_vms(settings: Settings, chosen: VMFilter | None = None) -> VMListing:
    """The VMs in local state (those ``chosen`` keeps), oldest first, and the
    count of the earlier golem's rows that could not be adopted.

    Through the lean ``sqlite3`` read when the schema is at head (no SQLAlchemy
    import); else the ORM path, which creates or migrates the database first.
    """
    from requestor.db import lean

    snapshot = lean.read(settings.db_path)
    if snapshot is not None:
        vms = [VMView(**row) for row in snapshot.vms]
        return VMListing(_kept(vms, chosen), snapshot.rejected_legacy, str(settings.db_path))
    from requestor.db import repository
    from requestor.db.engine import Database

    async with Database(settings.db_path) as db, db.read() as session:
        vms = [vm_view(vm) for vm in await repository.list_vms(session)]
        rejected = await repository.count_rejected_legacy(session)
    return VMListing(_kept(vms, chosen), rejected, str(settings.db_path))


def _kept(vms: list[VMView], chosen: VMFilter | None) -> list[VMView]:
    return vms if chosen is None else chosen.apply(vms)
