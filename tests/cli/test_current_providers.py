"""Issue 13: golem against both provider generations side by side on one devnet
(the legacy one and the current one, wire contract "Current provider generation"):
detection, async create with jobs, identity, payment-required providers, stops
that cannot be undone, and prices."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from click.testing import Result

from golem_devnet.current import CurrentOptions, Pricing
from tests.conftest import GOLEM, GolemEnv, assert_ok
from tests.helpers import SMALL_VM, db_rows
from tests.plugins.devnet import DevnetFactory
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(120)

Golem = Callable[..., Result]


@pytest.fixture
def in_background() -> Iterator[Callable[..., Future[Result]]]:
    """Run one golem command on a thread while the test drives the devnet."""
    with ThreadPoolExecutor(max_workers=1) as pool:

        def submit(golem: Golem, *args: str) -> Future[Result]:
            return pool.submit(golem, *args)

        yield submit


def _pair(
    devnet_factory: DevnetFactory, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[DevnetThread, str, str]:
    """One legacy provider and one current provider (the last); golem pointed at it."""
    net = devnet_factory(providers=2, current=1, **options)
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", net.discovery_url)
    legacy, current = net.providers
    return net, legacy.provider_id, current.provider_id


def _error_lines(output: str) -> tuple[str, str]:
    lines = [ln for ln in output.splitlines() if ln.startswith(("Error:", "Solution:"))]
    assert len(lines) == 2, output
    assert "Traceback" not in output
    return lines[0], lines[1]


def _capabilities(golem_env: GolemEnv) -> dict[str, dict[str, Any]]:
    connection = sqlite3.connect(f"file:{golem_env.db_path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute("SELECT * FROM provider_capabilities").fetchall()
    finally:
        connection.close()
    return {row["ip_address"]: dict(row) for row in rows}


def _create(golem: Golem, name: str, provider_id: str, *extra: str) -> Result:
    return golem("vm", "create", name, "--provider-id", provider_id, *SMALL_VM, *extra)


# --- create on each generation -----------------------------------------------------------


def test_create_on_each_generation_takes_its_best_path(
    capfd: pytest.CaptureFixture[str],
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, legacy, current = _pair(devnet_factory, monkeypatch)

    result = _create(golem, "old-one", legacy, "--json")
    assert_ok(result)
    assert json.loads(result.output)["price_per_month"] is None  # no price advertised
    result = _create(golem, "new-one", current, "--json")
    assert_ok(result)
    created = json.loads(result.output)
    pricing = Pricing.for_index(1)
    assert created["price_per_month"] == {
        "usd": pytest.approx(
            pricing.usd_per_core_month
            + pricing.usd_per_gb_ram_month
            + 10 * pricing.usd_per_gb_storage_month
        ),
        "glm": pytest.approx(
            pricing.glm_per_core_month
            + pricing.glm_per_gb_ram_month
            + 10 * pricing.glm_per_gb_storage_month
        ),
    }

    rows = db_rows(golem_env.db_path)
    for name in ("old-one", "new-one"):
        assert rows[name]["status"] == "running"
        assert rows[name]["host_key"].startswith("ssh-ed25519 ")
    # Legacy: a synchronous create, no job. Current: a job was polled until ready.
    assert net.requests(legacy, route="job") == []
    assert [r.status for r in net.requests(legacy, route="create")] == [200]
    assert [r.status for r in net.requests(current, route="create")] == [202]
    jobs = net.requests(current, route="job")
    assert jobs and all(r.status == 200 for r in jobs)
    # What each provider supports is remembered per provider address.
    remembered = _capabilities(golem_env)
    legacy_ip, current_ip = (p.ip_address for p in net.providers)
    assert remembered[legacy_ip]["reported_provider_id"] is None
    assert remembered[legacy_ip]["async_create"] == 0
    assert remembered[current_ip]["reported_provider_id"] == current
    assert (remembered[current_ip]["async_create"], remembered[current_ip]["can_start"]) == (1, 0)

    # Both answer SSH commands (whose output goes to the real stdout, not click's).
    for name in ("old-one", "new-one"):
        capfd.readouterr()
        result = golem("vm", "ssh", name, "--", "echo", "hi-from", name)
        assert_ok(result)
        assert f"hi-from {name}" in capfd.readouterr().out


def test_create_prints_the_price_or_unknown(
    golem: Golem, devnet_factory: DevnetFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _net, legacy, current = _pair(devnet_factory, monkeypatch)
    result = _create(golem, "priced", current)
    assert_ok(result)
    pricing = Pricing.for_index(1)
    usd = (
        pricing.usd_per_core_month
        + pricing.usd_per_gb_ram_month
        + 10 * pricing.usd_per_gb_storage_month
    )
    line = next(ln for ln in result.output.splitlines() if "Price" in ln)
    assert f"{usd:.2f} USD / {usd * 4:.2f} GLM per month" in line
    result = _create(golem, "unpriced", legacy)
    assert_ok(result)
    line = next(ln for ln in result.output.splitlines() if "Price" in ln)
    assert "unknown per month" in line and "0.00" not in line


def test_capabilities_are_not_asked_again_while_known(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, _legacy, current = _pair(devnet_factory, monkeypatch)
    assert_ok(_create(golem, "first", current))
    assert_ok(_create(golem, "second", current))
    assert_ok(golem("vm", "stop", "first", "--yes"))
    # One detection for two creates and a stop.
    assert len(net.requests(current, route="provider_info")) == 1

    # A stale detection is asked again.
    connection = sqlite3.connect(golem_env.db_path)
    with connection:
        connection.execute("UPDATE provider_capabilities SET detected_at = '2000-01-01 00:00:00'")
    connection.close()
    assert_ok(golem("vm", "stop", "second", "--yes"))
    assert len(net.requests(current, route="provider_info")) == 2


def test_failed_job_is_a_clean_error_and_leaves_nothing(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, _legacy, current = _pair(
        devnet_factory, monkeypatch, current_options=CurrentOptions(fail_jobs=True)
    )
    result = _create(golem, "doomed", current)
    assert result.exit_code == 1, result.output
    error, hint = _error_lines(result.output)
    assert f"Provider {current} could not create doomed: Failed to create VM" in error
    assert "Nothing was created" in hint
    assert db_rows(golem_env.db_path) == {}  # the provider made nothing: no record
    assert net.requests(current, route="job")[-1].status == 200
    assert net.requests(current, route="delete") == []


def test_job_progress_then_ssh_port_pending_then_ready(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
    in_background: Callable[..., Future[Result]],
) -> None:
    net, _legacy, current = _pair(
        devnet_factory,
        monkeypatch,
        current_options=CurrentOptions(hold_jobs=True, hold_ssh_proxy=True),
    )
    running = in_background(golem, "vm", "create", "patient", "--provider-id", current, *SMALL_VM)
    # golem polls the job while the provider holds it ...
    first = net.wait_for_request(current, route="job", answered=True)
    net.wait_for_request(current, route="job", after=first.seq, answered=True)
    assert db_rows(golem_env.db_path)["patient"]["status"] == "creating"
    assert net.release_jobs(current)
    # ... then asks for access, which answers 202 until the SSH port exists ...
    pending = net.wait_for_request(current, route="access", answered=True)
    assert pending.status == 202
    net.wait_for_request(current, route="access", after=pending.seq, answered=True)
    assert not running.done()
    net.release_ssh_proxy(current)
    # ... and then finishes as any create does.
    result = running.result(timeout=60)
    assert_ok(result)
    assert "VM Deployed Successfully!" in result.output
    row = db_rows(golem_env.db_path)["patient"]
    assert row["status"] == "running" and row["ssh_port"] and row["host_key"]
    assert net.requests(current, route="access")[-1].status == 200


def test_a_job_that_outlasts_the_wait_timeout_is_left_for_refresh(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, _legacy, current = _pair(
        devnet_factory, monkeypatch, current_options=CurrentOptions(hold_jobs=True)
    )
    result = _create(golem, "slowpoke", current, "--wait-timeout", "1")
    assert result.exit_code == 1, result.output
    error, hint = _error_lines(result.output)
    assert "was still creating the VM" in error
    assert "golem vm list --refresh" in hint
    row = db_rows(golem_env.db_path)["slowpoke"]
    assert row["status"] == "creating" and row["last_error"]

    net.release_jobs(current)
    result = golem("vm", "list", "--refresh", "--json")
    assert_ok(result)
    assert json.loads(result.output)[0]["status"] == "running"
    assert db_rows(golem_env.db_path)["slowpoke"]["ssh_port"]


def test_a_provider_lost_during_its_job_keeps_the_record_for_refresh(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
    in_background: Callable[..., Future[Result]],
) -> None:
    net, _legacy, current = _pair(
        devnet_factory, monkeypatch, current_options=CurrentOptions(hold_jobs=True)
    )
    running = in_background(golem, "vm", "create", "orphan", "--provider-id", current, *SMALL_VM)
    net.wait_for_request(current, route="job", answered=True)
    net.set_faults(current, offline=True)
    result = running.result(timeout=60)
    assert result.exit_code == 1, result.output
    error, hint = _error_lines(result.output)
    assert "it was creating the VM" in error and "golem vm list --refresh" in hint
    row = db_rows(golem_env.db_path)["orphan"]  # accepted: the VM may exist, so kept
    assert row["status"] == "creating" and row["last_error"]

    net.clear_faults(current)
    net.release_jobs(current)
    assert_ok(golem("vm", "list", "--refresh"))
    assert db_rows(golem_env.db_path)["orphan"]["status"] == "running"


# --- identity and payment ------------------------------------------------------------------


def test_identity_mismatch_is_refused_before_anything(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, _legacy, current = _pair(
        devnet_factory,
        monkeypatch,
        current_options=CurrentOptions(provider_info_id="0xsomeone-else"),
    )
    result = _create(golem, "misled", current)
    assert result.exit_code == 1, result.output
    error, hint = _error_lines(result.output)
    assert current in error and "0xsomeone-else" in error
    assert "someone else's provider" in hint
    assert net.requests(current, route="create") == []
    assert db_rows(golem_env.db_path) == {}


def test_the_id_a_provider_reports_is_cleaned_before_it_is_shown(
    golem: Golem, devnet_factory: DevnetFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _net, _legacy, current = _pair(
        devnet_factory,
        monkeypatch,
        current_options=CurrentOptions(provider_info_id="evil\x1b]0;pwned\x07\x1b[2J"),
    )
    result = _create(golem, "misled", current)
    assert result.exit_code == 1, result.output
    error, _hint = _error_lines(result.output)
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "evil\ufffd" in error


def test_payment_required_provider_is_refused_before_the_post(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, legacy, current = _pair(
        devnet_factory, monkeypatch, current_options=CurrentOptions(payments=True)
    )
    result = golem("vm", "providers", "--json")
    assert_ok(result)
    marks = {p["provider_id"]: p["requires_payment"] for p in json.loads(result.output)}
    assert marks == {legacy: False, current: True}
    result = golem("vm", "providers")
    assert_ok(result)
    line = next(ln for ln in result.output.splitlines() if ln.startswith(current))
    assert "required" in line

    result = _create(golem, "unpaid", current)
    assert result.exit_code == 1, result.output
    error, hint = _error_lines(result.output)
    assert "requires a payment stream" in error and current in error
    assert "Choose another provider" in hint and "leave out --provider-id" in hint
    assert net.requests(current, route="create") == []
    assert db_rows(golem_env.db_path) == {}

    # The automatic choice skips it.
    result = golem("vm", "create", "auto", *SMALL_VM)
    assert_ok(result)
    assert db_rows(golem_env.db_path)["auto"]["provider_id"] == legacy
    assert "skipped 1 that require payment" in result.output
    assert net.requests(current, route="create") == []


def test_when_every_provider_requires_payment_the_choice_says_so(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = devnet_factory(providers=1, current=1, current_options=CurrentOptions(payments=True))
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", net.discovery_url)
    result = golem("vm", "create", "nowhere", *SMALL_VM)
    assert result.exit_code == 1, result.output
    error, _hint = _error_lines(result.output)
    assert "Each of the 1 reachable providers that fit requires a payment stream" in error
    assert net.requests(0, route="create") == []
    assert db_rows(golem_env.db_path) == {}


def test_a_payment_refusal_missed_by_detection_is_still_clean(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Payments turned on after golem detected the provider (within the 10 minutes)."""
    net, _legacy, current = _pair(devnet_factory, monkeypatch)
    assert_ok(_create(golem, "before", current))
    net.set_current_options(current, payments=True)
    result = _create(golem, "after", current)
    assert result.exit_code == 1, result.output
    error, _hint = _error_lines(result.output)
    assert "requires a payment stream" in error
    assert set(db_rows(golem_env.db_path)) == {"before"}


