"""Crash trials: SIGKILL golem at seeded random moments of create, destroy and
`stop --all` against providers with latency, then check that `list --refresh`
(and `adopt` where needed) leaves every VM a provider holds known locally and
every local record explained by what its provider says.

The kill moment is random (drawn from the trial's seed: after the provider has
received its k-th request of the command, or after a delay); every check is
deterministic, because it runs only once every request the provider received
has been carried out. GOLEM_CRASH_TRIALS=500 runs more (default 24: the
seeds 1000-1023 draw every kill point, which a test below checks);
GOLEM_CRASH_SEED moves the seeds; GOLEM_CRASH_REPORT=FILE writes the figures as
JSON. A failing trial prints its seed: `-k 'trial[SEED]'` runs it alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from golem_devnet.faults import Faults
from golem_devnet.network import Devnet
from requestor.settings import load_settings
from tests.conftest import GOLEM, NETGUARD_DIR, REPO
from tests.helpers import SMALL_VM, db_rows
from tests.support.fleet import create_fleet
from tests.support.threaded import DevnetThread

DEFAULT_TRIALS = 24
TRIALS = int(os.environ.get("GOLEM_CRASH_TRIALS", str(DEFAULT_TRIALS)))
DEFAULT_FIRST_SEED = 1000
FIRST_SEED = int(os.environ.get("GOLEM_CRASH_SEED", str(DEFAULT_FIRST_SEED)))
SCENARIOS = ("create", "destroy", "stop")
# Each request waits this long at the provider: room for a kill between
# "received" and "answered".
LATENCY_MS = 60
# Which request of each command a kill may follow (the routes in the order the
# command sends them).
KILL_ROUTES = {"create": ("create", "access"), "destroy": ("delete",), "stop": ("stop",)}

pytestmark = pytest.mark.timeout(120)


@dataclass
class Figures:
    trials: int = 0
    leftovers_found: int = 0  # records whose state a crash left untrue, and orphans
    leftovers_resolved: int = 0
    orphans_adopted: int = 0
    by_scenario: dict[str, int] = field(default_factory=dict)


@dataclass
class Bench:
    net: DevnetThread
    home: Path
    env: dict[str, str]
    figures: Figures

    @property
    def db_path(self) -> Path:
        return self.home / ".golem" / "vms.db"

    def golem(self, *args: str) -> Any:
        """In-process, for the steps after the crash (faster than a process)."""
        from requestor.cli.main import cli

        result = CliRunner().invoke(cli, list(args), env=self.env, catch_exceptions=False)
        return result


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    root = tmp_path_factory.mktemp("crash")
    home = root / "home"
    home.mkdir()
    with DevnetThread(
        root / "devnet", providers=3, faults=Faults(latency_ms=LATENCY_MS), capacity_scale=4
    ) as net:
        env = {
            "HOME": str(home),
            "GOLEM_REQUESTOR_BASE_DIR": str(home / ".golem"),
            "GOLEM_REQUESTOR_DISCOVERY_URL": net.discovery_url,
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "TERM": "dumb",
        }
        figures = Figures()
        yield Bench(net, home, env, figures)
    summary = (
        f"crash trials: {figures.trials} (seeds {FIRST_SEED}..{FIRST_SEED + TRIALS - 1}), "
        f"leftovers found {figures.leftovers_found}, resolved {figures.leftovers_resolved}, "
        f"orphans adopted {figures.orphans_adopted}, by scenario {figures.by_scenario}"
    )
    print("\n" + summary, file=sys.stderr)
    report = os.environ.get("GOLEM_CRASH_REPORT")
    if report:
        Path(report).write_text(json.dumps(figures.__dict__, indent=2))


def _process_env(bench: Bench) -> dict[str, str]:
    return {
        **os.environ,
        **bench.env,
        "GOLEM_TEST_NETGUARD": "1",
        "PYTHONPATH": os.pathsep.join([str(NETGUARD_DIR), str(REPO)]),
    }


def _last_seq(net: DevnetThread) -> dict[str, int]:
    return {
        p.provider_id: max((r.seq for r in net.requests(p.provider_id)), default=0)
        for p in net.providers
    }


def _wait_all_answered(net: DevnetThread, since: dict[str, int]) -> None:
    """Every request a provider received since ``since`` has been carried out."""

    def settled(devnet: Devnet) -> bool:
        return all(
            record.status is not None
            for provider_id, seq in since.items()
            for record in devnet.node(provider_id).requests
            if record.seq > seq
        )

    net.wait_until(settled, timeout=60)


def _held(net: DevnetThread) -> dict[tuple[str, str], str]:
    return {
        (summary["provider_id"], vm["name"]): vm["status"]
        for summary in net.summaries()
        for vm in summary["vms"]
        if vm["status"] != "deleted"
    }


def _untrue(records: dict[str, dict[str, Any]], held: dict[tuple[str, str], str]) -> list[str]:
    """Records whose state is not what the provider says (gone = it holds none)."""
    wrong = []
    for name, row in records.items():
        truth = held.get((row["provider_id"], row["provider_vm_name"]), "gone")
        if row["status"] != truth:
            wrong.append(name)
    return wrong


def _reset(bench: Bench) -> None:
    """A clean slate for the next trial: no VMs at the providers, no records."""

    async def delete_all(devnet: Devnet) -> None:
        for provider in bench.net.providers:
            node = devnet.node(provider.provider_id)
            for vm in [*node.vms.values(), *node.orphans]:
                await node.delete_vm(vm)
            node.orphans.clear()

    bench.net.run(delete_all)
    if bench.db_path.exists():
        connection = sqlite3.connect(bench.db_path)
        try:
            with connection:
                connection.execute("DELETE FROM vms")
        finally:
            connection.close()


@dataclass(frozen=True)
class Plan:
    """What one trial does, drawn from its seed alone."""

    scenario: str
    create_on: int  # create: the index of the provider it names
    count: int  # destroy and stop: VMs made before the command
    route: str  # the route whose nth request the kill follows...
    after_request: bool  # ...or else a delay after the start
    nth: int
    delay: float

    @property
    def kill_point(self) -> tuple[str, str]:
        return (self.scenario, self.route if self.after_request else "delay")


def plan(seed: int, providers: int = 3) -> Plan:
    rng = random.Random(seed)
    scenario = rng.choice(SCENARIOS)
    create_on = count = 0
    if scenario == "create":
        create_on = rng.randrange(providers)
    else:
        count = rng.randint(1, 4)
    route = rng.choice(KILL_ROUTES[scenario])
    after_request = rng.random() < 0.7  # else: after a random delay
    # create sends one request per route; destroy and stop one per VM.
    nth = 1 if scenario == "create" else rng.randint(1, count)
    delay = rng.uniform(0.0, 1.2)
    return Plan(scenario, create_on, count, route, after_request, nth, delay)


def test_the_default_trials_draw_every_kill_point() -> None:
    """The default run (the one `make test` does) is short; this keeps it covering
    every kind of kill: each command killed after each of its routes' requests and
    after a delay, and destroy and stop killed after the last of their requests and
    after an earlier one."""
    plans = [plan(seed) for seed in range(DEFAULT_FIRST_SEED, DEFAULT_FIRST_SEED + DEFAULT_TRIALS)]
    every = {(scenario, route) for scenario in SCENARIOS for route in KILL_ROUTES[scenario]}
    every |= {(scenario, "delay") for scenario in SCENARIOS}
    assert {p.kill_point for p in plans} == every
    for scenario in ("destroy", "stop"):
        kills = [p for p in plans if p.scenario == scenario and p.after_request]
        assert any(p.nth == p.count for p in kills), scenario
        assert any(p.nth < p.count for p in kills), scenario


@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + TRIALS), ids=str)
def test_trial(bench: Bench, seed: int) -> None:
    trial = plan(seed)
    scenario, route, nth, delay = trial.scenario, trial.route, trial.nth, trial.delay
    net = bench.net
    providers = [p.provider_id for p in net.providers]
    _reset(bench)
    prefix = f"t{seed}"
    if scenario == "create":
        args = ["vm", "create", f"{prefix}-new", "--provider-id", providers[trial.create_on],
                *SMALL_VM, "--wait-timeout", "20"]  # fmt: skip
    else:
        asyncio.run(create_fleet(load_settings(bench.env), providers, trial.count, prefix=prefix))
        args = ["vm", scenario, "--all"] + (["--yes"] if scenario == "destroy" else [])
    moment = f"request {nth} on route {route}" if trial.after_request else f"{delay:.3f} s"
    print(f"seed {seed}: {scenario}, kill after {moment}")

    since = _last_seq(net)
    process = subprocess.Popen(
        [str(GOLEM), *args],
        env=_process_env(bench),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if trial.after_request:
            _wait_for_nth(net, since, route, nth)
        else:
            time.sleep(delay)  # the kill moment itself is what is random here
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    _wait_all_answered(net, since)

    held = _held(net)
    before = db_rows(bench.db_path)
    found = len(_untrue(before, held))

    listed = bench.golem("vm", "list", "--refresh", "--json")
    assert listed.exit_code in (0, 1, 3), listed.output
    orphans = [row for row in json.loads(listed.stdout) if row["status"] == "orphan"]
    found += len(orphans)
    for index, orphan in enumerate(orphans):
        adopted = bench.golem(
            "vm", "adopt", orphan["provider_vm_name"], "--name", f"{prefix}-adopted-{index}"
        )
        assert adopted.exit_code == 0, adopted.output
    after = db_rows(bench.db_path)
    # Every VM a provider holds is known locally...
    known = {(row["provider_id"], row["provider_vm_name"]) for row in after.values()}
    assert set(held) <= known, (seed, set(held) - known)
    # ...and every record says what its provider says.
    assert _untrue(after, held) == [], (seed, {n: after[n]["status"] for n in after})

    figures = bench.figures
    figures.trials += 1
    figures.leftovers_found += found
    figures.leftovers_resolved += found  # the asserts above: each one resolved
    figures.orphans_adopted += len(orphans)
    figures.by_scenario[scenario] = figures.by_scenario.get(scenario, 0) + 1


def _wait_for_nth(net: DevnetThread, since: dict[str, int], route: str, nth: int) -> None:
    """Until the providers together have received ``nth`` requests on ``route``."""

    def received(devnet: Devnet) -> bool:
        count = sum(
            1
            for provider_id, seq in since.items()
            for record in devnet.node(provider_id).requests
            if record.seq > seq and record.route == route
        )
        return count >= nth

    net.wait_until(received, timeout=60)
