"""What golem last knew of a VM: a plain str enum, free of the database layer, so
services, renderers and the lean read paths share it without loading SQLAlchemy.
``requestor.db.models`` stores it; this module is its one definition."""

from __future__ import annotations

import enum


class VMStatus(enum.StrEnum):
    """What we last knew of a VM. The first six are the provider's own words."""

    CREATING = "creating"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"
    DELETED = "deleted"
    # Ours: the provider did not answer at the last refresh (the VM may be fine).
    UNREACHABLE = "unreachable"
    # Ours: the provider answered that it does not know the VM any more.
    GONE = "gone"
