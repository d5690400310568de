"""The repository's queries mean the same on both backends: the local SQLite file
and a shared PostgreSQL database (team mode). Each test runs on each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from requestor.db import engine as engine_module
from requestor.db import repository
from requestor.db.engine import Database
from requestor.db.errors import violates_unique_name
from requestor.db.models import VM, Provider, ProviderCapabilities, UserKey, VMGrant, VMStatus
from requestor.errors import DatabaseLockedError, VMNotFoundError
from requestor.wire.models import Advertisement

Opener = Callable[[], Database]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_database(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens Databases on one location: a file, or a fresh PostgreSQL database."""
    location: Path | str = tmp_path / "vms.db"
    if request.param == "postgresql":
        request.applymarker(pytest.mark.postgresql)
        location = request.getfixturevalue("pg_url")
    return lambda: Database(location)


@pytest.fixture
async def db(open_database: Opener) -> AsyncIterator[Database]:
    async with open_database() as database:
        yield database


def a_vm(name: str, **values: object) -> VM:
    fields: dict[str, object] = {
        "provider_ip": "127.0.0.1",
        "provider_vm_name": f"{name}-p",
        "cpu": 1,
        "memory": 1,
        "storage": 10,
        "status": VMStatus.RUNNING,
        **values,
    }
    return VM(name=name, **fields)


def an_ad(provider_id: str = "0xprov", ip: str = "127.0.0.2", cpu: int = 4) -> Advertisement:
    return Advertisement.model_validate(
        {
            "provider_id": provider_id,
            "ip_address": ip,
            "country": "SE",
            "resources": {"cpu": cpu, "memory": 8, "storage": 100},
        }
    )


async def test_vms_are_found_listed_oldest_first_updated_and_deleted(db: Database) -> None:
    start = datetime.now(UTC)
    async with db.write() as session:
        for offset, name in enumerate(["b-vm", "a-vm", "c-vm"]):
            session.add(a_vm(name, created_at=start + timedelta(seconds=offset)))
    async with db.read() as session:
        assert [vm.name for vm in await repository.list_vms(session)] == ["b-vm", "a-vm", "c-vm"]
        assert [vm.name for vm in await repository.list_vms(session, ["c-vm", "b-vm"])] == [
            "b-vm",
            "c-vm",
        ]
        found = await repository.get_vm(session, "a-vm")
        with pytest.raises(VMNotFoundError):
            await repository.get_vm(session, "no-vm")
    assert found.created_at.tzinfo is UTC
    assert found.created_at == start + timedelta(seconds=1)

    async with db.write() as session:
        await repository.update_vm(session, found.id, status=VMStatus.STOPPED, ssh_port=50800)
    async with db.read() as session:
        again = await repository.get_vm(session, "a-vm")
    assert (again.status, again.ssh_port) == (VMStatus.STOPPED, 50800)
    assert again.updated_at >= found.updated_at

    async with db.write() as session:
        await repository.delete_vm(session, found.id)
    async with db.write() as session:  # e.g. destroyed by another golem meanwhile
        assert await repository.update_vm(session, found.id, status=VMStatus.RUNNING) is None
    async with db.read() as session:
        assert await repository.find_vm(session, "a-vm") is None


async def test_a_taken_name_is_told_apart_from_other_conflicts(db: Database) -> None:
    async with db.write() as session:
        session.add(a_vm("web"))
    with pytest.raises(IntegrityError) as name_taken:
        async with db.write() as session:
            session.add(a_vm("web", provider_vm_name="other"))
    assert violates_unique_name(name_taken.value)
    with pytest.raises(IntegrityError) as same_provider_name:
        async with db.write() as session:
            session.add(a_vm("web-2", provider_vm_name="web-p"))
    assert not violates_unique_name(same_provider_name.value)


