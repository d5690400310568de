"""``golem vm forward`` carries TCP to the VM; ``golem vm ssh-config`` lets plain
OpenSSH in, with golem's key and golem's host-key pin."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GOLEM
from tests.helpers import SMALL_VM
from tests.ssh.conftest import World


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP echo server on the devnet host's loopback (what 'localhost' is on a devnet VM)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_forward_carries_a_tcp_echo_until_ctrl_c(world: World, echo_server: int) -> None:
    process = subprocess.Popen(
        [str(GOLEM), "vm", "forward", "vm1", f"0:{echo_server}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=world.env,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().decode().strip()
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        for message in (b"ping", b"x" * 300_000):
            with socket.create_connection((host, int(port)), timeout=10) as conn:
                conn.sendall(message)
                conn.shutdown(socket.SHUT_WR)
                received = b""
                while chunk := conn.recv(65536):
                    received += chunk
            assert received == message
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err


def test_forward_reports_a_connection_the_vm_cannot_open(world: World) -> None:
    # Bound but not listening: connections are refused, and no other process (a
    # parallel test's server) can take the port while the test runs.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        process = subprocess.Popen(
            [str(GOLEM), "vm", "forward", "vm1", f"0:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=world.env,
        )
        try:
            assert process.stdout is not None
            host, local = process.stdout.readline().decode().strip().rsplit(":", 1)
            with socket.create_connection((host, int(local)), timeout=10) as conn:
                conn.settimeout(10)
                assert conn.recv(100) == b""  # closed on us
        finally:
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=15)
    lines = err.decode().splitlines()
    failed = [line for line in lines if "open failed" in line]
    assert len(failed) == 1, lines
    assert failed[0].startswith(f"Forwarded connection to port {port} on vm1: open failed: ")
    assert process.returncode == 0, err


def test_forward_bind_error_says_it_once(world: World) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = world.golem("vm", "forward", "vm1", f"{port}:22")
    assert result.returncode == 2
    assert result.stderr.decode().splitlines()[0] == (
        f"Error: Cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_forward_rejects_a_bad_spec(world: World) -> None:
    result = world.golem("vm", "forward", "vm1", "80:http")
    assert result.returncode == 2
    assert b"Use [LOCAL_PORT:]REMOTE_PORT" in result.stderr


def _openssh(world: World, config: Path, alias: str) -> subprocess.CompletedProcess[bytes]:
    """Plain OpenSSH with the generated config, as a user or an editor runs it."""
    return subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", alias, "echo", "ok"],
        capture_output=True,
        env=world.env,
        timeout=30,
        check=False,
    )


def test_openssh_uses_the_generated_config(world: World) -> None:
    result = world.ok("vm", "ssh-config", "--write")
    config = world.base_dir / "ssh" / "config"
    known_hosts = world.base_dir / "ssh" / "known_hosts"
    assert result.stdout.decode() == f"Include {config}\n"
    text = config.read_text()
    assert "Host golem-vm1\n" in text and "Host golem-vm2\n" in text
    assert "    HostKeyAlias golem-vm1\n" in text and "    HostKeyAlias golem-vm2\n" in text
    assert "StrictHostKeyChecking yes" in text and "IdentitiesOnly yes" in text
    # Nothing from the user's own ssh config or the system's may widen the entry.
    for option in (
        "CheckHostIP no",
        "ForwardAgent no",
        "ForwardX11 no",
        "ProxyCommand none",
        "ProxyJump none",
        "ControlMaster no",
        "GlobalKnownHostsFile /dev/null",
        "UpdateHostKeys no",
    ):
        assert f"    {option}\n" in text, option
    assert f"UserKnownHostsFile {known_hosts}" in text
    pins = known_hosts.read_text()
    pinned = str(world.row("vm1")["host_key"]).split()[:2]
    assert f"golem-vm1 {' '.join(pinned)}\n" in pins
    # Keyed by the VM, never by its address.
    assert "[" not in pins and str(world.row("vm1")["ssh_host"]) not in pins

    ssh = _openssh(world, config, "golem-vm1")
    assert (ssh.returncode, ssh.stdout) == (0, b"ok\n"), ssh.stderr
    assert known_hosts.read_text() == pins  # OpenSSH added nothing (no IP lines)

    # Printing (no --write) gives the same entries, for the VMs named.
    printed = world.ok("vm", "ssh-config", "vm1").stdout.decode()
    assert "Host golem-vm1\n" in printed and "golem-vm2" not in printed


def test_openssh_refuses_a_host_whose_key_is_not_the_pin(world: World) -> None:
    world.ok("vm", "ssh-config", "--write")
    config = world.base_dir / "ssh" / "config"
    known_hosts = world.base_dir / "ssh" / "known_hosts"
    saved = known_hosts.read_text()
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIG6ZpU0yL1bYq2T3t6y0Yx9hJt5o0p4V9e3wqS1xk8bQ"
    # The alias's line holds another key; the VM's own key is still in the file,
    # under its address as the old format wrote it: neither may let it in.
    row = world.row("vm1")
    real = " ".join(str(row["host_key"]).split()[:2])
    known_hosts.write_text(
        f"golem-vm1 ssh-ed25519 {other}\n[{row['ssh_host']}]:{row['ssh_port']} {real}\n"
    )
    try:
        ssh = _openssh(world, config, "golem-vm1")
    finally:
        known_hosts.write_text(saved)
    assert ssh.returncode == 255
    assert b"REMOTE HOST IDENTIFICATION HAS CHANGED" in ssh.stderr
    assert ssh.stdout == b""


def test_two_vms_on_one_address_do_not_accept_each_others_key(world: World) -> None:
    """A provider reused the port: vm2's record (and pin) now points where vm1 answers.

    With known_hosts keyed by ``[host]:port`` vm1's key would be accepted for
    golem-vm2; keyed by alias, golem-vm2 must be refused and golem-vm1 still work.
    """
    vm1, vm2 = world.row("vm1"), world.row("vm2")
    world.set_column("vm2", "ssh_host", vm1["ssh_host"])
    world.set_column("vm2", "ssh_port", vm1["ssh_port"])
    try:
        world.ok("vm", "ssh-config", "--write")
        config = world.base_dir / "ssh" / "config"
        text = config.read_text()
        address = f"    HostName {vm1['ssh_host']}\n    Port {vm1['ssh_port']}\n"
        assert text.count(address) == 2  # both entries lead to the same place
        wrong = _openssh(world, config, "golem-vm2")
        right = _openssh(world, config, "golem-vm1")
    finally:
        world.set_column("vm2", "ssh_host", vm2["ssh_host"])
        world.set_column("vm2", "ssh_port", vm2["ssh_port"])
        world.ok("vm", "ssh-config", "--write")
    assert wrong.returncode == 255
    assert b"REMOTE HOST IDENTIFICATION HAS CHANGED" in wrong.stderr, wrong.stderr
    assert wrong.stdout == b""
    assert (right.returncode, right.stdout) == (0, b"ok\n"), right.stderr


def test_a_written_config_follows_destroy_create_and_forget(world: World) -> None:
    """A VM re-created under the same name has a new host key (and maybe port):
    the written config and known_hosts must follow, or OpenSSH refuses it."""

    def create() -> None:
        world.ok(
            "vm", "create", "phoenix", "--provider-id", world.vms["vm2"],
            *SMALL_VM, "--wait-timeout", "30",
        )  # fmt: skip

    config = world.base_dir / "ssh" / "config"
    create()
    try:
        world.ok("vm", "ssh-config", "--write")
        first = _openssh(world, config, "golem-phoenix")
        assert (first.returncode, first.stdout) == (0, b"ok\n"), first.stderr
        old_pin = world.row("phoenix")["host_key"]

        world.ok("vm", "destroy", "--yes", "phoenix")
        assert "Host golem-phoenix\n" not in config.read_text()
        create()
        assert world.row("phoenix")["host_key"] != old_pin
        again = _openssh(world, config, "golem-phoenix")
        assert (again.returncode, again.stdout) == (0, b"ok\n"), again.stderr
    finally:
        world.golem("vm", "destroy", "--yes", "phoenix")
        world.golem("vm", "forget", "phoenix")
    assert "golem-phoenix" not in config.read_text()
    assert "golem-phoenix" not in (world.base_dir / "ssh" / "known_hosts").read_text()
    assert "Host golem-vm1\n" in config.read_text()


def test_a_config_written_for_some_vms_keeps_that_choice(world: World) -> None:
    config = world.base_dir / "ssh" / "config"
    try:
        world.ok("vm", "ssh-config", "vm1", "--write")
        from requestor.settings import load_settings
        from requestor.ssh import sshconfig

        settings = load_settings(world.env)
        sshconfig.refresh_written(settings, [])
        assert "golem-vm1" not in config.read_text()  # vm1 no longer in the list given
        world.ok("vm", "ssh", "vm1", "--repin", "--yes")  # refreshes from local state
        text = config.read_text()
        assert "Host golem-vm1\n" in text and "golem-vm2" not in text
    finally:
        world.ok("vm", "ssh-config", "--write")


def test_refresh_is_a_no_op_when_nothing_was_written(tmp_path: Path) -> None:
    from requestor.settings import load_settings
    from requestor.ssh import sshconfig

    settings = load_settings(
        {"HOME": str(tmp_path), "GOLEM_REQUESTOR_BASE_DIR": str(tmp_path / "base")}
    )
    assert not sshconfig.written(settings)
    sshconfig.refresh_written(settings, [])
    assert not (tmp_path / "base").exists()
