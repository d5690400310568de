"""Reads of local state alone, for commands that need no network: no HTTP stack
is loaded on these paths, and at head not even SQLAlchemy or asyncio."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from requestor.services.views import VMListing, VMView, vm_view
from requestor.settings import Settings

# Runs a coroutine to its end: the command's one event loop (AppContext.run).
Runner = Callable[[Coroutine[Any, Any, VMListing]], VMListing]


def local_vms(settings: Settings, run: Runner) -> VMListing:
    """Every VM in local state, oldest first, and the count of the earlier golem's
    rows that could not be adopted.

    Through the lean ``sqlite3`` read when the schema is at head: synchronous, so
    neither SQLAlchemy nor asyncio is loaded. Otherwise the ORM path, on ``run``'s
    event loop, creates or migrates the database first (or says why it cannot).
    """
    from requestor.db import lean

    snapshot = lean.read(settings.db_path)
    if snapshot is not None:
        return VMListing(
            [VMView(**row) for row in snapshot.vms], snapshot.rejected_legacy, str(settings.db_path)
        )
    return run(_orm_listing(settings))


async def _orm_listing(settings: Settings) -> VMListing:
    from requestor.db import repository
    from requestor.db.engine import Database

    async with Database(settings.db_path) as db, db.read() as session:
        vms = [vm_view(vm) for vm in await repository.list_vms(session)]
        rejected = await repository.count_rejected_legacy(session)
    return VMListing(vms, rejected, str(settings.db_path))
