"""Queries on the local state, used inside ``Database.read()``/``write()`` sessions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from requestor.db.models import (
    VM,
    LegacyRejectedVM,
    Provider,
    ProviderCapabilities,
    UserKey,
    VMGrant,
    VMStatus,
    utcnow,
)
from requestor.errors import VMNotFoundError
from requestor.wire.models import Advertisement


async def find_vm(session: AsyncSession, name: str) -> VM | None:
    result = await session.execute(select(VM).where(VM.name == name))
    return result.scalar_one_or_none()


async def get_vm(session: AsyncSession, name: str) -> VM:
    vm = await find_vm(session, name)
    if vm is None:
        raise VMNotFoundError(name)
    return vm


async def get_vm_by_id(session: AsyncSession, vm_id: int) -> VM | None:
    return await session.get(VM, vm_id)


class VMChanges(TypedDict, total=False):
    """The columns of a VM that change after it is recorded, with their types.

    ``update_vm(**changes)`` takes only these keys, so a misspelt column is a
    type error (mypy) rather than an attribute that is set and never saved; a
    test keeps every key a real column of ``VM``.
    """

    status: VMStatus
    provider_ip: str
    ssh_host: str | None
    ssh_port: int | None
    host_key: str | None
    last_error: str | None
    # Who acted on it last (Settings.actor), what it did (Action's value), when.
    last_actor: str | None
    last_action: str | None
    last_action_at: datetime | None


class Authorship(TypedDict):
    """The team-mode columns a new VM record starts with."""

    created_by_user: str
    created_by_host: str
    last_actor: str
    last_action: str
    last_action_at: datetime
    ssh_public_key: str | None


def created_by(
    user: str, host: str, public_key: str | None, *, action: str = "create"
) -> Authorship:
    """Who records a new VM (create, adopt), and the key the VM trusts (its
    comment dropped: only the key itself is shared)."""
    return {
        "created_by_user": user,
        "created_by_host": host,
        "last_actor": f"{user}@{host}",
        "last_action": action,
        "last_action_at": utcnow(),
        "ssh_public_key": None if public_key is None else " ".join(public_key.split()[:2]),
    }


async def update_vm(session: AsyncSession, vm_id: int, **values: Unpack[VMChanges]) -> VM | None:
    """Set columns of one VM (``updated_at`` follows by itself); None if it is gone,
    e.g. destroyed or forgotten by another golem process meanwhile."""
    vm = await session.get(VM, vm_id)
    if vm is not None:
        for column, value in values.items():
            if column not in VMChanges.__annotations__:  # a caller that bypassed the types
                raise TypeError(f"update_vm: {column!r} is not a changeable column")
            setattr(vm, column, value)
    return vm


async def pin_host_key(session: AsyncSession, vm_id: int, line: str) -> str | None:
    """Pin ``line`` as VM ``vm_id``'s host key only where no pin exists yet (one
    conditional UPDATE: two machines pinning at once keep one pin). Answers the
    pin the VM has now, or None when the VM is gone."""
    from sqlalchemy import update

    await session.execute(
        update(VM)
        .where(VM.id == vm_id, VM.host_key.is_(None))
        .values(host_key=line, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    pinned: str | None = await session.scalar(select(VM.host_key).where(VM.id == vm_id))
    return pinned


async def delete_vm(session: AsyncSession, vm_id: int) -> None:
    vm = await session.get(VM, vm_id)
    if vm is not None:
        await session.delete(vm)


async def list_vms(session: AsyncSession, names: Sequence[str] | None = None) -> list[VM]:
    query = select(VM).order_by(VM.created_at, VM.id)
    if names is not None:
        query = query.where(VM.name.in_(list(names)))
    return list((await session.execute(query)).scalars())


async def count_rejected_legacy(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(LegacyRejectedVM)) or 0)


async def upsert(
    session: AsyncSession,
    model: type[DeclarativeBase],
    values: dict[str, Any],
    *,
    keep: Sequence[str] = (),
    newer_by: str | None = None,
) -> None:
    """Insert a row, or update the one with its primary key, in one statement.

    A read then an insert is a race on a shared database: two golem processes
    (or two tasks of one) both find nothing and both insert, and one fails.
    ``keep``: columns an existing row keeps (only a new row takes them).
    ``newer_by``: a time column; an existing row is updated only when the new
    values are newer by it (merging two databases keeps the fresher record).
    """
    from sqlalchemy import Table
    from sqlalchemy.dialects import postgresql, sqlite

    table = model.__table__
    assert isinstance(table, Table)
    keys = [column.name for column in table.primary_key]
    dialect = session.get_bind().dialect.name
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    statement = statement.values(**values)
    updated = {
        column: statement.excluded[column]
        for column in values
        if column not in keys and column not in keep
    }
    if updated:
        fresher = None if newer_by is None else statement.excluded[newer_by] > table.c[newer_by]
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_=updated, where=fresher
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    await session.execute(statement)


async def remember_provider(
    session: AsyncSession, ad: Advertisement, seen: datetime | None = None
) -> None:
    await upsert(
        session,
        Provider,
        {
            "provider_id": ad.provider_id,
            "ip_address": ad.ip_address,
            "country": ad.country,
            "cpu": ad.resources.cpu,
            "memory": ad.resources.memory,
            "storage": ad.resources.storage,
            "last_seen": seen or utcnow(),
        },
    )


async def known_providers(session: AsyncSession) -> dict[str, str | None]:
    """Every provider address local state knows (of a VM, or remembered at a
    create), with its provider id where known."""
    known: dict[str, str | None] = {}
    for address, remembered_id in await session.execute(
        select(Provider.ip_address, Provider.provider_id)
    ):
        known[address] = remembered_id
    for address, vm_provider_id in await session.execute(
        select(VM.provider_ip, VM.provider_id).distinct()
    ):
        known[address] = vm_provider_id or known.get(address)
    return known


async def ensure_provider(session: AsyncSession, provider_id: str, ip_address: str) -> None:
    """A providers row for a VM's provider that local state does not know (an
    orphan adopted after a lost database); a known one is left as it is."""
    await upsert(
        session,
        Provider,
        {"provider_id": provider_id, "ip_address": ip_address, "last_seen": utcnow()},
        keep=("ip_address", "last_seen"),
    )


async def find_capabilities(session: AsyncSession, ip_address: str) -> ProviderCapabilities | None:
    return await session.get(ProviderCapabilities, ip_address)


async def store_capabilities(
    session: AsyncSession,
    ip_address: str,
    *,
    reported_provider_id: str | None,
    async_create: bool,
    can_start: bool | None,
    payment_address: str | None,
) -> None:
    await upsert(
        session,
        ProviderCapabilities,
        {
            "ip_address": ip_address,
            "reported_provider_id": reported_provider_id,
            "async_create": async_create,
            "can_start": can_start,
            "payment_address": payment_address,
            "detected_at": utcnow(),
        },
    )


async def note_cannot_start(session: AsyncSession, ip_address: str) -> None:
    """Keeps the detection's age: this is one more fact about it, not a new one.
    Not detected yet: a synchronous create works on either generation."""
    await upsert(
        session,
        ProviderCapabilities,
        {
            "ip_address": ip_address,
            "async_create": False,
            "can_start": False,
            "detected_at": utcnow(),
        },
        keep=("async_create", "detected_at"),
    )


# --- team mode: teammates' keys and the keys granted on VMs ----------------------


async def has_user_key(session: AsyncSession, user: str, fingerprint: str) -> bool:
    found = await session.scalar(
        select(UserKey.fingerprint).where(UserKey.user == user, UserKey.fingerprint == fingerprint)
    )
    return found is not None


async def add_user_key(
    session: AsyncSession, user: str, fingerprint: str, public_key: str, host: str
) -> None:
    """Record a user's public key; one already recorded is kept as it is."""
    await upsert(
        session,
        UserKey,
        {
            "user": user,
            "fingerprint": fingerprint,
            "public_key": public_key,
            "host": host,
            "added_at": utcnow(),
        },
        keep=("public_key", "host", "added_at"),
    )