# --- stop that cannot be undone ---------------------------------------------------------------


def test_stop_on_a_stop_only_provider_asks_first(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, legacy, current = _pair(devnet_factory, monkeypatch)
    assert_ok(_create(golem, "final", current))
    assert_ok(_create(golem, "undoable", legacy))

    # Not at a terminal and without --yes: refused, nothing stopped.
    result = golem("vm", "stop", "final")
    assert result.exit_code == 2, result.output
    error, hint = _error_lines(result.output)
    assert "final is on a provider that cannot start a stopped VM" in error
    assert "can never run again" in error
    assert "--yes" in hint
    assert net.requests(current, route="stop") == []
    assert db_rows(golem_env.db_path)["final"]["status"] == "running"

    # A legacy provider can start it again: no question.
    assert_ok(golem("vm", "stop", "undoable"))

    result = golem("vm", "stop", "final", "--yes")
    assert_ok(result)
    assert db_rows(golem_env.db_path)["final"]["status"] == "stopped"
    result = golem("vm", "start", "final")
    assert result.exit_code == 1
    assert "cannot start a stopped VM" in result.output


def test_stop_at_a_terminal_asks_and_a_no_stops_nothing(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pexpect

    net, _legacy, current = _pair(devnet_factory, monkeypatch)
    assert_ok(_create(golem, "asked", current))
    env = {**golem_env.env, "GOLEM_REQUESTOR_DISCOVERY_URL": net.discovery_url}

    def stop(answer: str) -> pexpect.spawn:
        child = pexpect.spawn(str(GOLEM), ["vm", "stop", "asked"], env=env, timeout=30)
        child.expect_exact("can never run again. Stop anyway? [y/N]")
        child.sendline(answer)
        child.expect(pexpect.EOF)
        child.close()
        return child

    child = stop("n")
    assert child.exitstatus == 1
    assert b"Nothing stopped." in child.before
    assert net.requests(current, route="stop") == []
    assert db_rows(golem_env.db_path)["asked"]["status"] == "running"

    child = stop("y")
    assert child.exitstatus == 0, child.before
    assert db_rows(golem_env.db_path)["asked"]["status"] == "stopped"


def test_bulk_stop_counts_the_vms_that_could_never_run_again(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, legacy, current = _pair(devnet_factory, monkeypatch)
    for name in ("cur-1", "cur-2"):
        assert_ok(_create(golem, name, current))
    assert_ok(_create(golem, "leg-1", legacy))

    result = golem("vm", "stop", "--all")
    assert result.exit_code == 2, result.output
    error, _hint = _error_lines(result.output)
    assert "2 of the 3 selected VMs (cur-1, cur-2) are on a provider" in error
    assert net.requests(current, route="stop") == [] and net.requests(legacy, route="stop") == []

    result = golem("vm", "stop", "--all", "--yes", "--json")
    assert_ok(result)
    assert {o["name"]: o["status"] for o in json.loads(result.output)} == {
        "cur-1": "stopped",
        "cur-2": "stopped",
        "leg-1": "stopped",
    }


def test_a_missing_start_route_is_remembered_for_the_next_stop(
    golem: Golem, devnet_factory: DevnetFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A legacy provider without the start route: known only once a start failed."""
    net, legacy, _current = _pair(devnet_factory, monkeypatch)
    assert_ok(_create(golem, "one", legacy))
    assert_ok(_create(golem, "two", legacy))
    net.set_faults(legacy, missing_routes=["start"])
    assert_ok(golem("vm", "stop", "one"))
    assert golem("vm", "start", "one").exit_code == 1
    result = golem("vm", "stop", "two")
    assert result.exit_code == 2, result.output
    assert "two is on a provider that cannot start a stopped VM" in result.output


# --- prices and what providers support ----------------------------------------------------------


def test_providers_show_prices_size_price_and_sort(
    golem: Golem, devnet_factory: DevnetFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Providers 02-04 are current; 02 advertises no price.
    unpriced = "devnet-provider-02"
    net = devnet_factory(
        providers=4,
        current=3,
        provider_current_options={unpriced: CurrentOptions(advertise_pricing=False)},
    )
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", net.discovery_url)
    legacy = net.providers[0].provider_id

    result = golem(
        "vm",
        "providers",
        "--cpu",
        "2",
        "--memory",
        "4",
        "--storage",
        "20",
        "--sort",
        "price",
        "--json",
    )
    assert_ok(result)
    rows = json.loads(result.output)
    expected: dict[str, float] = {}
    for index, handle in enumerate(net.providers):
        if handle.provider_id in (legacy, unpriced):
            continue
        p = Pricing.for_index(index)
        expected[handle.provider_id] = (
            2 * p.usd_per_core_month + 4 * p.usd_per_gb_ram_month + 20 * p.usd_per_gb_storage_month
        )
    priced = [r for r in rows if r["size_price"] is not None]
    assert [r["provider_id"] for r in priced] == sorted(expected, key=expected.__getitem__)
    for row in priced:
        assert row["size_price"]["usd"] == pytest.approx(expected[row["provider_id"]])
        assert row["size_price"]["glm"] == pytest.approx(4 * expected[row["provider_id"]])
        assert row["generation"] == "current" and row["can_start_stopped"] is False
    # No price: last, and null (never 0).
    assert {r["provider_id"] for r in rows[-2:]} == {legacy, unpriced}
    for row in rows[-2:]:
        assert row["pricing"] is None and row["size_price"] is None
    by_id = {r["provider_id"]: r for r in rows}
    assert by_id[legacy]["generation"] == "legacy"
    assert by_id[legacy]["can_start_stopped"] is None

    result = golem("vm", "providers", "--cpu", "2", "--memory", "4", "--storage", "20")
    assert_ok(result)
    assert "Size/month: 2 CPU, 4GB RAM, 20GB Storage." in result.output
    lines = result.output.splitlines()
    cheapest = min(expected, key=expected.__getitem__)
    at = next(i for i, ln in enumerate(lines) if ln.startswith(cheapest))
    # Two lines per priced provider: USD, then GLM.
    assert f"{expected[cheapest]:.2f} USD" in lines[at]
    assert f"{4 * expected[cheapest]:.2f} GLM" in lines[at + 1]
    line = next(ln for ln in lines if ln.startswith(legacy))
    assert line.count("unknown") == 2 and "0.00" not in line

    # A terminal too narrow for one table gets two, with every id whole.
    args = ("vm", "providers", "--cpu", "2", "--memory", "4", "--storage", "20")
    result = golem(*args, env={"COLUMNS": "80"})
    assert_ok(result)
    assert max(len(ln) for ln in result.output.splitlines() if ln.startswith("devnet")) <= 80
    lines = result.output.splitlines()
    for handle in net.providers:
        assert [ln for ln in lines if ln.startswith(handle.provider_id + " ")], result.output
    at = next(i for i, ln in enumerate(lines) if ln.startswith("Provider ID") and "Price" in ln)
    assert f"{expected[cheapest]:.2f} USD" in "\n".join(lines[at:])


def test_sort_keys_offered_are_the_rankings_there_are() -> None:
    from requestor.cli.vm import PROVIDER_SORT_KEYS
    from requestor.services.provider_search import SORT_KEYS

    assert tuple(SORT_KEYS) == PROVIDER_SORT_KEYS


def test_info_says_whether_the_provider_can_start_the_vm_again(
    golem_env: GolemEnv,
    golem: Golem,
    devnet_factory: DevnetFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _net, legacy, current = _pair(devnet_factory, monkeypatch)
    assert_ok(_create(golem, "old-one", legacy))
    assert_ok(_create(golem, "new-one", current))

    new = golem("vm", "info", "new-one", "--json")
    assert_ok(new)
    assert json.loads(new.output)["can_start_stopped"] is False
    old = golem("vm", "info", "old-one", "--json")
    assert_ok(old)
    assert json.loads(old.output)["can_start_stopped"] is None  # legacy: not known
    table = golem("vm", "info", "new-one")
    assert_ok(table)
    assert "cannot start a stopped VM (a stop is final)" in table.output
