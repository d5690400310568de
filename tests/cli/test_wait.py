"""``golem vm wait SELECTOR --for ssh|running|stopped [--timeout S]`` against the
devnet: a slow-booting VM, a stopped VM. Run as subprocesses with stderr a pipe:
every wait says on stderr what it waits for."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from golem_devnet.faults import Faults
from tests.conftest import GOLEM, GolemEnv, assert_ok, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread

BOOT_DELAY_S = 15.0


def test_wait_for_ssh_on_a_slow_booting_vm(
    golem_env: GolemEnv, devnet_factory: Callable[..., DevnetThread]
) -> None:
    devnet = devnet_factory(1, faults=Faults(boot_delay_s=BOOT_DELAY_S))
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url
    # create gives up on SSH at once; the VM is recorded with its address.
    created = run_golem(golem_env, "vm", "create", "slow-vm", *SMALL_VM, "--wait-timeout", "0")
    assert created.returncode == 1, created.stderr
    assert db_rows(golem_env.db_path)["slow-vm"]["ssh_port"] is not None

    # The VM boots BOOT_DELAY_S after its create: one second is not enough.
    early = run_golem(golem_env, "vm", "wait", "slow-vm", "--for", "ssh", "--timeout", "1")
    assert early.returncode == 1, early.stderr
    assert "Waiting up to 1 s for 1 VM(s) to accept SSH (a command runs): slow-vm" in early.stderr
    assert "Error: 1 of 1 VM(s) did not reach 'ssh' within 1 s: slow-vm" in (early.stderr)
    assert "Solution:" in early.stderr

    # Started in the background, it says at once what it waits for, and returns
    # once the VM's SSH runs a command.
    process = subprocess.Popen(
        [str(GOLEM), "vm", "wait", "slow-*", "--for", "ssh", "--timeout", "120"],
        env=golem_env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first.startswith("Waiting up to 120 s for 1 VM(s) to accept SSH"), first
        out, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, rest
    assert "slow-vm: ssh after " in rest
    assert out == ""
    # SSH runs a command now.
    assert_ok(run_golem(golem_env, "vm", "ssh", "slow-vm", "--no-wait", "--", "true"))


def test_wait_on_a_stopped_vm(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url
    assert_ok(run_golem(golem_env, "vm", "create", "idle-vm", *SMALL_VM))
    assert_ok(run_golem(golem_env, "vm", "stop", "idle-vm"))

    # Already there: it returns after one question to the provider, far before
    # the subprocess timeout, although --timeout allows longer.
    stopped = run_golem(
        golem_env, "vm", "wait", "idle-vm", "--for", "stopped", "--timeout", "600", timeout=60
    )
    assert_ok(stopped)
    assert "idle-vm: stopped after " in stopped.stderr

    running = run_golem(golem_env, "vm", "wait", "idle-vm", "--for", "running", "--timeout", "2")
    assert running.returncode == 1
    assert "Waiting up to 2 s for 1 VM(s) to be running: idle-vm" in running.stderr
    assert "Error: 1 of 1 VM(s) did not reach 'running' within 2 s: idle-vm (still stopped)" in (
        running.stderr
    )
    # ssh on a stopped VM cannot succeed either; the reason is named.
    ssh = run_golem(golem_env, "vm", "wait", "idle-vm", "--for", "ssh", "--timeout", "2")
    assert ssh.returncode == 1
    assert "idle-vm (VM idle-vm is stopped)" in ssh.stderr

    # Started meanwhile, it gets there: the wait follows the provider.
    assert_ok(run_golem(golem_env, "vm", "start", "idle-vm"))
    assert_ok(run_golem(golem_env, "vm", "wait", "idle-vm", "--for", "running", "--timeout", "60"))


def test_wait_needs_a_selection_and_a_known_name(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url
    nothing = run_golem(golem_env, "vm", "wait", "--for", "ssh")
    assert nothing.returncode == 2
    assert "Solution:" in nothing.stderr
    unknown = run_golem(golem_env, "vm", "wait", "ghost-vm", "--for", "running")
    assert unknown.returncode != 0
    assert "ghost-vm" in unknown.stderr and "Traceback" not in unknown.stderr
    no_goal = run_golem(golem_env, "vm", "wait", "ghost-vm")
    assert no_goal.returncode == 2
