"""Every wait says what it waits for on stderr when stderr is not a terminal (a
pipe here, as in a script's log or CI): create, ssh, cp. On a terminal a spinner
says it instead; that is drawn by rich and not checked here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from golem_devnet.faults import Faults
from tests.conftest import GolemEnv, assert_ok, run_golem
from tests.helpers import SMALL_VM
from tests.support.threaded import DevnetThread

BOOT_DELAY_S = 4.0
LONG_BOOT_S = 600.0


def test_waits_say_what_they_wait_for_off_a_terminal(
    golem_env: GolemEnv, devnet_factory: Callable[..., DevnetThread], tmp_path: Path
) -> None:
    devnet = devnet_factory(1, faults=Faults(boot_delay_s=BOOT_DELAY_S))
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url

    created = run_golem(golem_env, "vm", "create", "boot-1", *SMALL_VM, timeout=120)
    assert_ok(created)
    lines = created.stderr.splitlines()
    assert "Creating VM…" in lines
    waiting = [line for line in lines if line.startswith("Waiting for SSH on 127.")]
    assert len(waiting) == 1, created.stderr
    assert "VM Deployed Successfully!" in created.stdout  # the panel is unchanged

    # VMs whose SSH stays down far longer than any golem takes to start, however
    # busy the machine (a 4 s boot could be over before a slow ssh process looks):
    # ssh and cp wait their --wait-timeout, say so, then give up.
    devnet.set_faults(0, boot_delay_s=LONG_BOOT_S)
    gave_up = run_golem(golem_env, "vm", "create", "boot-2", *SMALL_VM, "--wait-timeout", "0")
    assert gave_up.returncode == 1, gave_up.stderr
    ssh = run_golem(golem_env, "vm", "ssh", "boot-2", "--wait-timeout", "3", "--", "echo", "up")
    assert ssh.returncode == 1, ssh.stderr
    assert ssh.stdout == ""
    assert ssh.stderr.splitlines()[0] == "Waiting up to 3 s for SSH on boot-2…"

    gave_up = run_golem(golem_env, "vm", "create", "boot-3", *SMALL_VM, "--wait-timeout", "0")
    assert gave_up.returncode == 1, gave_up.stderr
    source = tmp_path / "note.txt"
    source.write_text("hello\n")
    cp = run_golem(golem_env, "vm", "cp", str(source), "boot-3:", "--wait-timeout", "3")
    assert cp.returncode == 1, cp.stderr
    assert cp.stderr.splitlines()[0] == "Waiting up to 3 s for SSH on boot-3…"


def test_no_wait_line_when_nothing_is_waited_for(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url
    assert_ok(run_golem(golem_env, "vm", "create", "ready-vm", *SMALL_VM))
    ssh = run_golem(golem_env, "vm", "ssh", "ready-vm", "--", "true")
    assert_ok(ssh)
    assert ssh.stderr == ""  # a VM that answers at once: scripts see nothing extra
