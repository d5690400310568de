"""Devnet VMs over SSH: OpenSSH acceptance, lifecycle, exec, PTY shell, SFTP, forwarding."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest

from tests.devnet.helpers import FAST, create_vm, new_key, port_is_free, public, refuses, ssh
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def key(tmp_path: Path) -> tuple[asyncssh.SSHKey, Path]:
    key, path = new_key(tmp_path)
    assert path is not None
    return key, path


async def _vm(
    net: DevnetThread, key: asyncssh.SSHKey, name: str = "box", index: int = 0
) -> tuple[str, int]:
    provider = net.providers[index]
    async with aiohttp.ClientSession(timeout=FAST) as session:
        info = await create_vm(session, provider, name, key)
    return provider.ip_address, info["ssh_port"]


async def _post(url: str) -> Any:
    async with aiohttp.ClientSession(timeout=FAST) as session, session.post(url) as response:
        assert response.status == 200
        return await response.json()


async def _pid_gone(pid: int, within: float = 10.0) -> bool:
    """True once process ``pid`` has exited, within ``within`` seconds.

    A pidfd becomes readable when its process exits (Linux 5.3+): an event to
    wait on, where polling ``kill(pid, 0)`` would also take a zombie for alive.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    exited = asyncio.Event()
    loop.add_reader(pidfd, exited.set)
    try:
        async with asyncio.timeout(within):
            await exited.wait()
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def test_openssh_client_runs_a_command(devnet: DevnetThread, key: Any, tmp_path: Path) -> None:
    host, port = asyncio.run(_vm(devnet, key[0]))
    result = subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(key[1]),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-p",
            str(port),
            f"ubuntu@{host}",
            "echo ok",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


async def test_stop_refuses_start_keeps_host_key_delete_frees_port(
    devnet: DevnetThread, key: Any
) -> None:
    host, port = await _vm(devnet, key[0], "life")
    api = devnet.providers[0].api_url
    conn = await ssh(host, port, key[0])
    host_key = conn.get_server_host_key().export_public_key()
    assert (await conn.run("echo before")).stdout == "before\n"

    await _post(f"{api}/vms/life/stop")
    assert refuses(host, port)
    await asyncio.wait_for(conn.wait_closed(), 5)  # the open session went down too

    info = await _post(f"{api}/vms/life/start")
    assert (info["status"], info["ssh_port"]) == ("running", port)
    async with await ssh(host, port, key[0]) as again:
        assert again.get_server_host_key().export_public_key() == host_key
        assert (await again.run("echo after")).stdout == "after\n"

    vm_dirs = list((devnet.state_dir / "vms" / devnet.providers[0].provider_id).iterdir())
    assert len(vm_dirs) == 1
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.delete(f"{api}/vms/life") as response,
    ):
        assert response.status == 200
    assert refuses(host, port)
    assert port_is_free(host, port)
    assert not vm_dirs[0].exists()


async def test_host_key_is_stored_in_the_vm_folder(devnet: DevnetThread, key: Any) -> None:
    host, port = await _vm(devnet, key[0], "keys")
    async with await ssh(host, port, key[0]) as conn:
        served = conn.get_server_host_key().export_public_key()
        async with (
            conn.start_sftp_client() as sftp,
            sftp.open("/etc/ssh/ssh_host_ed25519_key.pub", "rb") as handle,
        ):
            assert await handle.read() == served
        authorized = (await conn.run("cat .ssh/authorized_keys")).stdout
    assert authorized.strip() == key[0].export_public_key().decode().strip()


async def test_only_ubuntu_with_the_created_key_gets_in(devnet: DevnetThread, key: Any) -> None:
    host, port = await _vm(devnet, key[0], "auth")
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh(host, port, key[0], username="root")
    stranger, _ = new_key()
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh(host, port, stranger)


async def test_authorized_keys_is_read_at_each_login(devnet: DevnetThread, key: Any) -> None:
    """As with sshd, the keys trusted are those in ~/.ssh/authorized_keys now."""
    host, port = await _vm(devnet, key[0], "authkeys")
    friend, _ = new_key()
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh(host, port, friend)
    async with await ssh(host, port, key[0]) as conn:
        # Options and comments as a real file has them; a garbage line is skipped.
        added = f"not a key\nrestrict {public(friend)} friend@laptop\n"
        await conn.run(f"printf '%s' '{added}' >> .ssh/authorized_keys", check=True)
    async with await ssh(host, port, friend) as conn:
        # The friend removes the creation key: it no longer gets in, the friend does.
        drop = f"grep -vF '{public(key[0])}' .ssh/authorized_keys > k; mv k .ssh/authorized_keys"
        await conn.run(drop, check=True)
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh(host, port, key[0])
    async with await ssh(host, port, friend) as conn:
        await conn.run("rm .ssh/authorized_keys", check=True)
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh(host, port, friend)


