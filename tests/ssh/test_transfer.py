"""``golem vm cp``: a folder tree both ways and a 50 MB file both ways, with
content, permissions and modification times checked on the other side."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.ssh.conftest import World

MTIME = 1_000_000_000  # 2001-09-09: far from "now", so a copy that drops it shows


def _tree(root: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """relative path -> (mode bits, mtime seconds, content or None for folders)."""
    found: dict[str, tuple[int, int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        st = path.stat()
        content = None if path.is_dir() else path.read_bytes()
        found[str(path.relative_to(root))] = (st.st_mode & 0o7777, int(st.st_mtime), content)
    return found


def _make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    files = {
        "a.txt": (b"hello\n", 0o640),
        "run.sh": (b"#!/bin/sh\necho hi\n", 0o755),
        "with space.txt": (b"spaces in names\n", 0o600),
        "sub/b.bin": (os.urandom(100_000), 0o644),
        "sub/deeper/empty": (b"", 0o444),
    }
    for name, (data, mode) in files.items():
        path = root / name
        path.write_bytes(data)
        path.chmod(mode)
        os.utime(path, (MTIME, MTIME))
    for folder in ("sub/deeper", "sub", "empty-dir"):
        os.utime(root / folder, (MTIME + 5, MTIME + 5))


def test_a_folder_tree_both_ways(world: World, tmp_path: Path) -> None:
    source = tmp_path / "project"
    source.mkdir()
    _make_tree(source)

    world.ok("vm", "cp", "-r", str(source), "vm1:uploaded")
    remote = world.vm_home("vm1") / "uploaded"
    assert _tree(remote) == _tree(source)

    back = tmp_path / "back"
    back.mkdir()
    world.ok("vm", "cp", "-r", "vm1:uploaded", str(back))
    assert _tree(back / "uploaded") == _tree(source)


def test_a_folder_needs_r(world: World, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    result = world.golem("vm", "cp", str(tmp_path / "folder"), "vm1:")
    assert result.returncode == 2
    assert b"Pass -r to copy folders." in result.stderr


def test_a_50_mb_file_both_ways(world: World, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        for _ in range(50):
            handle.write(os.urandom(1 << 20))
    big.chmod(0o604)
    os.utime(big, (MTIME, MTIME))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()

    world.ok("vm", "cp", str(big), "vm1:big-copy.bin")
    remote = world.vm_home("vm1") / "big-copy.bin"
    assert hashlib.sha256(remote.read_bytes()).hexdigest() == digest
    assert (remote.stat().st_mode & 0o777, int(remote.stat().st_mtime)) == (0o604, MTIME)

    back = tmp_path / "returned.bin"
    world.ok("vm", "cp", "vm1:big-copy.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    assert (back.stat().st_mode & 0o777, int(back.stat().st_mtime)) == (0o604, MTIME)
    remote.unlink()


def test_missing_files_and_bad_endpoints(world: World, tmp_path: Path) -> None:
    missing = world.golem("vm", "cp", "vm1:no-such-file", str(tmp_path))
    assert missing.returncode == 1
    assert missing.stderr.decode().startswith("Error: No such file or folder on vm1")
    both_local = world.golem("vm", "cp", str(tmp_path), str(tmp_path / "x"))
    assert both_local.returncode == 2
    assert b"Exactly one side of the copy must be on a VM" in both_local.stderr
    unknown = world.golem("vm", "cp", str(tmp_path), "nope:x")
    assert unknown.returncode == 1
    assert b"VM not found in local database: nope" in unknown.stderr
