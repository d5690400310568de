"""Reads of local state alone, for commands that need no network: no HTTP stack
is loaded on these paths."""

from __future__ import annotations

from requestor.services.views import VMListing, vm_view
from requestor.settings import Settings


async def local_vms(settings: Settings) -> VMListing:
    """Every VM in local state, oldest first, and the count of the earlier golem's
    rows that could not be adopted."""
    from requestor.db import repository
    from requestor.db.engine import Database

    async with Database(settings.db_path) as db, db.read() as session:
        vms = [vm_view(vm) for vm in await repository.list_vms(session)]
        rejected = await repository.count_rejected_legacy(session)
    return VMListing(vms, rejected, str(settings.db_path))
