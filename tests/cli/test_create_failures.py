"""Create never drops a record the provider may still hold, is bounded in time,
says what Ctrl-C kept, and never reports success for a VM that is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import GOLEM, GolemEnv, assert_ok, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(devnet: DevnetThread) -> dict[str, str]:
    return {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}


def _held_names(devnet: DevnetThread, provider_id: str) -> set[str]:
    return {
        vm["name"]
        for summary in devnet.summaries()
        if summary["provider_id"] == provider_id
        for vm in summary["vms"]
    }


def _create(golem_env: GolemEnv, env: dict[str, str], name: str, provider_id: str, *extra: str):  # type: ignore[no-untyped-def]
    return run_golem(
        golem_env, "vm", "create", name, "--provider-id", provider_id, *SMALL_VM, *extra,
        extra_env=env,
    )  # fmt: skip


def test_create_then_500_with_a_clean_up_that_works_keeps_nothing(
    golem_env: GolemEnv, devnet: DevnetThread, env: dict[str, str]
) -> None:
    provider = devnet.providers[0].provider_id
    devnet.set_faults(provider, create_then_fail=True)
    result = _create(golem_env, env, "liar", provider)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # The clean-up DELETE succeeded: the provider confirms nothing is left.
    assert devnet.requests(provider, route="delete")
    assert _held_names(devnet, provider) == set()
    assert "liar" not in db_rows(golem_env.db_path)


def test_create_then_500_with_a_failed_clean_up_keeps_the_record(
    golem_env: GolemEnv, devnet: DevnetThread, env: dict[str, str]
) -> None:
    provider = devnet.providers[0].provider_id
    devnet.set_faults(provider, create_then_fail=True, delete_fails=True)
    result = _create(golem_env, env, "liar", provider)
    assert result.returncode == 1, result.stderr
    error, hint = result.stderr.strip().splitlines()[-2:]
    assert error.startswith("Error: Provider ") and "so liar is kept, as 'error'" in error
    assert hint.startswith("Solution: Run 'golem vm list --refresh'")
    row = db_rows(golem_env.db_path)["liar"]
    assert row["status"] == "error"
    assert "clean-up failed" in row["last_error"]
    assert _held_names(devnet, provider) == {row["provider_vm_name"]}
    # The provider recovers: refresh finds the VM and finishes what create began.
    devnet.clear_faults(provider)
    assert_ok(run_golem(golem_env, "vm", "list", "--refresh", extra_env=env))
    row = db_rows(golem_env.db_path)["liar"]
    assert row["status"] == "running" and row["ssh_port"] is not None


def test_a_provider_that_never_answers_is_found_out_in_seconds(
    golem_env: GolemEnv, devnet: DevnetThread, env: dict[str, str]
) -> None:
    provider = devnet.providers[0].provider_id
    devnet.set_faults(provider, hang=True)
    started = time.monotonic()
    result = _create(golem_env, env, "stuck", provider)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "Error: Provider is no longer available" in result.stderr
    assert elapsed < 15  # the probe (4 s), not the create call (150 s)
    assert not devnet.requests(provider, route="create")  # nothing was sent
    assert "stuck" not in db_rows(golem_env.db_path)


def test_timeout_bounds_the_create_call_and_keeps_the_record(
    golem_env: GolemEnv, devnet: DevnetThread, env: dict[str, str]
) -> None:
    provider = devnet.providers[0].provider_id
    devnet.hold(provider, "POST /vms")
    started = time.monotonic()
    result = _create(golem_env, env, "slowpoke", provider, "--timeout", "2")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "so slowpoke is kept, as 'error'" in result.stderr
    assert elapsed < 15
    row = db_rows(golem_env.db_path)["slowpoke"]
    assert row["status"] == "error" and row["last_error"]
    # The provider goes on with the create it received; refresh records the VM.
    received = devnet.wait_for_request(provider, route="create", vm=row["provider_vm_name"])
    devnet.release(provider)
    devnet.wait_for_request(provider, route="create", after=received.seq - 1, answered=True)
    assert_ok(run_golem(golem_env, "vm", "list", "--refresh", extra_env=env))
    assert db_rows(golem_env.db_path)["slowpoke"]["status"] == "running"


def test_ctrl_c_during_create_says_what_was_kept(
    golem_env: GolemEnv, devnet: DevnetThread, env: dict[str, str]
) -> None:
    provider = devnet.providers[0].provider_id
    devnet.hold(provider, "POST /vms")
    process = subprocess.Popen(
        [str(GOLEM), "vm", "create", "hasty", "--provider-id", provider, *SMALL_VM],
        env={**golem_env.env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        devnet.wait_for_request(provider, route="create", vm=None, timeout=60)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert "Interrupted while the provider was creating hasty" in stderr
    assert "golem vm list --refresh" in stderr and "golem vm destroy hasty" in stderr
    assert db_rows(golem_env.db_path)["hasty"]["status"] == "error"
    devnet.release(provider)


def test_create_never_reports_success_for_a_vm_destroyed_meanwhile(
    golem_env: GolemEnv, devnet: DevnetThread, env: dict[str, str]
) -> None:
    provider = devnet.providers[0].provider_id
    devnet.set_faults(provider, boot_delay_s=60)  # create waits for SSH
    process = subprocess.Popen(
        [str(GOLEM), "vm", "create", "brief", "--provider-id", provider, *SMALL_VM,
         "--wait-timeout", "90"],
        env={**golem_env.env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # The access details were answered: create now waits for SSH.
        devnet.wait_for_request(provider, route="access", answered=True, timeout=60)
        assert_ok(run_golem(golem_env, "vm", "destroy", "brief", "--yes", extra_env=env))
        started = time.monotonic()
        stdout, stderr = process.communicate(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, stderr
    assert "Deployed Successfully" not in stdout
    assert "brief was removed from local state while it was being created" in stderr
    assert elapsed < 15  # noticed at the next SSH attempt, not at --wait-timeout
    assert _held_names(devnet, provider) == set()


@pytest.mark.parametrize("mode", ["non-ascii", "close", "silent"])
def test_garbage_on_the_new_vms_ssh_port_is_the_ssh_error_naming_it(
    golem_env: GolemEnv, devnet: DevnetThread, env: dict[str, str], mode: str
) -> None:
    provider = devnet.providers[0].provider_id
    devnet.set_faults(provider, garbage_ssh=mode)
    result = _create(golem_env, env, "noisy", provider, "--wait-timeout", "2")
    assert result.returncode == 1, result.stderr
    assert "internal error" not in result.stderr.lower()
    assert "Error: Unable to establish SSH connection to VM noisy: its SSH port" in result.stderr
    row = db_rows(golem_env.db_path)["noisy"]  # created: kept, with what went wrong
    assert row["ssh_port"] is not None and "SSH after create" in row["last_error"]