async def test_exec_status_streams_stdin_and_binary(devnet: DevnetThread, key: Any) -> None:
    host, port = await _vm(devnet, key[0], "exec")
    async with await ssh(host, port, key[0]) as conn:
        result = await conn.run("echo out; echo err >&2; exit 3")
        assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert (await conn.run("true")).exit_status == 0
        killed = await conn.run("kill -TERM $$")
        assert killed.exit_signal is not None and killed.exit_signal[0] == "TERM"

        counted = await conn.run("wc -c", input="x" * 100_000)
        assert counted.stdout.strip() == "100000"  # stdin arrived whole, then EOF

        blob = bytes(range(256)) * 64
        echoed = await conn.run("cat", input=blob, encoding=None)
        assert echoed.stdout == blob

        where = await conn.run('echo "$HOME|$PWD|$USER"; test -t 0 || echo no-tty')
        home, cwd, user = where.stdout.splitlines()[0].split("|")
        assert home == cwd and home.endswith("/home/ubuntu") and user == "ubuntu"
        assert "no-tty" in where.stdout


async def test_pty_shell_has_a_terminal_and_follows_resizes(devnet: DevnetThread, key: Any) -> None:
    host, port = await _vm(devnet, key[0], "tty")
    async with await ssh(host, port, key[0]) as conn:
        process = await conn.create_process(
            term_type="xterm-256color", term_size=(91, 27), encoding=None
        )
        output = bytearray()

        async def until(pattern: bytes) -> None:
            while not re.search(pattern, output):
                chunk = await asyncio.wait_for(process.stdout.read(4096), 10)
                assert chunk, output
                output.extend(chunk)

        process.stdin.write(b"echo T=$TERM; stty size; tty\n")
        await until(rb"27 91")
        await until(rb"/dev/pts/")
        assert b"T=xterm-256color" in output
        # The window change and the next input travel in order on one channel, and
        # the VM applies the size before it passes on the input that follows: no wait.
        process.change_terminal_size(120, 40)
        process.stdin.write(b"stty size; sleep 300 & echo BG=$!\n")
        await until(rb"40 120")
        await until(rb"BG=(\d+)")
        background = int(re.search(rb"BG=(\d+)", output).group(1))  # type: ignore[union-attr]
        assert b"no job control" not in output
        process.stdin.write(b"exit 7\n")
        await asyncio.wait_for(process.wait(), 10)
        assert process.exit_status == 7
    # Leaving the shell takes its jobs down, as a hangup does.
    assert await _pid_gone(background)


async def test_processes_die_on_disconnect_and_on_stop(devnet: DevnetThread, key: Any) -> None:
    host, port = await _vm(devnet, key[0], "reaper")
    conn = await ssh(host, port, key[0])
    process = await conn.create_process("echo $$; exec sleep 300")
    first = int(await asyncio.wait_for(process.stdout.readline(), 10))
    conn.close()
    assert await _pid_gone(first)

    conn = await ssh(host, port, key[0])
    process = await conn.create_process("echo $$; exec sleep 300")
    second = int(await asyncio.wait_for(process.stdout.readline(), 10))
    await _post(f"{devnet.providers[0].api_url}/vms/reaper/stop")
    assert await _pid_gone(second)
    conn.close()


async def test_sftp_lands_in_the_vm_folder(devnet: DevnetThread, key: Any, tmp_path: Path) -> None:
    host, port = await _vm(devnet, key[0], "files")
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(300_000))
    async with await ssh(host, port, key[0]) as conn, conn.start_sftp_client() as sftp:
        assert await sftp.realpath(".") == "/home/ubuntu"
        await sftp.put(str(source), "relative.bin")
        await sftp.put(str(source), "/home/ubuntu/absolute.bin")
        await sftp.mkdir("sub")
        await sftp.put(str(source), "sub/nested.bin")
        # Climbing out stays inside the VM's folder.
        assert await sftp.realpath("../../../..") == "/"
        await sftp.get("relative.bin", str(tmp_path / "back.bin"))
        listed = (await conn.run("ls")).stdout.split()
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert {"relative.bin", "absolute.bin", "sub"} <= set(listed)
    home = (
        next((devnet.state_dir / "vms" / devnet.providers[0].provider_id).iterdir())
        / "home"
        / "ubuntu"
    )
    assert (home / "sub" / "nested.bin").read_bytes() == source.read_bytes()


async def test_scp_works(devnet: DevnetThread, key: Any, tmp_path: Path) -> None:
    host, port = await _vm(devnet, key[0], "scp")
    (tmp_path / "f.txt").write_text("via scp")
    async with await ssh(host, port, key[0]) as conn:
        await asyncssh.scp(str(tmp_path / "f.txt"), (conn, "copied.txt"))
        assert (await conn.run("cat copied.txt")).stdout == "via scp"


async def test_local_forwarding_to_loopback_only(devnet: DevnetThread, key: Any) -> None:
    host, port = await _vm(devnet, key[0], "fwd")

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[1]
    try:
        async with await ssh(host, port, key[0]) as conn:
            listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", target)
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.get_port())
            writer.write(b"through the tunnel\n")
            assert await asyncio.wait_for(reader.readline(), 10) == b"through the tunnel\n"
            writer.close()
            listener.close()
            # TEST-NET-1: refused by the VM before anything is dialled.
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("192.0.2.1", 80)
    finally:
        server.close()
