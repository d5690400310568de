"""Rows moved from one database to another (``golem db copy``): every column of
every table, read and written through the models' own column types, so that a
value read from SQLite is written to PostgreSQL as the same value (times as UTC,
statuses as their names) and back.

The policy (who owns a VM that had no owner, what counts as a conflict) is the
service's (services/db_copy.py); this module reads what a database holds and
writes what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from requestor.db.engine import create_engine
from requestor.db.errors import translate_errors
from requestor.db.migrate import check_known_revision, read_revision
from requestor.db.models import (
    VM,
    LegacyRejectedVM,
    Provider,
    ProviderCapabilities,
    UserKey,
    VMGrant,
)
from requestor.db.repository import upsert

Row = dict[str, Any]


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


@dataclass(frozen=True)
class Snapshot:
    """Every row of golem's tables, as column -> value."""

    providers: list[Row]
    capabilities: list[Row]
    vms: list[Row]  # with their ids in this database (grants refer to them)
    grants: list[Row]
    user_keys: list[Row]
    legacy_rejected: list[Row]


async def read_snapshot(session: AsyncSession) -> Snapshot:
    """All of it, in one read transaction (one consistent state)."""

    async def rows(model: type[Any]) -> list[Row]:
        table = _table(model)
        result = await session.execute(select(table).order_by(*table.primary_key.columns))
        return [dict(row._mapping) for row in result]

    return Snapshot(
        providers=await rows(Provider),
        capabilities=await rows(ProviderCapabilities),
        vms=await rows(VM),
        grants=await rows(VMGrant),
        user_keys=await rows(UserKey),
        legacy_rejected=await rows(LegacyRejectedVM),
    )


@dataclass(frozen=True)
class VMIdentity:
    """What makes a VM the same one in two databases: its name, or where it lives."""

    name: str
    provider_id: str | None
    provider_ip: str
    provider_vm_name: str


def legacy_key(row: Row) -> tuple[Any, ...]:
    """A legacy row's contents without its id: the same row copied twice is one."""
    return tuple(row.get(column) for column in _LEGACY_COLUMNS)


_LEGACY_COLUMNS = tuple(c.name for c in _table(LegacyRejectedVM).columns if c.name != "id")


@dataclass(frozen=True)
class Present:
    """What a database already holds, by the keys a copy into it compares.

    Only the tables that exist are read: a database at an older schema (which a
    copy would upgrade first) has no user keys, for one.
    """

    vms: list[VMIdentity] = field(default_factory=list)
    provider_ids: frozenset[str] = frozenset()
    capability_addresses: frozenset[str] = frozenset()
    user_keys: frozenset[tuple[str, str]] = frozenset()
    legacy_rejected: frozenset[tuple[Any, ...]] = frozenset()


def _present(connection: Connection) -> Present:
    tables = set(inspect(connection).get_table_names())

    def column_values(model: type[Any], *columns: str) -> list[tuple[Any, ...]]:
        table = _table(model)
        if table.name not in tables:
            return []
        query = select(*(table.c[column] for column in columns))
        return [tuple(row) for row in connection.execute(query)]

    vm_columns = ("name", "provider_id", "provider_ip", "provider_vm_name")
    return Present(
        vms=[VMIdentity(*row) for row in column_values(VM, *vm_columns)],
        provider_ids=frozenset(row[0] for row in column_values(Provider, "provider_id")),
        capability_addresses=frozenset(
            row[0] for row in column_values(ProviderCapabilities, "ip_address")
        ),
        user_keys=frozenset(
            (row[0], row[1]) for row in column_values(UserKey, "user", "fingerprint")
        ),
        legacy_rejected=frozenset(column_values(LegacyRejectedVM, *_LEGACY_COLUMNS)),
    )


async def read_present(session: AsyncSession) -> Present:
    """What the database of ``session`` holds, inside its transaction."""
    connection = await session.connection()
    return await connection.run_sync(_present)


