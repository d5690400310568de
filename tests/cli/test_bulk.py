"""Bulk operations on a fleet: 200 VMs on 20 devnet providers.

One fleet serves the whole module per backend (creating 200 VMs is the expensive
part); each test states the fleet's state it starts from and brings it there
itself. The tests that exercise the database run on both backends (the local
SQLite file, a shared PostgreSQL database); the others on SQLite only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from golem_devnet.network import Devnet
from golem_devnet.provider import RequestRecord
from requestor.settings import load_settings
from tests.conftest import GOLEM, NETGUARD_DIR, REPO
from tests.helpers import state_rows
from tests.support.fleet import create_fleet
from tests.support.postgres import PostgresServer
from tests.support.threaded import DevnetThread

PROVIDERS, VMS = 20, 200
SQLITE_ONLY = pytest.mark.parametrize("fleet", ["sqlite"], indirect=True)


@dataclass
class Fleet:
    devnet: DevnetThread
    env: dict[str, str]
    database: Path | str  # the SQLite file, or the PostgreSQL URL
    names: list[str]

    def golem(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(GOLEM), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def truth(self) -> dict[str, str]:
        """Each VM's status as its provider holds it, by provider-side name."""
        return {vm["name"]: vm["status"] for s in self.devnet.summaries() for vm in s["vms"]}

    def local(self) -> dict[str, str]:
        """Each VM's status in our database, by provider-side name."""
        return {row["provider_vm_name"]: row["status"] for row in self.rows().values()}

    def rows(self) -> dict[str, dict[str, Any]]:
        return state_rows(self.database)

    def provider_of(self, name: str) -> str:
        return str(self.rows()[name]["provider_id"])

    def reset(self, status: str = "running") -> None:
        self.devnet.clear_faults()
        result = self.golem("vm", "start" if status == "running" else "stop", "--all")
        assert result.returncode == 0, result.stdout + result.stderr
        assert set(self.local().values()) == {status}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    home = tmp / "home"
    home.mkdir()
    database: Path | str = home / ".golem" / "vms.db"
    shared: dict[str, str] = {}
    server: PostgresServer | None = None
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        name = server.create_database()
        database = server.url(name)
        shared["GOLEM_REQUESTOR_DATABASE_URL"] = database
    devnet = DevnetThread(tmp / "devnet", PROVIDERS, capacity_scale=4).start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GOLEM_REQUESTOR_")},
        "HOME": str(home),
        "GOLEM_REQUESTOR_BASE_DIR": str(home / ".golem"),
        "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url,
        **shared,
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "TERM": "dumb",
        "GOLEM_TEST_NETGUARD": "1",
        "PYTHONPATH": os.pathsep.join([str(NETGUARD_DIR), str(REPO)]),
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HOME", str(home))  # the SSH key must not come from the real ~/.ssh
            ids = [p.provider_id for p in devnet.providers]
            names = asyncio.run(create_fleet(load_settings(env), ids, VMS))
        yield Fleet(devnet, env, database, names)
    finally:
        devnet.stop()
        if server is not None:
            server.drop_database(name)


@SQLITE_ONLY  # the failure paths record alike on both; ~20 s saved on PostgreSQL
def test_stop_all_with_faulty_providers(fleet: Fleet) -> None:
    fleet.reset("running")
    offline, hanging, failing = (p.provider_id for p in fleet.devnet.providers[:3])
    fleet.devnet.set_faults(offline, offline=True)
    fleet.devnet.set_faults(hanging, hang=True)
    fleet.devnet.set_faults(failing, error_rate=1.0)

    result = fleet.golem("vm", "stop", "--all", "--timeout", "2", "--json")
    assert result.returncode == 3, result.stderr  # partly failed
    outcomes = {o["name"]: o for o in json.loads(result.stdout)}
    assert set(outcomes) == set(fleet.names)
    failed = {n for n, o in outcomes.items() if not o["ok"]}
    bad_providers = {offline, hanging, failing}
    assert failed == {n for n in fleet.names if fleet.provider_of(n) in bad_providers}
    assert len(failed) == 3 * VMS // PROVIDERS
    reasons = {fleet.provider_of(n): outcomes[n]["error"] for n in failed}
    assert "no longer available" in reasons[offline]
    assert "answer within 2 s" in reasons[hanging]
    assert "HTTP 500" in reasons[failing] and "Injected fault" in reasons[failing]
    # The database matches each provider's truth: stopped where it worked, else running.
    assert fleet.local() == fleet.truth()
    assert sum(1 for s in fleet.local().values() if s == "stopped") == VMS - len(failed)

    # Faults gone: a second stop --all finishes the job; stopped ones count as done.
    fleet.devnet.clear_faults()
    result = fleet.golem("vm", "stop", "--all", "--json")
    assert result.returncode == 0, result.stderr
    assert all(o["ok"] for o in json.loads(result.stdout))
    assert set(fleet.local().values()) == {"stopped"} == set(fleet.truth().values())