async def user_keys(session: AsyncSession, user: str) -> list[UserKey]:
    query = select(UserKey).where(UserKey.user == user).order_by(UserKey.added_at)
    return list((await session.execute(query)).scalars())


async def grants_of(session: AsyncSession, vm_ids: Sequence[int]) -> dict[int, list[VMGrant]]:
    """The keys granted on each of ``vm_ids`` (a VM with none is absent)."""
    found: dict[int, list[VMGrant]] = {}
    if not vm_ids:
        return found
    query = (
        select(VMGrant)
        .where(VMGrant.vm_id.in_(list(vm_ids)))
        .order_by(VMGrant.vm_id, VMGrant.granted_at)
    )
    for grant in (await session.execute(query)).scalars():
        found.setdefault(grant.vm_id, []).append(grant)
    return found


async def add_grant(
    session: AsyncSession,
    vm_id: int,
    *,
    fingerprint: str,
    public_key: str,
    user: str | None,
    actor: str,
) -> None:
    """Record a key granted on a VM (granted again: who granted it and when are renewed)."""
    await upsert(
        session,
        VMGrant,
        {
            "vm_id": vm_id,
            "fingerprint": fingerprint,
            "public_key": public_key,
            "user": user,
            "granted_by": actor,
            "granted_at": utcnow(),
        },
    )


async def delete_grants(session: AsyncSession, vm_id: int, fingerprints: Sequence[str]) -> None:
    from sqlalchemy import delete

    await session.execute(
        delete(VMGrant).where(VMGrant.vm_id == vm_id, VMGrant.fingerprint.in_(list(fingerprints)))
    )


async def record_action(session: AsyncSession, vm_id: int, actor: str, action: str) -> None:
    """``actor`` (user@host) did ``action`` (a short verb) to the VM just now."""
    vm = await session.get(VM, vm_id)
    if vm is not None:
        vm.last_actor, vm.last_action, vm.last_action_at = actor, action, utcnow()
