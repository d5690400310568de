"""Two machines sharing one PostgreSQL database act on each VM once.

Two golem installations (base directories with their own SSH keys, users alice
and bob) share a fresh database on the suite's PostgreSQL server and a devnet of
40 VMs that alice created. Both run ``golem vm stop --all`` at once; the devnet's
request log says how often each VM was really stopped.

One fleet serves the module (creating 40 VMs is the expensive part); each test
brings it to the state it starts from.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from golem_devnet.network import Devnet
from requestor.errors import ExitCode
from requestor.settings import load_settings
from tests.conftest import GOLEM, NETGUARD_DIR, REPO
from tests.helpers import SMALL_VM
from tests.support.fleet import create_fleet
from tests.support.postgres import PostgresServer
from tests.support.threaded import DevnetThread

PROVIDERS, VMS = 4, 40
# At most this many VMs in flight per machine: with the stop route held, both
# machines' first calls are parked there at once only if neither can take them all.
IN_FLIGHT = 10
HOST = socket.gethostname()


@dataclass
class Machine:
    """One golem installation: its own base directory, SSH key and user."""

    user: str
    env: dict[str, str]

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(GOLEM), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def golem(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(GOLEM), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def vms(self) -> dict[str, dict[str, Any]]:
        """The shared state as ``vm list --json`` shows it, by name."""
        result = self.golem("vm", "list", "--json")
        assert result.returncode == 0, result.stderr
        return {vm["name"]: vm for vm in json.loads(result.stdout)}


@dataclass
class Team:
    devnet: DevnetThread
    alice: Machine
    bob: Machine
    names: list[str]

    def stop_calls(self) -> Counter[str]:
        """How many stop requests each VM (by provider-side name) has received."""
        return Counter(
            record.vm
            for p in self.devnet.providers
            for record in self.devnet.requests(p.provider_id, route="stop")
            if record.vm is not None
        )

    def start_all(self) -> None:
        result = self.alice.golem("vm", "start", "--all")
        assert result.returncode == 0, result.stdout + result.stderr


def _machine(tmp: Path, user: str, devnet: DevnetThread, url: str) -> Machine:
    home = tmp / user
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GOLEM_REQUESTOR_")},
        "HOME": str(home),
        "GOLEM_REQUESTOR_BASE_DIR": str(home / ".golem"),
        "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url,
        "GOLEM_REQUESTOR_DATABASE_URL": url,
        "GOLEM_REQUESTOR_USER": user,
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "TERM": "dumb",
        "GOLEM_TEST_NETGUARD": "1",
        "PYTHONPATH": os.pathsep.join([str(NETGUARD_DIR), str(REPO)]),
    }
    return Machine(user, env)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, pg_server: PostgresServer) -> Iterator[Team]:
    tmp = tmp_path_factory.mktemp("team")
    database = pg_server.create_database()
    devnet = DevnetThread(tmp / "devnet", PROVIDERS, capacity_scale=4).start()
    try:
        url = pg_server.url(database)
        alice = _machine(tmp, "alice", devnet, url)
        bob = _machine(tmp, "bob", devnet, url)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HOME", alice.env["HOME"])  # alice's key, not the real ~/.ssh
            ids = [p.provider_id for p in devnet.providers]
            names = asyncio.run(create_fleet(load_settings(alice.env), ids, VMS))
        yield Team(devnet, alice, bob, names)
    finally:
        devnet.stop()
        pg_server.drop_database(database)


def _report(process: subprocess.Popen[str]) -> dict[str, dict[str, Any]]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return {outcome["name"]: outcome for outcome in json.loads(out)}


def test_two_machines_stopping_everything_at_once_stop_each_vm_once(team: Team) -> None:
    team.start_all()
    before = team.stop_calls()
    net = team.devnet
    for provider in net.providers:
        net.hold(provider.provider_id, "stop")
    stop = ("vm", "stop", "--all", "--yes", "--json", "--concurrency", str(IN_FLIGHT))
    alice, bob = team.alice.start(*stop), team.bob.start(*stop)
    try:
        # Each machine has at most IN_FLIGHT stops out: twice that many parked
        # means both are in the middle of their stop --all.
        net.wait_until(
            lambda devnet: _held_stops(devnet) >= 2 * IN_FLIGHT,
            timeout=60,
        )
    finally:
        for provider in net.providers:
            net.release(provider.provider_id, "stop")
    reports = {"alice": _report(alice), "bob": _report(bob)}

    calls = team.stop_calls() - before
    vms = team.alice.vms()
    provider_names = {name: vm["provider_vm_name"] for name, vm in vms.items()}
    assert {provider_names[name]: calls[provider_names[name]] for name in team.names} == {
        provider_names[name]: 1 for name in team.names
    }
    # Together the two reports account for every VM: done by one machine, handled
    # elsewhere (by that one, or while it was at it) in the other.
    for report in reports.values():
        assert set(report) == set(team.names)
    done_by: dict[str, str] = {}
    for name in team.names:
        results = {user: reports[user][name]["result"] for user in reports}
        assert sorted(results.values()) == ["done", "handled_elsewhere"], (name, results)
        doer = next(user for user, result in results.items() if result == "done")
        done_by[name] = doer
        other = reports["bob" if doer == "alice" else "alice"][name]
        assert other["ok"] is True
        assert other["handled_by"] in (None, f"{doer}@{HOST}")
        # What the shared database says: stopped, by the machine that did it.
        assert vms[name]["status"] == "stopped"
        assert vms[name]["last_actor"] == f"{doer}@{HOST}"
        assert vms[name]["last_action"] == "stop"
    # Both machines did some of the work.
    assert set(done_by.values()) == {"alice", "bob"}


def _held_stops(devnet: Devnet) -> int:
    """Stop requests logged and not answered yet (parked by the hold fault)."""
    return sum(
        1
        for node in devnet.nodes
        for record in node.requests
        if record.route == "stop" and record.status is None
    )


def test_a_machine_that_comes_after_the_other_finished_stops_nothing_again(team: Team) -> None:
    team.start_all()
    before = team.stop_calls()
    first = team.alice.golem("vm", "stop", "--all", "--yes", "--json")
    assert first.returncode == 0, first.stderr
    assert {o["result"] for o in json.loads(first.stdout)} == {"done"}

    second = team.bob.golem("vm", "stop", "--all", "--yes", "--json")
    assert second.returncode == 0, second.stderr
    outcomes = json.loads(second.stdout)
    assert len(outcomes) == VMS
    assert {(o["result"], o["handled_by"], o["status"]) for o in outcomes} == {
        ("handled_elsewhere", f"alice@{HOST}", "stopped")
    }
    # The same machine again: it was already so, by its own doing.
    again = team.alice.golem("vm", "stop", "--all", "--yes")
    assert again.returncode == 0, again.stderr
    assert f"stop: {VMS} stopped of {VMS}" in again.stdout
    # Bob's table and summary say who did it.
    table = team.bob.golem("vm", "stop", "--all", "--yes")
    assert f"stop: 0 stopped, {VMS} handled elsewhere of {VMS}" in table.stdout
    assert f"stopped by alice@{HOST}" in table.stdout
    one = team.bob.golem("vm", "stop", "vm-000")
    assert one.returncode == 0, one.stderr
    assert f"✓ vm-000: handled elsewhere (stopped by alice@{HOST})" in one.stdout

    calls = team.stop_calls() - before
    assert sorted(calls.values()) == [1] * VMS


def test_two_machines_creating_one_name_at_once_post_it_once(team: Team) -> None:
    net = team.devnet
    provider = net.providers[0].provider_id
    net.hold(provider, "create")
    create = ("vm", "create", "shared-name", *SMALL_VM, "--provider", provider)
    alice, bob = team.alice.start(*create), team.bob.start(*create)
    try:
        posted = net.wait_for_request(provider, route="create", timeout=60)
        # The loser fails on the name alone, while the winner's POST is parked.
        finished = _first_to_exit(alice, bob)
        out, err = finished.communicate(timeout=60)
        assert finished.returncode == ExitCode.USAGE, out + err
        assert "Error: A VM named shared-name already exists" in err
    finally:
        net.release(provider, "create")
    winner = bob if finished is alice else alice
    out, err = winner.communicate(timeout=120)
    assert winner.returncode == 0, out + err
    creates = [r for r in net.requests(provider, route="create") if r.vm == posted.vm]
    assert len(creates) == 1
    assert [r.vm for r in net.requests(provider, route="create")].count(posted.vm) == 1
    result = team.alice.golem("vm", "destroy", "shared-name", "--yes")
    assert result.returncode == 0, result.stderr


def _first_to_exit(*processes: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """The process that exits first (a waiting thread per process: no polling)."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(len(processes))
    try:
        waits = {pool.submit(p.wait, 60): p for p in processes}
        done, _ = wait(waits, timeout=60, return_when=FIRST_COMPLETED)
        assert done, "neither process exited"
        return waits[next(iter(done))]
    finally:
        # The other one's wait ends when it exits (or times out): not awaited here.
        pool.shutdown(wait=False)


def test_a_refresh_under_way_never_makes_a_stop_skip_the_vm(team: Team) -> None:
    team.start_all()
    net = team.devnet
    vm = team.alice.vms()["vm-000"]
    provider = vm["provider_id"]
    net.hold(provider, "get")
    refresh = team.alice.start("vm", "list", "vm-000", "--refresh", "--json")
    try:
        net.wait_for_request(provider, route="get", vm=vm["provider_vm_name"], timeout=60)
        # Alice's refresh is asking the provider about vm-000 right now.
        stop = team.bob.golem("vm", "stop", "vm-000", "--json")
        assert stop.returncode == 0, stop.stderr
        assert json.loads(stop.stdout)[0]["result"] == "done"
    finally:
        net.release(provider, "get")
    _out, err = refresh.communicate(timeout=60)
    assert refresh.returncode == 0, err
    stored = team.alice.vms()["vm-000"]
    assert (stored["status"], stored["last_actor"]) == ("stopped", f"bob@{HOST}")