@SQLITE_ONLY
def test_selection_by_glob_names_and_provider(fleet: Fleet) -> None:
    fleet.reset("stopped")
    result = fleet.golem("vm", "start", "vm-00*", "vm-150")
    assert result.returncode == 0, result.stderr
    assert "11 started" in result.stdout
    started = {n for n, row in fleet.rows().items() if row["status"] == "running"}
    assert started == {f"vm-00{i}" for i in range(10)} | {"vm-150"}

    provider = fleet.devnet.providers[7].provider_id
    result = fleet.golem("vm", "start", "--provider", provider, "--json")
    assert result.returncode == 0
    chosen = {o["name"] for o in json.loads(result.stdout)}
    assert chosen == {n for n in fleet.names if fleet.provider_of(n) == provider}
    assert fleet.local() == fleet.truth()

    # A typo changes nothing.
    before = fleet.local()
    result = fleet.golem("vm", "stop", "vm-001", "no-such-vm")
    assert result.returncode == 2 and "VM not found in local database: no-such-vm" in result.stderr
    result = fleet.golem("vm", "stop", "web-*")
    assert result.returncode == 2 and "no VM matches 'web-*'" in result.stderr
    assert fleet.local() == before


def test_many_processes_at_once_on_one_database(fleet: Fleet) -> None:
    fleet.reset("running")
    commands = [
        ("vm", "stop", "vm-0[0-4]*"),
        ("vm", "stop", "vm-0[5-9]*"),
        ("vm", "stop", "vm-1[0-4]*"),
        ("vm", "list", "--refresh"),
        ("vm", "list"),
        ("vm", "stop", "vm-1[5-9]*"),
    ]
    processes = [
        subprocess.Popen(
            [str(GOLEM), *c],
            env=fleet.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    for command, process in zip(commands, processes, strict=True):
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"{command}: {err}"
        assert "locked" not in err
    assert set(fleet.truth().values()) == {"stopped"}
    # list --refresh ran alongside: a final refresh settles any status it read mid-way.
    assert fleet.golem("vm", "list", "--refresh").returncode == 0
    assert fleet.local() == fleet.truth()


def _stops_since(net: Devnet, marks: dict[str, int], *, answered: bool) -> list[RequestRecord]:
    """Stop requests the providers received after ``marks`` (provider id -> last seq
    before): answered ones, or ones still held. Runs on the devnet's thread."""
    return [
        dataclasses.replace(record)
        for node in net.nodes
        for record in node.requests
        if record.seq > marks.get(node.provider_id, 0)
        and record.route == "stop"
        and (record.status is not None) == answered
    ]


def test_ctrl_c_halfway_leaves_a_consistent_database(fleet: Fleet) -> None:
    fleet.reset("running")
    net = fleet.devnet
    marks = {
        p.provider_id: max((r.seq for r in net.requests(p.provider_id)), default=0)
        for p in net.providers
    }

    async def stops(devnet: Devnet, answered: bool) -> list[RequestRecord]:
        return _stops_since(devnet, marks, answered=answered)

    # Half the providers hold their stop route: golem's 20 slots end up all taken
    # by stops parked there, while the stops at the other half are answered.
    # (The fleet is round-robin, so the first 20 VMs golem takes span all providers.)
    held = {p.provider_id for p in net.providers[PROVIDERS // 2 :]}
    for provider_id in held:
        net.hold(provider_id, "stop")
    process = subprocess.Popen(
        [str(GOLEM), "vm", "stop", "--all", "--concurrency", "20"],
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    net.wait_until(lambda d: len(_stops_since(d, marks, answered=False)) == 20, timeout=60)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "(interrupted)" in out and "cancelled" in out
    assert "Traceback" not in err

    parked = net.run(lambda d: stops(d, answered=False))
    answered = {r.vm for r in net.run(lambda d: stops(d, answered=True))}
    assert len(parked) == 20
    local, truth = fleet.local(), fleet.truth()
    stopped_locally = {n for n, s in local.items() if s == "stopped"}
    # Recorded as stopped: exactly the VMs whose stop a provider answered, none held.
    assert 0 < len(stopped_locally) <= VMS - len(parked)
    assert stopped_locally == answered
    assert not stopped_locally & {r.vm for r in parked}
    # What was printed as done is exactly what the database recorded as stopped.
    printed = {
        line.split()[0]: line.split()[2] for line in out.splitlines() if line.startswith("vm-")
    }
    assert len(printed) == VMS
    by_local_name = {name: row["provider_vm_name"] for name, row in fleet.rows().items()}
    assert {by_local_name[n] for n, r in printed.items() if r == "done"} == stopped_locally
    # Nothing half-written: a VM recorded as stopped is stopped at its provider.
    assert all(truth[n] == "stopped" for n in stopped_locally)
    assert set(local.values()) <= {"running", "stopped"}

    # The held stops were sent before golem died: released, the providers carry
    # them out with nobody listening. Once all are answered, a refresh settles them.
    parked_seqs = {(r.vm, r.seq) for r in parked}
    net.clear_faults()
    net.wait_until(
        lambda d: parked_seqs <= {(r.vm, r.seq) for r in _stops_since(d, marks, answered=True)},
        timeout=60,
    )
    assert all(fleet.truth()[r.vm or ""] == "stopped" for r in parked)
    assert fleet.golem("vm", "list", "--refresh").returncode == 0
    assert fleet.local() == fleet.truth()


def test_destroy_all_asks_with_the_count_then_destroys(fleet: Fleet) -> None:
    fleet.devnet.clear_faults()
    result = fleet.golem("vm", "destroy", "--all")  # stdin is not a terminal
    assert result.returncode == 2
    assert f"Refusing to destroy {VMS} VM(s)" in result.stderr
    assert len(fleet.local()) == VMS

    result = fleet.golem("vm", "destroy", "--all", "--yes")
    assert result.returncode == 0, result.stderr
    assert f"destroy: {VMS} destroyed of {VMS}" in result.stdout
    assert fleet.local() == {} and fleet.truth() == {}


def test_more_vms_on_one_provider_than_it_gets_connections(tmp_path: Path) -> None:
    """40 VMs on one slow provider: calls queue for its 10 connections, and the time a
    call waits for its turn does not count against its timeout."""
    home = tmp_path / "home"
    home.mkdir()
    with DevnetThread(tmp_path / "devnet", 1, capacity_scale=10) as devnet:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GOLEM_REQUESTOR_")},
            "HOME": str(home),
            "GOLEM_REQUESTOR_BASE_DIR": str(home / ".golem"),
            "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url,
            "NO_COLOR": "1",
            "GOLEM_TEST_NETGUARD": "1",
            "PYTHONPATH": os.pathsep.join([str(NETGUARD_DIR), str(REPO)]),
        }
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HOME", str(home))
            asyncio.run(create_fleet(load_settings(env), [devnet.providers[0].provider_id], 40))
        devnet.set_all_faults(latency_ms=1000)
        result = subprocess.run(
            [str(GOLEM), "vm", "stop", "--all", "--timeout", "3", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
        assert all(o["ok"] for o in json.loads(result.stdout))