async def test_remembering_a_provider_from_many_tasks_at_once_keeps_one_row(
    db: Database,
) -> None:
    """On PostgreSQL writes run side by side; a read-then-insert would collide."""

    async def remember(cpu: int) -> None:
        async with db.write() as session:
            await repository.remember_provider(session, an_ad(cpu=cpu))

    await asyncio.gather(*(remember(cpu) for cpu in range(1, 21)))
    async with db.read() as session:
        rows = (await session.scalars(select(Provider))).all()
    assert len(rows) == 1
    assert rows[0].cpu in range(1, 21)

    async with db.write() as session:
        await repository.remember_provider(session, an_ad(ip="127.0.0.3", cpu=99))
        await repository.ensure_provider(session, "0xprov", "127.0.0.9")  # known: unchanged
        await repository.ensure_provider(session, "0xother", "127.0.0.4")
    async with db.read() as session:
        known = await repository.known_providers(session)
    assert known == {"127.0.0.3": "0xprov", "127.0.0.4": "0xother"}


async def test_a_detection_fact_keeps_the_detection_age(db: Database) -> None:
    async with db.write() as session:
        await repository.store_capabilities(
            session,
            "127.0.0.2",
            reported_provider_id="0xprov",
            async_create=True,
            can_start=None,
            payment_address=None,
        )
    async with db.read() as session:
        detected = await repository.find_capabilities(session, "127.0.0.2")
    assert detected is not None
    async with db.write() as session:
        await repository.note_cannot_start(session, "127.0.0.2")
        await repository.note_cannot_start(session, "127.0.0.5")  # never detected
    async with db.read() as session:
        after = await repository.find_capabilities(session, "127.0.0.2")
        fresh = await repository.find_capabilities(session, "127.0.0.5")
    assert after is not None and fresh is not None
    assert (after.can_start, after.async_create) == (False, True)
    assert after.detected_at == detected.detected_at
    assert (fresh.can_start, fresh.async_create) == (False, False)
    async with db.read() as session:
        assert len((await session.scalars(select(ProviderCapabilities))).all()) == 2


async def test_authorship_and_grants_are_recorded_and_go_with_their_vm(db: Database) -> None:
    authorship = repository.created_by("alice", "laptop", "ssh-ed25519 AAAAkey alice@laptop")
    async with db.write() as session:
        vm = a_vm("shared", **authorship)
        session.add(vm)
        session.add(UserKey(user="bob", fingerprint="SHA256:bob", public_key="ssh-ed25519 B"))
        await session.flush()
        session.add(
            VMGrant(
                vm_id=vm.id,
                fingerprint="SHA256:bob",
                public_key="ssh-ed25519 B",
                user="bob",
                granted_by="alice@laptop",
            )
        )
    async with db.read() as session:
        stored = await repository.get_vm(session, "shared")
        grants = (await session.scalars(select(VMGrant))).all()
    assert (stored.created_by_user, stored.created_by_host) == ("alice", "laptop")
    assert (stored.last_actor, stored.last_action) == ("alice@laptop", "create")
    assert stored.ssh_public_key == "ssh-ed25519 AAAAkey"  # the comment is not shared
    assert stored.last_action_at is not None and stored.last_action_at.tzinfo is UTC
    assert [grant.user for grant in grants] == ["bob"]

    async with db.write() as session:
        await repository.delete_vm(session, stored.id)
    async with db.read() as session:
        assert (await session.scalars(select(VMGrant))).all() == []
        assert len((await session.scalars(select(UserKey))).all()) == 1


async def test_a_write_after_a_remote_action_waits_briefly_for_the_lock(
    open_database: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another golem holding the write lock: the record of what a provider did
    gives up after RECORD_BUSY_TIMEOUT_MS (here shortened) instead of 30 s."""
    monkeypatch.setattr(engine_module, "RECORD_BUSY_TIMEOUT_MS", 300)
    async with open_database() as holder, open_database() as recorder:
        async with holder.write() as session:
            session.add(a_vm("held"))
            await session.flush()
            started = asyncio.get_running_loop().time()
            with pytest.raises(DatabaseLockedError):
                async with recorder.write(after_remote=True) as other:
                    other.add(a_vm("recorded"))
            waited = asyncio.get_running_loop().time() - started
        assert 0.25 <= waited < 10
        async with recorder.write(after_remote=True) as other:  # free again
            other.add(a_vm("recorded"))
        async with recorder.read() as session:
            names = {vm.name for vm in await repository.list_vms(session)}
    assert names == {"held", "recorded"}
