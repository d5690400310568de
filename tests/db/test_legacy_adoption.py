"""A vms.db from the earlier requestor is adopted on first open: every row becomes a
VM of the new schema or is kept aside with a reason, and the original table is kept
untouched as ``legacy_vms``."""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from requestor.db.engine import Database
from requestor.db.migrate import HEAD_REVISION, KNOWN_REVISIONS
from requestor.db.models import VM, LegacyRejectedVM, VMStatus
from tests.db import alembic, make_legacy_db, query, tables


def config(**values: Any) -> str:
    return json.dumps(values)


GOOD = [
    (
        "web",
        "10.0.0.1",
        "vm-web",
        config(cpu=2, memory=4, storage=20, ssh_port=50800),
        "running",
        "2024-05-06 07:08:09",
    ),
    (
        "db",
        "10.0.0.2",
        "vm-db",
        config(cpu=1, memory=1, storage=10),
        "stopped",
        "2024-01-02T03:04:05+02:00",
    ),
    (
        "gpu box",
        "10.0.0.1",
        "vm-gpu",
        config(cpu=8, memory=32, storage=200, ssh_port=22, extra="ignored"),
        "creating",
        None,
    ),
    (
        "floaty",
        "10.0.0.3",
        "vm-f",
        config(cpu=2.0, memory=3, storage=10.0),
        "running",
        "2023-12-31 23:59:59",
    ),
    (
        "odd-status",
        "10.0.0.3",
        "vm-o",
        config(cpu=1, memory=1, storage=5),
        "hibernating",
        "2024-02-03 04:05:06",
    ),
]
# name -> (row, a word the reason must contain)
BAD = {
    "not-json": (("not-json", "10.0.0.9", "vm-1", "{cpu: 1", "running", None), "JSON"),
    "json-list": (("json-list", "10.0.0.9", "vm-2", "[1, 2, 3]", "running", None), "object"),
    "no-cpu": (
        ("no-cpu", "10.0.0.9", "vm-3", config(memory=1, storage=10), "running", None),
        "cpu",
    ),
    "neg-memory": (
        ("neg-memory", "10.0.0.9", "vm-4", config(cpu=1, memory=-2, storage=10), "running", None),
        "memory",
    ),
    "zero-storage": (
        ("zero-storage", "10.0.0.9", "vm-5", config(cpu=1, memory=1, storage=0), "running", None),
        "storage",
    ),
    "half-memory": (
        ("half-memory", "10.0.0.9", "vm-6", config(cpu=1, memory=1.5, storage=9), "running", None),
        "memory",
    ),
    "inf-cpu": (
        (
            "inf-cpu",
            "10.0.0.9",
            "vm-7",
            '{"cpu": Infinity, "memory": 1, "storage": 1}',
            "running",
            None,
        ),
        "cpu",
    ),
    "bool-cpu": (
        ("bool-cpu", "10.0.0.9", "vm-8", config(cpu=True, memory=1, storage=1), "running", None),
        "cpu",
    ),
    "huge-cpu": (
        ("huge-cpu", "10.0.0.9", "vm-9", config(cpu=10**30, memory=1, storage=1), "running", None),
        "cpu",
    ),
    "str-port": (
        (
            "str-port",
            "10.0.0.9",
            "vm-10",
            config(cpu=1, memory=1, storage=1, ssh_port="22"),
            "running",
            None,
        ),
        "ssh_port",
    ),
    "big-port": (
        (
            "big-port",
            "10.0.0.9",
            "vm-11",
            config(cpu=1, memory=1, storage=1, ssh_port=70000),
            "running",
            None,
        ),
        "ssh_port",
    ),
    "": (("", "10.0.0.9", "vm-12", config(cpu=1, memory=1, storage=1), "running", None), "name"),
    "no-ip": (
        ("no-ip", " ", "vm-13", config(cpu=1, memory=1, storage=1), "running", None),
        "provider_ip",
    ),
    "dup-key": (
        ("dup-key", "10.0.0.1", "vm-web", config(cpu=1, memory=1, storage=1), "running", None),
        "same provider_ip and vm_id",
    ),
}


