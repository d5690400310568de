"""What golem shows follows what it sees: a VM that SSH let us into is running,
whatever local state said; a refused SSH port changes nothing silently."""

from __future__ import annotations

import socket

import pytest

from tests.ssh.conftest import World


@pytest.mark.parametrize("recorded", ["creating", "unreachable", "error"])
def test_a_successful_command_marks_the_vm_running(world: World, recorded: str) -> None:
    world.set_column("vm1", "status", recorded)
    try:
        world.ok("vm", "ssh", "vm1", "--", "true")
        assert world.row("vm1")["status"] == "running"
    finally:
        world.set_column("vm1", "status", "running")


def test_a_failing_remote_command_still_showed_the_vm_running(world: World) -> None:
    world.set_column("vm1", "status", "unreachable")
    try:
        assert world.golem("vm", "ssh", "vm1", "--", "exit 5").returncode == 5
        assert world.row("vm1")["status"] == "running"
    finally:
        world.set_column("vm1", "status", "running")


def test_a_copy_marks_the_vm_running(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "f.txt"
    source.write_text("hello")
    world.set_column("vm1", "status", "creating")
    try:
        world.ok("vm", "cp", str(source), "vm1:status-follows.txt")
        assert world.row("vm1")["status"] == "running"
    finally:
        world.set_column("vm1", "status", "running")


def test_a_refused_ssh_port_does_not_change_the_status_silently(world: World) -> None:
    row = world.row("vm1")
    # Bound but not listening: connections are refused, and no other process (a
    # parallel test's server) can take the port while the test runs.
    with socket.socket() as closed:
        closed.bind((str(row["ssh_host"]), 0))
        world.set_column("vm1", "status", "unreachable")
        world.set_column("vm1", "ssh_port", closed.getsockname()[1])
        try:
            result = world.golem("vm", "ssh", "vm1", "--no-wait", "--", "true")
            assert result.returncode == 1
            assert b"Error:" in result.stderr
            # The provider still says running, but SSH did not let us in: no change.
            assert world.row("vm1")["status"] == "unreachable"
        finally:
            world.set_column("vm1", "ssh_port", row["ssh_port"])
            world.set_column("vm1", "status", "running")
