"""Symlinks over a devnet VM's SFTP: stored and answered as written, followed inside the VM only."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import asyncssh
import pytest

from tests.devnet.helpers import FAST, create_vm, new_key, ssh
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(60)


async def _vm(net: DevnetThread, name: str) -> tuple[asyncssh.SSHClientConnection, Path]:
    """An SSH connection to a new VM on the first provider, and that VM's folder."""
    key, _ = new_key()
    provider = net.providers[0]
    async with aiohttp.ClientSession(timeout=FAST) as session:
        info = await create_vm(session, provider, name, key)
    conn = await ssh(provider.ip_address, info["ssh_port"], key)
    folders = net.state_dir / "vms" / provider.provider_id
    (root,) = [p for p in folders.iterdir() if p.name.startswith(f"golem-{name}-")]
    return conn, root


async def _shell(conn: asyncssh.SSHClientConnection, command: str) -> None:
    result = await conn.run(command)
    assert result.exit_status == 0, result.stderr


async def test_relative_link_reads_back_and_downloads(devnet: DevnetThread, tmp_path: Path) -> None:
    conn, root = await _vm(devnet, "rel")
    async with conn, conn.start_sftp_client() as sftp:
        await _shell(conn, "mkdir -p tree/sub && echo inside > tree/sub/f && ln -s sub tree/x")
        assert await sftp.readlink("tree/x") == "sub"
        assert await sftp.readlink("/home/ubuntu/tree/x") == "sub"
        assert (await sftp.lstat("tree/x")).type == asyncssh.FILEXFER_TYPE_SYMLINK
        assert (await sftp.stat("tree/x")).type == asyncssh.FILEXFER_TYPE_DIRECTORY
        assert await sftp.realpath("tree/x/f") == "/home/ubuntu/tree/sub/f"

        # A folder holding the link downloads: the link as a link...
        await sftp.get("tree", str(tmp_path / "as-links"), recurse=True)
        assert os.readlink(tmp_path / "as-links" / "x") == "sub"
        assert (tmp_path / "as-links" / "x" / "f").read_text() == "inside\n"
        # ...or followed.
        await sftp.get("tree", str(tmp_path / "followed"), recurse=True, follow_symlinks=True)
        assert not (tmp_path / "followed" / "x").is_symlink()
        assert (tmp_path / "followed" / "x" / "f").read_text() == "inside\n"

        # A link the VM's shell made with an absolute (host) path is a VM path to SFTP.
        await _shell(conn, "ln -s ~/tree/sub tree/abs")
        assert os.readlink(root / "home/ubuntu/tree/abs") == str(root / "home/ubuntu/tree/sub")
        assert await sftp.readlink("tree/abs") == "/home/ubuntu/tree/sub"
        async with sftp.open("tree/abs/f") as handle:
            assert await handle.read() == "inside\n"


async def test_uploaded_links_keep_their_target(devnet: DevnetThread, tmp_path: Path) -> None:
    conn, root = await _vm(devnet, "upl")
    home = root / "home/ubuntu"
    async with conn, conn.start_sftp_client() as sftp:
        await sftp.symlink("/etc/passwd", "abs")
        await sftp.symlink("../ubuntu/.profile", "rel")
        await sftp.symlink("/home/ubuntu/.bashrc", "vm-abs")
        assert os.readlink(home / "abs") == "/etc/passwd"
        assert os.readlink(home / "rel") == "../ubuntu/.profile"
        assert os.readlink(home / "vm-abs") == "/home/ubuntu/.bashrc"
        assert await sftp.readlink("abs") == "/etc/passwd"  # outside the VM: just text
        assert await sftp.readlink("rel") == "../ubuntu/.profile"
        assert await sftp.readlink("vm-abs") == "/home/ubuntu/.bashrc"
        # Followed inside the VM: /etc/passwd is the VM's, which does not exist.
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.open("abs")
        async with sftp.open("vm-abs") as handle:
            assert "PS1=" in await handle.read()

        # A local tree with links uploads with the same targets.
        local = tmp_path / "up"
        local.mkdir()
        (local / "data").write_text("d")
        (local / "to-data").symlink_to("data")
        (local / "to-host").symlink_to("/etc/hostname")
        await sftp.put(str(local), "copied", recurse=True)
        assert os.readlink(home / "copied/to-data") == "data"
        assert os.readlink(home / "copied/to-host") == "/etc/hostname"


async def test_following_links_stays_in_the_vm_folder(devnet: DevnetThread, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    conn, root = await _vm(devnet, "jail")
    home = root / "home/ubuntu"
    climb = os.path.relpath(outside, home)  # ../../..-style, correct from the host's view
    async with conn, conn.start_sftp_client() as sftp:
        await _shell(
            conn,
            f"ln -s /etc etc-link && ln -s {outside} out-abs && ln -s {climb} out-rel "
            "&& ln -s out-rel chain && ln -s loop loop",
        )
        # The host's view really leads out (so the checks below mean something).
        assert (home / "out-rel" / "secret.txt").read_text() == "host secret"

        # /etc through the link is the VM's /etc: only its ssh folder.
        assert await sftp.realpath("etc-link") == "/etc"
        assert sorted(await sftp.listdir("etc-link")) == [".", "..", "ssh"]
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.open("etc-link/passwd")
        async with sftp.open("etc-link/ssh/ssh_host_ed25519_key.pub") as handle:
            own = await handle.read()
        assert own == (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text()

        for name in ("out-abs", "out-rel", "chain"):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.open(f"{name}/secret.txt")
            with pytest.raises(asyncssh.SFTPError):
                await sftp.listdir(name)
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open(f"{name}/planted.txt", "w") as handle:
                    await handle.write("x")
            assert (await sftp.realpath(name)).startswith("/")
        # The climbing link ends at the VM's / at most.
        assert not (await sftp.realpath("out-rel")).startswith(str(tmp_path))
        with pytest.raises(asyncssh.SFTPError):
            await sftp.stat("loop")
        with pytest.raises(asyncssh.SFTPError):
            await sftp.get("chain/secret.txt", str(tmp_path / "stolen"))

        # Plain ".." chains stop at the VM's /, too.
        assert await sftp.realpath("../../../../../../../..") == "/"
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.open(f"../../../../../../../..{outside}/secret.txt")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert not (tmp_path / "stolen").exists()


async def test_scp_follows_links_inside_the_vm_only(devnet: DevnetThread, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    conn, _ = await _vm(devnet, "scp-jail")
    async with conn:
        await _shell(conn, f"ln -s {outside} out && echo ok > mine && ln -s mine mine-link")
        await asyncssh.scp((conn, "mine-link"), str(tmp_path / "mine"))
        assert (tmp_path / "mine").read_text() == "ok\n"
        with pytest.raises(asyncssh.SFTPError):
            await asyncssh.scp((conn, "out/secret.txt"), str(tmp_path / "stolen"))
    assert not (tmp_path / "stolen").exists()
