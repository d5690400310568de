"""Several VMs in one ``golem vm create``: names checked first, spread over the
providers that fit, created concurrently, a result per VM, exit 0 / 3 / 1."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable

from golem_devnet.network import Devnet
from tests.conftest import GOLEM, GolemEnv, assert_ok, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread

LATENCY_MS = 300


def _use(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url


def _creates(devnet: Devnet, ids: list[str], answered: bool | None = None) -> int:
    return sum(
        1
        for provider_id in ids
        for record in devnet.requests(provider_id)
        if record.route == "create"
        and (answered is None or (record.status is not None) == answered)
    )


def test_posts_of_several_creates_overlap(
    golem_env: GolemEnv, devnet_factory: Callable[..., DevnetThread]
) -> None:
    """Every create is held at the provider: a one-at-a-time create would never
    send the second POST, so all twelve arriving together proves they overlap."""
    devnet = devnet_factory(3, capacity_scale=3)
    _use(golem_env, devnet)
    for handle in devnet.providers:
        devnet.hold(handle.provider_id, "POST /vms")
    process = subprocess.Popen(
        [str(GOLEM), "vm", "create", "web", "--count", "12", *SMALL_VM, "--json"],
        env=golem_env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ids = [h.provider_id for h in devnet.providers]
        devnet.wait_until(lambda d: _creates(d, ids) == 12, timeout=60)
        assert devnet.run(lambda d: _async(_creates(d, ids, answered=True))) == 0
        # Each VM is recorded before its POST.
        assert sorted(db_rows(golem_env.db_path)) == sorted(f"web-{i}" for i in range(1, 13))
        for handle in devnet.providers:
            devnet.release(handle.provider_id, "POST /vms")
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    entries = json.loads(out)
    assert [e["name"] for e in entries] == [f"web-{i}" for i in range(1, 13)]
    assert all(e["ok"] and e["status"] == "running" for e in entries)
    # Spread: no provider got them all, and each fit (the devnet refuses what does not).
    spread = Counter(e["provider_id"] for e in entries)
    assert len(spread) > 1, spread


async def _async(value: int) -> int:
    return value


def test_twelve_creates_take_far_less_than_twelve_single_ones(
    golem_env: GolemEnv, devnet_factory: Callable[..., DevnetThread]
) -> None:
    devnet = devnet_factory(3, capacity_scale=3)
    _use(golem_env, devnet)
    devnet.set_all_faults(latency_ms=LATENCY_MS)

    started = time.perf_counter()
    assert_ok(run_golem(golem_env, "vm", "create", "single", *SMALL_VM, timeout=120))
    single = time.perf_counter() - started

    started = time.perf_counter()
    result = run_golem(golem_env, "vm", "create", "web", "--count", "12", *SMALL_VM, timeout=120)
    batch = time.perf_counter() - started
    assert_ok(result)
    # Off a terminal: what it waits for, then a line per VM, on stderr.
    assert "Looking for a provider that fits…" in result.stderr.splitlines()
    assert "Creating 12 VMs on" in result.stderr
    for index in range(1, 13):
        assert f"web-{index}: created on " in result.stderr
        assert f"web-{index} " in result.stdout  # the table's row
    assert "create: 12 created of 12" in result.stdout
    # A single create makes several provider calls one after another, each
    # delayed LATENCY_MS; twelve in a row would take twelve times that.
    assert batch < 12 * single / 3, (batch, single)


def test_names_are_checked_before_anything_is_created(
    golem_env: GolemEnv, devnet: DevnetThread
) -> None:
    _use(golem_env, devnet)
    assert_ok(run_golem(golem_env, "vm", "create", "taken", *SMALL_VM))
    before = _count_creates(devnet)

    bad = run_golem(golem_env, "vm", "create", "ok-1", "Bad_Name!", *SMALL_VM)
    assert bad.returncode == 2, bad.stderr
    assert "Solution:" in bad.stderr

    taken = run_golem(golem_env, "vm", "create", "ok-1", "taken", *SMALL_VM)
    assert taken.returncode == 2, taken.stderr
    assert "taken" in taken.stderr and "nothing was created" in taken.stderr

    twice = run_golem(golem_env, "vm", "create", "ok-1", "ok-1", *SMALL_VM)
    assert twice.returncode == 2
    assert "given twice" in twice.stderr

    count_with_two = run_golem(golem_env, "vm", "create", "a", "b", "--count", "2", *SMALL_VM)
    assert count_with_two.returncode == 2
    assert "--count takes exactly one NAME" in count_with_two.stderr

    too_many = run_golem(
        golem_env,
        "vm",
        "create",
        "big",
        "--count",
        "3",
        "--provider-id",
        devnet.providers[0].provider_id,
        "--cpu",
        str(devnet.providers[0].cpu),
        "--memory",
        "1",
        "--storage",
        "10",
    )
    assert too_many.returncode != 0
    assert "has room for" in too_many.stderr and "nothing was created" in too_many.stderr
    assert "Traceback" not in too_many.stderr

    assert set(db_rows(golem_env.db_path)) == {"taken"}
    assert _count_creates(devnet) == before


def _count_creates(devnet: DevnetThread) -> int:
    return sum(len(devnet.requests(h.provider_id, route="POST /vms")) for h in devnet.providers)


def test_partial_failure_exits_3_with_a_result_per_vm(
    golem_env: GolemEnv, devnet_factory: Callable[..., DevnetThread]
) -> None:
    devnet = devnet_factory(2)
    _use(golem_env, devnet)
    broken, healthy = devnet.providers
    # It answers probes, but has no create route: every VM placed on it fails.
    devnet.set_faults(broken.provider_id, missing_routes=["create"])
    # As many VMs as both hold together, so both get some.
    count = sum(min(h.cpu, h.memory, h.storage // 10) for h in devnet.providers)
    result = run_golem(
        golem_env, "vm", "create", "p", "--count", str(count), *SMALL_VM, "--json", timeout=120
    )
    assert result.returncode == 3, result.stderr
    entries = json.loads(result.stdout)
    assert [e["name"] for e in entries] == [f"p-{i}" for i in range(1, count + 1)]
    failed = [e for e in entries if not e["ok"]]
    created = [e for e in entries if e["ok"]]
    assert failed and created
    assert {e["provider_id"] for e in failed} == {broken.provider_id}
    assert {e["provider_id"] for e in created} == {healthy.provider_id}
    assert all(e["error"] for e in failed)
    assert all(e["status"] == "running" for e in created)

    # The healthy provider is full: two more go to the broken one, and both fail.
    table = run_golem(golem_env, "vm", "create", "qqq", "rrr", *SMALL_VM, timeout=120)
    assert table.returncode == 1, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
    assert "failed" in rows["qqq"] and broken.provider_id in rows["qqq"]
    assert "failed" in rows["rrr"]
    assert "create: 0 created, 2 failed of 2" in table.stdout
    assert "Traceback" not in table.stderr
