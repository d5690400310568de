"""``golem vm ssh NAME -- CMD``: streams, exit statuses, stdin, and the errors a user meets."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.conftest import GOLEM
from tests.helpers import SMALL_VM
from tests.ssh.conftest import World


def test_stdout_and_stderr_stay_apart_and_the_exit_status_is_the_remote_one(world: World) -> None:
    result = world.golem("vm", "ssh", "vm1", "--", "echo out; echo err >&2; exit 7")
    assert result.returncode == 7
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"


def test_words_after_the_name_form_one_command_line_as_with_openssh(world: World) -> None:
    result = world.ok("vm", "ssh", "vm1", "--", "printf", "'%s|'", "a", "b c")
    assert result.stdout == b"a|b|c|"


def test_binary_data_passes_both_ways_unchanged(world: World) -> None:
    payload = os.urandom(3 * 1024 * 1024) + bytes(range(256))
    result = world.ok("vm", "ssh", "vm1", "--", "cat", input=payload)
    assert result.stdout == payload
    result = world.ok("vm", "ssh", "vm1", "--", r"printf '\000\377\r\n\033[2J' >&2")
    assert result.stderr == b"\x00\xff\r\n\x1b[2J"
    assert result.stdout == b""


def test_a_command_killed_by_a_signal_exits_128_plus_the_signal(world: World) -> None:
    assert world.golem("vm", "ssh", "vm1", "--", "kill -TERM $$").returncode == 128 + 15


def test_stdin_from_a_pipe_in_a_shell_pipeline(world: World) -> None:
    result = subprocess.run(
        f"printf 'hi\\nthere\\n' | {GOLEM} vm ssh vm1 -- 'cat; echo done' | tr a-z A-Z",
        shell=True,
        capture_output=True,
        env=world.env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"HI\nTHERE\nDONE\n"


def test_stdin_from_a_file_and_from_dev_null(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(200_000)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    with source.open("rb") as handle:
        result = world.golem("vm", "ssh", "vm1", "--", "sha256sum", stdin=handle.fileno())
    import hashlib

    assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    result = world.golem("vm", "ssh", "vm1", "--", "cat; echo eof", stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout) == (0, b"eof\n")


def test_the_command_ends_even_when_stdin_stays_open(world: World) -> None:
    # stdin is a pipe nobody writes to or closes: the remote command's end must be enough.
    read_end, write_end = os.pipe()
    try:
        result = world.golem("vm", "ssh", "vm1", "--", "echo quick", stdin=read_end, timeout=20)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert (result.returncode, result.stdout) == (0, b"quick\n")


def test_stdout_closed_early_ends_the_session(world: World) -> None:
    result = subprocess.run(
        f"{GOLEM} vm ssh vm1 -- 'yes' | head -c 5; echo \" ${{PIPESTATUS[0]}}\"",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        env=world.env,
        timeout=30,
        check=False,
    )
    assert result.stdout == b"y\ny\ny \x31\x34\x31\n"  # "141" = 128 + SIGPIPE


def test_a_shell_without_a_terminal_reads_commands_from_stdin(world: World) -> None:
    result = world.golem("vm", "ssh", "vm1", input=b"echo from-stdin\nexit 4\n")
    assert (result.returncode, result.stdout) == (4, b"from-stdin\n")


def test_tty_flag_gives_the_command_a_terminal(world: World) -> None:
    result = world.golem(
        "vm", "ssh", "vm1", "-t", "--", "test -t 0 && echo tty; exit 5", stdin=subprocess.DEVNULL
    )
    assert result.returncode == 5
    assert b"tty" in result.stdout


# --- errors ------------------------------------------------------------------------


def _error(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode()


def test_unknown_vm(world: World) -> None:
    result = world.golem("vm", "ssh", "nope", "--", "true")
    assert result.returncode == 1
    assert _error(result) == (
        "Error: VM not found in local database: nope\n"
        "Solution: The VM may have been manually removed. Use 'golem vm list' to see "
        "available VMs.\n"
    )


def test_stopped_vm_fails_at_once_with_the_way_to_start_it(world: World) -> None:
    world.ok("vm", "stop", "vm2")
    try:
        result = world.golem("vm", "ssh", "vm2", "--", "true", timeout=15)
        assert result.returncode == 1
        assert _error(result) == (
            "Error: VM vm2 is stopped\nSolution: Start it with 'golem vm start vm2'.\n"
        )
    finally:
        world.ok("vm", "start", "vm2")
    world.ok("vm", "ssh", "vm2", "--no-wait", "--", "true")


def test_unreachable_ssh_with_no_wait_gives_the_spec_message(world: World) -> None:
    world.devnet_booting("vm2")
    try:
        result = world.golem("vm", "ssh", "vm2", "--no-wait", "--", "true", timeout=15)
    finally:
        world.devnet_booted("vm2")
    assert result.returncode == 1
    assert _error(result) == (
        "Error: Unable to establish SSH connection (VM may be starting up)\n"
        "Solution: Wait a few moments and try again. The VM is likely still initializing.\n"
    )


def test_ssh_waits_for_a_vm_that_comes_up(world: World) -> None:
    world.devnet_booting("vm2")  # the provider says "creating": worth waiting for
    process = subprocess.Popen(
        [str(GOLEM), "vm", "ssh", "vm2", "--wait-timeout", "20", "--", "echo up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=world.env,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1.5)
    finally:
        world.devnet_booted("vm2")
    out, err = process.communicate(timeout=20)
    assert (process.returncode, out) == (0, b"up\n"), err


def test_a_vm_stopped_behind_golems_back_fails_fast(world: World) -> None:
    """Local state says running; the provider says stopped: no 60 s wait."""
    world.devnet_stop("vm2")
    try:
        started = time.monotonic()
        result = world.golem("vm", "ssh", "vm2", "--", "true", timeout=60)
        elapsed = time.monotonic() - started
        status = world.row("vm2")["status"]
    finally:
        world.devnet_start("vm2")
        world.set_column("vm2", "status", "running")
    assert result.returncode == 1
    assert _error(result) == (
        "Error: VM vm2 is stopped\nSolution: Start it with 'golem vm start vm2'.\n"
    )
    assert elapsed < 20
    assert status == "stopped"
    world.ok("vm", "ssh", "vm2", "--", "true")


def test_a_vm_deleted_behind_golems_back_fails_fast(world: World) -> None:
    world.ok(
        "vm",
        "create",
        "doomed",
        "--provider-id",
        world.vms["vm2"],
        *SMALL_VM,
        "--wait-timeout",
        "30",
    )
    try:
        world.devnet_delete("doomed")
        started = time.monotonic()
        result = world.golem("vm", "ssh", "doomed", "--", "true", timeout=60)
        elapsed = time.monotonic() - started
        status = world.row("doomed")["status"]
    finally:
        world.golem("vm", "forget", "doomed")
    assert result.returncode == 1
    assert _error(result) == (
        "Error: VM doomed is gone: its provider no longer knows it\n"
        "Solution: Remove the local record with 'golem vm forget doomed', "
        "or create a new VM.\n"
    )
    assert elapsed < 20
    assert status == "gone"


def test_provider_gone(world: World) -> None:
    provider = world.vms["vm2"]
    world.devnet_stop("vm2")
    world.net.set_faults(provider, offline=True)
    try:
        result = world.golem("vm", "ssh", "vm2", "--no-wait", "--", "true", timeout=15)
    finally:
        world.net.clear_faults(provider)
        world.devnet_start("vm2")
    assert result.returncode == 1
    assert _error(result) == (
        "Error: Provider is no longer available (they may have gone offline)\n"
        "Solution: Choose a different provider or wait for the original to come back online.\n"
    )


def test_a_key_the_vm_does_not_know_is_refused(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncssh

    other = tmp_path / "other_key"
    other.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    other.chmod(0o600)
    original = world.row("vm2")["ssh_key_path"]
    world.set_column("vm2", "ssh_key_path", str(other))
    try:
        result = world.golem("vm", "ssh", "vm2", "--", "true", timeout=15)
    finally:
        world.set_column("vm2", "ssh_key_path", original)
    assert result.returncode == 1
    assert _error(result).startswith(f"Error: VM vm2 refused the SSH key {other}\nSolution: ")


def test_output_to_a_non_blocking_pipe_is_complete(world: World) -> None:
    """A parent may leave our stdout non-blocking (the flag is the open file's):
    a full pipe then means "wait", not lost output and "connection lost"."""
    import fcntl

    size = 10 * 1024 * 1024
    read_end, write_end = os.pipe()
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    process = subprocess.Popen(
        [str(GOLEM), "vm", "ssh", "vm1", "--", f"head -c {size} /dev/zero"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=world.env,
    )
    os.close(write_end)
    try:
        stall = 4.0
        time.sleep(stall)  # nobody reads: the pipe fills and stays full for a while
        received = 0
        while data := os.read(read_end, 1 << 20):
            received += len(data)
        assert process.stderr is not None
        error = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        os.close(read_end)
        if process.returncode is None:
            process.kill()
            process.wait()
    assert (process.returncode, received) == (0, size), error
    # Waiting for the pipe must not spin: far less CPU than the time it was full.
    assert usage.ru_utime + usage.ru_stime < stall, usage
