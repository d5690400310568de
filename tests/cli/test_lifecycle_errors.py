"""Every error of the lifecycle commands: triggered through a devnet fault or bad
input, checking the message, the hint, the exit code, and the local state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import GOLEM, GolemEnv, assert_ok, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread


@pytest.fixture
def env(devnet: DevnetThread, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", devnet.discovery_url)
    return {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}


def _error_lines(output: str) -> tuple[str, str]:
    lines = [ln for ln in output.splitlines() if ln.startswith(("Error:", "Solution:"))]
    assert len(lines) == 2, output
    assert "Traceback" not in output
    return lines[0], lines[1]


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (("Bad-Name", *SMALL_VM), "only lowercase letters"),
        (("ab", *SMALL_VM), "3 to 64 characters"),
        (("a" * 65, *SMALL_VM), "3 to 64 characters"),
        (("my--vm", *SMALL_VM), "must not contain '--'"),
        (("vm-", *SMALL_VM), "only lowercase letters"),
        (("vm1", "--cpu", "3", "--memory", "1", "--storage", "10"), "Invalid --cpu 3"),
        (("vm1", "--cpu", "1", "--memory", "3", "--storage", "10"), "Invalid --memory 3"),
        (("vm1", "--cpu", "1", "--memory", "1", "--storage", "9"), "at least 10 GB"),
    ],
)
def test_invalid_input_is_refused_before_anything(
    golem_env: GolemEnv,
    golem,
    env,  # type: ignore[no-untyped-def]
    args: tuple[str, ...],
    rule: str,
) -> None:
    result = golem("vm", "create", *args)
    assert result.exit_code == 2, result.output
    error, hint = _error_lines(result.output)
    assert rule in error
    assert hint.startswith("Solution: ")
    assert not golem_env.db_path.exists()  # nothing changed, not even a database


def test_vm_not_found(golem_env: GolemEnv, golem, env) -> None:  # type: ignore[no-untyped-def]
    hint = "The VM may have been manually removed. Use 'golem vm list' to see available VMs."
    for command in ("stop", "start", "destroy", "forget"):
        yes = ("--yes",) if command in ("destroy", "forget") else ()
        result = golem("vm", command, "nope", *yes)
        # A selection that matches nothing is bad input, as an unmatched glob is.
        assert result.exit_code == 2, result.output
        error, solution = _error_lines(result.output)
        assert error == "Error: VM not found in local database: nope"
        assert solution == f"Solution: {hint}"
        # --json: the same error as one JSON object on stderr, nothing on stdout.
        result = golem("vm", command, "nope", *yes, "--json")
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert json.loads(result.stderr) == {
            "error": {
                "code": "nothing_matched",
                "exit_code": 2,
                "message": "VM not found in local database: nope",
                "hint": hint,
            }
        }


def test_provider_gone_offline(golem_env: GolemEnv, devnet: DevnetThread, golem, env) -> None:  # type: ignore[no-untyped-def]
    provider = devnet.providers[0]
    assert_ok(golem("vm", "create", "vm1", "--provider-id", provider.provider_id, *SMALL_VM))
    before = db_rows(golem_env.db_path)
    devnet.set_faults(provider.provider_id, offline=True)
    result = golem("vm", "stop", "vm1")
    assert result.exit_code == 1
    error, hint = _error_lines(result.output)
    assert error.startswith("Error: Provider is no longer available (they may have gone offline)")
    assert provider.provider_id in error
    assert hint == (
        "Solution: Choose a different provider or wait for the original to come back online."
    )
    after = db_rows(golem_env.db_path)
    assert after["vm1"]["status"] == before["vm1"]["status"] == "running"


def test_ssh_not_reachable_yet(golem_env: GolemEnv, devnet: DevnetThread, golem, env) -> None:  # type: ignore[no-untyped-def]
    provider = devnet.providers[0]
    devnet.set_faults(provider.provider_id, boot_delay_s=30)
    result = golem(
        "vm",
        "create",
        "slow",
        "--provider-id",
        provider.provider_id,
        *SMALL_VM,
        "--wait-timeout",
        "1.5",
    )
    assert result.exit_code == 1, result.output
    error, hint = _error_lines(result.output)
    assert error.startswith("Error: Unable to establish SSH connection (VM may be starting up)")
    assert hint == (
        "Solution: Wait a few moments and try again. The VM is likely still initializing."
    )
    # The VM exists at the provider, so it is kept, with what we know.
    row = db_rows(golem_env.db_path)["slow"]
    assert row["ssh_port"] is not None and row["host_key"] is None
    assert "SSH did not answer" in row["last_error"]


def test_discovery_unreachable(
    golem_env: GolemEnv,
    golem,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", "http://127.0.0.1:9")
    for args in (("vm", "providers"), ("vm", "create", "vm1", *SMALL_VM)):
        result = golem(*args)
        assert result.exit_code == 1
        error, hint = _error_lines(result.output)
        assert "Discovery service at http://127.0.0.1:9 is unreachable" in error
        assert "GOLEM_REQUESTOR_DISCOVERY_URL" in hint
    assert db_rows(golem_env.db_path) == {}


def test_provider_refuses_create(golem_env: GolemEnv, devnet: DevnetThread, golem, env) -> None:  # type: ignore[no-untyped-def]
    provider = devnet.providers[0]
    devnet.set_faults(provider.provider_id, error_rate=1.0)
    result = golem("vm", "create", "vm1", "--provider-id", provider.provider_id, *SMALL_VM)
    assert result.exit_code == 1
    error, _hint = _error_lines(result.output)
    assert f"Provider {provider.provider_id} refused to create the VM (HTTP 500" in error
    assert "Injected fault" in error
    # A 500 may come after the provider made the VM, and the clean-up DELETE failed
    # too (every answer is a 500): the record stays, as 'error', with the reason.
    assert "so vm1 is kept, as 'error'" in error
    row = db_rows(golem_env.db_path)["vm1"]
    assert row["status"] == "error" and "clean-up failed" in row["last_error"]
    # Once the provider answers again, the clean-up is confirmed and it is gone.
    devnet.clear_faults(provider.provider_id)
    assert_ok(golem("vm", "destroy", "vm1", "--yes"))
    assert db_rows(golem_env.db_path) == {}


def test_insufficient_resources(golem_env: GolemEnv, devnet: DevnetThread, golem, env) -> None:  # type: ignore[no-untyped-def]
    provider = min(devnet.providers, key=lambda p: p.cpu)
    too_many = next(c for c in (1, 2, 4, 8, 16) if c > provider.cpu)
    result = golem(
        "vm",
        "create",
        "big",
        "--provider-id",
        provider.provider_id,
        "--cpu",
        str(too_many),
        "--memory",
        "1",
        "--storage",
        "10",
    )
    assert result.exit_code == 1
    error, hint = _error_lines(result.output)
    assert f"has {provider.cpu} CPU" in error and f"asked for {too_many} CPU" in error
    assert "fewer resources" in hint
    assert db_rows(golem_env.db_path) == {}


def test_name_taken(golem_env: GolemEnv, devnet: DevnetThread, golem, env) -> None:  # type: ignore[no-untyped-def]
    assert_ok(golem("vm", "create", "twin", *SMALL_VM))
    before = db_rows(golem_env.db_path)
    result = golem("vm", "create", "twin", *SMALL_VM)
    assert result.exit_code == 2
    error, _hint = _error_lines(result.output)
    assert error == "Error: A VM named twin already exists"
    assert db_rows(golem_env.db_path) == before
    assert sum(len(s["vms"]) for s in devnet.summaries()) == 1


def test_provider_without_start_route(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,  # type: ignore[no-untyped-def]
    env,
) -> None:
    provider = devnet.providers[0]
    assert_ok(golem("vm", "create", "vm1", "--provider-id", provider.provider_id, *SMALL_VM))
    assert_ok(golem("vm", "stop", "vm1"))
    devnet.set_faults(provider.provider_id, missing_routes=["start"])
    result = golem("vm", "start", "vm1")
    assert result.exit_code == 1
    error, hint = _error_lines(result.output)
    assert "cannot start a VM" in error
    assert "This provider cannot start a stopped VM" in hint
    assert db_rows(golem_env.db_path)["vm1"]["status"] == "stopped"


@pytest.mark.parametrize("fault", ["malformed_json", "oversized_body"])
def test_unusable_provider_answer(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
    fault: str,
) -> None:
    provider = devnet.providers[0]
    assert_ok(golem("vm", "create", "vm1", "--provider-id", provider.provider_id, *SMALL_VM))
    devnet.set_faults(provider.provider_id, **{fault: True})
    result = golem("vm", "stop", "vm1")
    assert result.exit_code == 1
    error, _hint = _error_lines(result.output)
    assert f"Provider {provider.provider_id} sent an unusable answer" in error
    assert db_rows(golem_env.db_path)["vm1"]["status"] == "running"


def test_hostile_provider_text_is_escaped() -> None:
    """Markup and escape sequences a provider sends are shown inert, never interpreted."""
    import io

    from rich.console import Console

    from requestor.cli.render import providers
    from requestor.services.provider_search import ProviderListing, ProviderView
    from requestor.wire.models import Advertisement

    hostile = "evil[/][link=http://x]\x1b]8;;http://x\x07click\x1b[2J\u202e"
    ad = Advertisement.model_validate(
        {
            "provider_id": hostile,
            "ip_address": "127.0.0.1",
            "country": "S\x1bE",
            "resources": {"cpu": 1, "memory": 1, "storage": 10},
        }
    )
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False, color_system=None)
    providers(console, ProviderListing([ProviderView(ad, False, None, hostile)], []))
    shown = buffer.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "evil[/][link=http://x]" in shown  # markup printed literally


@pytest.mark.parametrize("provider_creates_it", [True, False], ids=["released", "held"])
def test_crash_during_create_is_resolved_by_refresh(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    env: dict[str, str],
    provider_creates_it: bool,
) -> None:
    """golem dies after the provider has received the create and before it answers.

    The provider holds POST /vms, so the kill lands in exactly that window. Released,
    the provider creates the VM after golem is gone (refresh: running); held, it
    never does (refresh: gone).
    """
    provider = devnet.providers[0]
    devnet.hold(provider.provider_id, "POST /vms")
    process = subprocess.Popen(
        [str(GOLEM), "vm", "create", "crashy", "--provider-id", provider.provider_id, *SMALL_VM],
        env={**golem_env.env, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        received = devnet.wait_for_request(provider.provider_id, route="POST /vms", timeout=60)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=10)
    row = db_rows(golem_env.db_path)["crashy"]
    assert row["status"] == "creating"
    assert received.vm == row["provider_vm_name"] and received.status is None

    def provider_holds() -> bool:
        return any(
            vm["name"] == row["provider_vm_name"] for s in devnet.summaries() for vm in s["vms"]
        )

    if provider_creates_it:
        devnet.release(provider.provider_id)
        created = devnet.wait_for_request(
            provider.provider_id, route="create", after=received.seq - 1, answered=True
        )
        assert (created.seq, created.status) == (received.seq, 200)
        assert provider_holds()
    else:
        assert not provider_holds()  # still parked: the VM does not exist
    result = run_golem(golem_env, "vm", "list", "--refresh", "--json", extra_env=env)
    assert_ok(result)
    resolved = db_rows(golem_env.db_path)["crashy"]
    if provider_creates_it:
        assert resolved["status"] == "running"
        assert resolved["ssh_port"] is not None
    else:
        assert not provider_holds()
        assert resolved["status"] == "gone"
    # The create was sent once: golem died, nothing sent it again.
    assert len(devnet.requests(provider.provider_id, route="create")) == 1


def test_a_hanging_provider_does_not_block_the_provider_list(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
) -> None:
    hung = devnet.providers[0].provider_id
    devnet.set_faults(hung, hang=True)
    started = time.monotonic()
    result = golem("vm", "providers", "--json")
    elapsed = time.monotonic() - started
    assert_ok(result)
    listed = {p["provider_id"]: p for p in json.loads(result.output)}
    assert listed[hung]["reachable"] is False and "within" in listed[hung]["error"]
    assert all(listed[p.provider_id]["reachable"] for p in devnet.providers[1:])
    assert elapsed < 15  # the probe timeout (4 s) bounds it; a hang would never end


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_timeouts_must_be_finite(golem_env: GolemEnv, golem, value: str) -> None:  # type: ignore[no-untyped-def]
    for args in (
        ("vm", "create", "vm1", *SMALL_VM, "--wait-timeout", value),
        ("vm", "stop", "--all", "--timeout", value),
        ("vm", "ssh", "vm1", "--wait-timeout", value),
    ):
        result = golem(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "--wait-timeout" in result.output or "--timeout" in result.output
    assert not golem_env.db_path.exists()


def test_unknown_provider_id(golem_env: GolemEnv, golem, env) -> None:  # type: ignore[no-untyped-def]
    result = golem("vm", "create", "vm1", "--provider-id", "no-such-provider", *SMALL_VM)
    assert result.exit_code == 1
    error, hint = _error_lines(result.output)
    assert error == "Error: Provider no-such-provider is not advertised on the discovery service"
    assert "golem vm providers" in hint
    assert db_rows(golem_env.db_path) == {}


def test_create_on_an_offline_provider_leaves_nothing(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
) -> None:
    provider = devnet.providers[0]
    devnet.set_faults(provider.provider_id, offline=True)
    result = golem("vm", "create", "vm1", "--provider-id", provider.provider_id, *SMALL_VM)
    assert result.exit_code == 1
    error, hint = _error_lines(result.output)
    assert error.startswith("Error: Provider is no longer available (they may have gone offline)")
    assert hint.startswith("Solution: Choose a different provider")
    # The request never reached the provider: the local record is gone again.
    assert db_rows(golem_env.db_path) == {}
    assert all(not s["vms"] for s in devnet.summaries())
