"""What services hand to the CLI: frozen values, never ORM rows.

The renderers (``requestor.cli.render``) turn these into tables and ``--json``;
the JSON keys are a documented contract (docs/json.md), not the table layout.
This module imports neither SQLAlchemy nor anything heavy: the lean read paths
build the same values from ``sqlite3`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from requestor.status import VMStatus

if TYPE_CHECKING:
    from requestor.db.models import VM, VMGrant
    from requestor.settings import Settings

__all__ = [
    "GrantView",
    "Mine",
    "VMFilter",
    "VMListing",
    "VMStatus",
    "VMView",
    "grant_view",
    "vm_view",
]


@dataclass(frozen=True)
class VMView:
    """One VM as local state records it (every column of ``vms``)."""

    id: int
    name: str
    status: VMStatus
    provider_id: str | None
    provider_ip: str
    provider_vm_name: str
    cpu: int
    memory: int
    storage: int
    ssh_host: str | None
    ssh_port: int | None
    ssh_user: str
    ssh_key_path: str | None
    host_key: str | None  # the pinned OpenSSH one-line public key
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    # Team mode (models.VM): owner, last actor, and the key the VM was created with.
    created_by_user: str | None = None
    created_by_host: str | None = None
    last_actor: str | None = None
    last_action: str | None = None
    last_action_at: datetime | None = None
    ssh_public_key: str | None = None


def vm_view(vm: VM) -> VMView:
    return VMView(
        id=vm.id,
        name=vm.name,
        status=VMStatus(vm.status),
        provider_id=vm.provider_id,
        provider_ip=vm.provider_ip,
        provider_vm_name=vm.provider_vm_name,
        cpu=vm.cpu,
        memory=vm.memory,
        storage=vm.storage,
        ssh_host=vm.ssh_host,
        ssh_port=vm.ssh_port,
        ssh_user=vm.ssh_user,
        ssh_key_path=vm.ssh_key_path,
        host_key=vm.host_key,
        last_error=vm.last_error,
        created_at=vm.created_at,
        updated_at=vm.updated_at,
        created_by_user=vm.created_by_user,
        created_by_host=vm.created_by_host,
        last_actor=vm.last_actor,
        last_action=vm.last_action,
        last_action_at=vm.last_action_at,
        ssh_public_key=vm.ssh_public_key,
    )


@dataclass(frozen=True)
class GrantView:
    """A public key granted on a VM (``golem vm grant``), beside the one it was created with."""

    fingerprint: str  # SHA256:...
    public_key: str  # "type base64"
    user: str | None  # the teammate whose recorded key it is; None: granted by --key
    granted_by: str  # user@host


def grant_view(grant: VMGrant) -> GrantView:
    return GrantView(grant.fingerprint, grant.public_key, grant.user, grant.granted_by)


@dataclass(frozen=True)
class OrphanView:
    """A VM a provider holds under a name of this installation, with no local record."""

    provider_id: str | None
    provider_ip: str
    provider_vm_name: str
    status: str  # as the provider reports it
    cpu: int | None
    memory: int | None
    storage: int | None
    ssh_port: int | None

    @property
    def suggested_name(self) -> str:
        """The local name it was created with (as far as the provider-side name kept it)."""
        from requestor.wire import rules

        parsed = rules.parse_provider_vm_name(self.provider_vm_name)
        return parsed[0] if parsed else self.provider_vm_name


@dataclass(frozen=True)
class VMListing:
    """``golem vm list``: the VMs, and rows of the earlier golem that could not be read."""

    vms: list[VMView]
    rejected_legacy: int = 0
    db_path: str = ""
    # Team mode: the VMs are the team's, so the table says whose each one is.
    shared: bool = False
    # With --refresh: VMs of this installation that providers hold and no record names.
    orphans: list[OrphanView] = field(default_factory=list)
    orphan_scan_failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Mine:
    """``--mine``: the VMs ``user`` created. In a local database (the user's own
    file) VMs recorded before golem kept owners are theirs too; in a shared one
    they are nobody's."""

    user: str
    unowned_included: bool

    @classmethod
    def of(cls, settings: Settings) -> Mine:
        return cls(settings.user, unowned_included=not settings.shared_database)

    def owns(self, vm: VMView) -> bool:
        if vm.created_by_user is None:
            return self.unowned_included
        return vm.created_by_user == self.user


@dataclass(frozen=True)
class VMFilter:
    """``golem vm list [PATTERN...] [--provider ID] [--status S] [--mine]``: a VM is
    kept when it matches every filter given (any one pattern, exact name or shell
    glob)."""

    patterns: tuple[str, ...] = ()
    provider_id: str | None = None
    status: VMStatus | None = None
    mine: Mine | None = None

    @property
    def everything(self) -> bool:
        return (
            not self.patterns
            and self.provider_id is None
            and self.status is None
            and self.mine is None
        )

    def place(self, vm: VMView) -> bool:
        """Name, provider and owner: which VMs a refresh should ask about."""
        import fnmatch

        if self.patterns and not any(fnmatch.fnmatchcase(vm.name, p) for p in self.patterns):
            return False
        if self.mine is not None and not self.mine.owns(vm):
            return False
        return self.provider_id is None or vm.provider_id == self.provider_id

    def matches(self, vm: VMView) -> bool:
        return self.place(vm) and (self.status is None or vm.status == self.status)

    def apply(self, vms: list[VMView]) -> list[VMView]:
        return vms if self.everything else [vm for vm in vms if self.matches(vm)]


class _HasOk(Protocol):
    @property
    def ok(self) -> bool: ...


class CountsOutcomes:
    """The counts every report of many VMs gives (bulk actions, exec, several
    creates); the root group maps them to exit codes 0, 3 and 1."""

    outcomes: Sequence[_HasOk]

    @property
    def succeeded(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def failed(self) -> int:
        """VMs whose work did not succeed (for exec: did not run, or returned non-zero)."""
        return sum(1 for o in self.outcomes if not o.ok)