def expected_created(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    parsed = datetime.fromisoformat(raw)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def assert_adopted_as(vm: VM, row: tuple[Any, ...]) -> None:
    name, provider_ip, vm_id, raw_config, status, created = row
    values = json.loads(raw_config)
    assert vm.name == name
    assert vm.provider_ip == provider_ip
    assert vm.provider_vm_name == vm_id
    assert (vm.cpu, vm.memory, vm.storage) == (values["cpu"], values["memory"], values["storage"])
    assert vm.ssh_port == values.get("ssh_port")
    assert vm.provider_id is None
    if status in {s.value for s in VMStatus}:
        assert vm.status == VMStatus(status)
        assert vm.last_error is None
    else:
        assert vm.status is VMStatus.ERROR
        assert vm.last_error is not None and repr(status) in vm.last_error
    if created is not None:
        assert vm.created_at == expected_created(created)
    assert vm.created_at.tzinfo is not None


async def read_all(path: Path) -> tuple[list[VM], list[LegacyRejectedVM]]:
    async with Database(path) as db, db.read() as session:
        vms = list((await session.scalars(select(VM).order_by(VM.id))).all())
        rejected = list(
            (await session.scalars(select(LegacyRejectedVM).order_by(LegacyRejectedVM.id))).all()
        )
    return vms, rejected


async def test_legacy_rows_are_adopted_or_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "vms.db"
    bad_rows = [row for row, _word in BAD.values()]
    original = make_legacy_db(path, [*GOOD[:2], *bad_rows[:7], *GOOD[2:], *bad_rows[7:]])
    legacy_info = query(path, "PRAGMA table_info(vms)")

    vms, rejected = await read_all(path)

    assert query(path, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert len(vms) + len(rejected) == len(original)
    by_name = {vm.name: vm for vm in vms}
    assert set(by_name) == {row[0] for row in GOOD}
    for row in GOOD:
        assert_adopted_as(by_name[row[0]], row)

    assert [r.name for r in rejected] == [row[0] for row in bad_rows]  # in legacy order
    for record in rejected:
        row, word = BAD[record.name or ""]
        assert (record.name, record.provider_ip, record.vm_id, record.config, record.status) == (
            row[:5]
        )
        assert word in record.reason, (record.name, record.reason)

    # The original table is kept, untouched, under its new name.
    assert query(path, "SELECT rowid, * FROM legacy_vms ORDER BY rowid") == original
    assert query(path, "PRAGMA table_info(legacy_vms)") == legacy_info


async def test_adopted_vms_are_usable_and_not_adopted_twice(tmp_path: Path) -> None:
    path = tmp_path / "vms.db"
    make_legacy_db(path, GOOD)
    vms, _ = await read_all(path)
    async with Database(path) as db, db.write() as session:
        web = await session.scalar(select(VM).where(VM.name == "web"))
        assert web is not None
        web.status = VMStatus.STOPPED
    again, _ = await read_all(path)  # reopening does not adopt anything again
    assert [vm.name for vm in again] == [vm.name for vm in vms]
    assert {vm.name: vm.status for vm in again}["web"] is VMStatus.STOPPED


async def test_downgrade_and_upgrade_again_keeps_adopted_vms_as_they_are(tmp_path: Path) -> None:
    """0002 -> 0001 -> 0002 after adoption: no duplicate adoption, no failure."""
    path = tmp_path / "vms.db"
    make_legacy_db(path, [*GOOD, BAD["not-json"][0]])
    await read_all(path)
    async with Database(path) as db, db.write() as session:
        web = await session.scalar(select(VM).where(VM.name == "web"))
        assert web is not None
        web.host_key = "ssh-ed25519 AAAApinned"
    before = query(path, "SELECT * FROM vms ORDER BY id")

    await alembic(path, "downgrade", KNOWN_REVISIONS[-2])
    vms, rejected = await read_all(path)

    assert query(path, "SELECT * FROM vms ORDER BY id") == before
    assert {vm.name: vm.host_key for vm in vms}["web"] == "ssh-ed25519 AAAApinned"
    assert [r.name for r in rejected] == ["not-json"]


async def test_downgrade_to_base_gives_back_the_legacy_table(tmp_path: Path) -> None:
    path = tmp_path / "vms.db"
    original = make_legacy_db(path, [*GOOD, BAD["no-cpu"][0]])
    info = query(path, "PRAGMA table_info(vms)")
    await read_all(path)
    assert "legacy_vms" in tables(path)

    await alembic(path, "downgrade", "base")

    assert tables(path) == {"alembic_version", "vms"}
    assert query(path, "PRAGMA table_info(vms)") == info
    assert query(path, "SELECT rowid, * FROM vms ORDER BY rowid") == original


async def test_a_legacy_db_without_rows_is_adopted_too(tmp_path: Path) -> None:
    path = tmp_path / "vms.db"
    make_legacy_db(path, [])
    vms, rejected = await read_all(path)
    assert (vms, rejected) == ([], [])
    assert tables(path) == {
        "alembic_version",
        "providers",
        "vms",
        "legacy_vms",
        "legacy_rejected_vms",
        "provider_capabilities",
        "user_keys",
        "vm_grants",
    }


# --- property: nothing is lost, nothing is changed -----------------------------------

_good_numbers = st.integers(min_value=1, max_value=4096)
_bad_numbers = st.one_of(
    st.integers(min_value=-3, max_value=0),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not f.is_integer()),
    st.sampled_from([math.inf, -math.inf, math.nan, 1.5, 2.0, 0.0]),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
_bad_ports = st.one_of(st.integers(max_value=0), st.integers(min_value=65536), _bad_numbers)


@st.composite
def legacy_config(draw: st.DrawFn) -> tuple[str, bool]:
    """A config as text, and whether it is certainly adoptable."""
    kind = draw(st.sampled_from(["good", "bad-value", "missing", "text"]))
    if kind == "text":
        return draw(st.text(max_size=20) | st.sampled_from(["[]", "null", "1", '"x"'])), False
    values: dict[str, Any] = {key: draw(_good_numbers) for key in ("cpu", "memory", "storage")}
    if draw(st.booleans()):
        values["ssh_port"] = draw(st.integers(1, 65535))
    if kind == "bad-value":
        key = draw(st.sampled_from(["cpu", "memory", "storage", "ssh_port"]))
        values[key] = draw(_bad_ports if key == "ssh_port" else _bad_numbers)
    elif kind == "missing":
        del values[draw(st.sampled_from(["cpu", "memory", "storage"]))]
    return json.dumps(values), kind == "good"


@st.composite
def legacy_rows(draw: st.DrawFn) -> list[tuple[tuple[Any, ...], bool]]:
    count = draw(st.integers(min_value=0, max_value=12))
    names = draw(
        st.lists(st.text(min_size=0, max_size=8), min_size=count, max_size=count, unique=True)
    )
    rows = []
    for name in names:
        raw_config, good = draw(legacy_config())
        ip = draw(st.sampled_from(["10.0.0.1", "10.0.0.2", "", "  ", "::1"]))
        vm_id = draw(st.sampled_from(["vm-a", "vm-b", "vm-c", ""]) | st.text(max_size=6))
        status = draw(st.sampled_from(["running", "stopped", "deleted", "weird"]))
        created = draw(st.none() | st.sampled_from(["2024-05-06 07:08:09", "yesterday", ""]))
        certain = good and bool(name.strip()) and bool(ip.strip()) and bool(vm_id.strip())
        rows.append(((name, ip, vm_id, raw_config, status, created), certain))
    return rows


def _numbers_equal(adopted: int, legacy: Any) -> bool:
    return (
        not isinstance(legacy, bool)
        and isinstance(legacy, int | float)
        and math.isfinite(legacy)
        and adopted == legacy
    )


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(legacy_rows())
def test_property_every_legacy_row_is_adopted_unchanged_or_kept_aside(
    generated: list[tuple[tuple[Any, ...], bool]],
) -> None:
    rows = [row for row, _certain in generated]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "vms.db"
        original = make_legacy_db(path, rows)
        vms, rejected = asyncio.run(read_all(path))
        assert query(path, "SELECT rowid, * FROM legacy_vms ORDER BY rowid") == original

    assert len(vms) + len(rejected) == len(rows)
    by_name = {row[0]: row for row in rows}
    adopted_names = {vm.name for vm in vms}
    assert len(adopted_names) == len(vms)
    for vm in vms:
        name, ip, vm_id, raw_config, status, created = by_name[vm.name]
        values = json.loads(raw_config)
        assert (vm.provider_ip, vm.provider_vm_name) == (ip, vm_id)
        for key in ("cpu", "memory", "storage"):
            assert _numbers_equal(getattr(vm, key), values[key]), (key, values)
        assert vm.ssh_port == values.get("ssh_port")
        if status == "weird":
            assert vm.status is VMStatus.ERROR and "weird" in (vm.last_error or "")
        else:
            assert vm.status == VMStatus(status)
        if created == "2024-05-06 07:08:09":
            assert vm.created_at == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    # A rejected row is the legacy row verbatim, with a reason.
    for record in rejected:
        assert record.reason
        as_stored = (
            record.name,
            record.provider_ip,
            record.vm_id,
            record.config,
            record.status,
            record.created_at,
        )
        assert as_stored in {tuple(row[1:]) for row in original}
        assert record.name not in adopted_names
    # A well-formed row is never rejected, unless its (provider_ip, vm_id) came earlier.
    seen: set[tuple[str, str]] = set()
    for (name, ip, vm_id, *_rest), certain in generated:
        if certain and (ip, vm_id) not in seen:
            assert name in adopted_names, name
        seen.add((ip, vm_id))