async def database_identity(session: AsyncSession) -> str | None:
    """Which PostgreSQL database this is, whatever URL reached it (the cluster's
    system identifier and the database's name); None on SQLite, whose file
    path says it."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    value = await session.scalar(_IDENTITY_QUERY)
    return None if value is None else str(value)


# Readable by any role (unlike the server's address, which a proxy may hide).
_IDENTITY_QUERY = text(
    "SELECT system_identifier::text || '/' || current_database() FROM pg_control_system()"
)


@dataclass(frozen=True)
class Inspection:
    """A database looked at without changing it (a dry run, or before a copy)."""

    revision: str | None  # its schema; None: golem never set it up
    present: Present
    # Tables there, but no golem schema: another program's database (or the
    # earlier requestor's, which only golem's own database file adopts).
    foreign: bool
    identity: str | None


async def inspect_database(location: Path | str, label: str) -> Inspection:
    """Read a database's schema and keys without migrating or writing it.

    Raises what ``Database`` raises for the same problems (db/errors.py): an
    unreachable server, a refused login, a newer schema. A SQLite ``location``
    must exist (opening creates the file).
    """
    shared = isinstance(location, str)
    engine = create_engine(location) if isinstance(location, str) else _read_only(location)
    try:
        with translate_errors(label, shared=shared):
            revision = await read_revision(engine)
            check_known_revision(revision, label)
            async with engine.connect() as connection:
                # Without golem's schema, tables of the same names may be shaped otherwise.
                present = Present()
                if revision is not None:
                    present = await connection.run_sync(_present)
                has_tables = await connection.run_sync(
                    lambda sync: bool(inspect(sync).get_table_names())
                )
                identity = None
                if shared:
                    identity = str(await connection.scalar(_IDENTITY_QUERY))
    finally:
        await engine.dispose()
    return Inspection(
        revision=revision,
        present=present,
        foreign=revision is None and has_tables,
        identity=identity,
    )


def _read_only(path: Path) -> AsyncEngine:
    """An engine that cannot change the file: golem's own engine would switch it to
    WAL (rewriting its header) and tighten its mode."""
    from urllib.parse import quote

    import aiosqlite

    def connect() -> Any:
        return aiosqlite.connect(f"file:{quote(str(path))}?mode=ro", uri=True)

    return create_async_engine("sqlite+aiosqlite://", async_creator=connect)


async def write_snapshot(
    session: AsyncSession,
    snapshot: Snapshot,
    *,
    skip_legacy: frozenset[tuple[Any, ...]] = frozenset(),
) -> None:
    """Write ``snapshot`` into the database of ``session`` (its transaction):

    providers and capabilities are merged (the fresher record of each is kept),
    user keys are added where missing (a key is its fingerprint: the same row),
    VMs are inserted with new ids and their grants follow them; legacy rows in
    ``skip_legacy`` are there already. The caller has checked that no VM is there.
    """
    for row in snapshot.providers:
        await upsert(session, Provider, row, newer_by="last_seen")
    for row in snapshot.capabilities:
        await upsert(session, ProviderCapabilities, row, newer_by="detected_at")
    for row in snapshot.user_keys:
        # Every column kept: an existing (user, fingerprint) is this very key.
        await upsert(session, UserKey, row, keep=tuple(row))

    new_ids: dict[int, int] = {}
    if snapshot.vms:
        vms = _table(VM)
        by_name = {row["name"]: row["id"] for row in snapshot.vms}
        result = await session.execute(
            insert(vms).returning(vms.c.id, vms.c.name),
            [{k: v for k, v in row.items() if k != "id"} for row in snapshot.vms],
        )
        new_ids = {by_name[name]: new_id for new_id, name in result}
    grants = [{**row, "vm_id": new_ids[row["vm_id"]]} for row in snapshot.grants]
    if grants:
        await session.execute(insert(_table(VMGrant)), grants)

    legacy = [
        {k: v for k, v in row.items() if k != "id"}
        for row in snapshot.legacy_rejected
        if legacy_key(row) not in skip_legacy
    ]
    if legacy:
        await session.execute(insert(_table(LegacyRejectedVM)), legacy)
