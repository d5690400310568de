"""``golem vm forward`` carries TCP to the VM; ``golem vm ssh-config`` lets plain
OpenSSH in, with golem's key and golem's host-key pin."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GOLEM
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


def test_forward_rejects_a_bad_spec(world: World) -> None:
    result = world.golem("vm", "forward", "vm1", "80:http")
    assert result.returncode == 2
    assert b"Use [LOCAL_PORT:]REMOTE_PORT" in result.stderr


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_openssh_uses_the_generated_config(world: World) -> None:
    result = world.ok("vm", "ssh-config", "--write")
    config = world.base_dir / "ssh" / "config"
    known_hosts = world.base_dir / "ssh" / "known_hosts"
    assert result.stdout.decode() == f"Include {config}\n"
    text = config.read_text()
    assert "Host golem-vm1\n" in text and "Host golem-vm2\n" in text
    assert "StrictHostKeyChecking yes" in text
    assert f"UserKnownHostsFile {known_hosts}" in text
    row = world.row("vm1")
    assert f"[{row['ssh_host']}]:{row['ssh_port']} ssh-ed25519 " in known_hosts.read_text()

    ssh = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "golem-vm1", "echo", "ok"],
        capture_output=True,
        env=world.env,
        timeout=30,
        check=False,
    )
    assert (ssh.returncode, ssh.stdout) == (0, b"ok\n"), ssh.stderr

    # Printing (no --write) gives the same entries, for the VMs named.
    printed = world.ok("vm", "ssh-config", "vm1").stdout.decode()
    assert "Host golem-vm1\n" in printed and "golem-vm2" not in printed


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_openssh_refuses_a_host_whose_key_is_not_the_pin(world: World, tmp_path: Path) -> None:
    world.ok("vm", "ssh-config", "--write")
    config = world.base_dir / "ssh" / "config"
    known_hosts = world.base_dir / "ssh" / "known_hosts"
    saved = known_hosts.read_text()
    row = world.row("vm1")
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIG6ZpU0yL1bYq2T3t6y0Yx9hJt5o0p4V9e3wqS1xk8bQ"
    known_hosts.write_text(f"[{row['ssh_host']}]:{row['ssh_port']} ssh-ed25519 {other}\n")
    try:
        ssh = subprocess.run(
            ["ssh", "-F", str(config), "-o", "BatchMode=yes", "golem-vm1", "echo", "ok"],
            capture_output=True,
            env=world.env,
            timeout=30,
            check=False,
        )
    finally:
        known_hosts.write_text(saved)
    assert ssh.returncode == 255
    assert b"REMOTE HOST IDENTIFICATION HAS CHANGED" in ssh.stderr
