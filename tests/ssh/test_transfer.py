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


# --- a VM is not trusted with the local disk ------------------------------------------


def _everything(root: Path) -> dict[str, str]:
    """relative path -> kind, links not followed."""
    found: dict[str, str] = {}
    for path in root.rglob("*"):
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        found[str(path.relative_to(root))] = kind
    return found


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_hostile_tree_from_the_vm_stays_inside_the_destination(
    world: World, tmp_path: Path
) -> None:
    hostile = world.vm_home("vm1") / "hostile"
    tree = hostile / "d"
    (tree / "sub").mkdir(parents=True)
    (tree / "ok.txt").write_bytes(b"fine\n")
    (tree / "sub" / "inner.txt").write_bytes(b"inner\n")
    (tree / "suid").write_bytes(b"#!/bin/sh\n")
    (tree / "suid").chmod(0o4777)
    # Each link passes a textual "inside the destination" check, yet l4 is above it.
    os.symlink("sub/..", tree / "l2")
    os.symlink("l2/..", tree / "l3")
    os.symlink("l3/..", tree / "l4")
    os.symlink("../../../..", tree / "up")
    os.symlink("/etc/passwd", tree / "absolute")
    os.symlink("ok.txt", tree / "harmless")
    os.mkfifo(tree / "fifo")
    area = tmp_path / "area"
    destination = area / "dl"
    destination.mkdir(parents=True)
    (area / "outside.txt").write_bytes(b"mine\n")
    try:
        result = world.ok("vm", "cp", "-r", "vm1:hostile/d", str(destination))
        notes = result.stderr.decode().splitlines()
        links = ("l2", "l3", "l4", "up", "absolute", "harmless")
        for link in links:
            assert f"Skipping symbolic link vm1:hostile/d/{link} (links are not copied)" in notes
        assert "Skipping non-regular file vm1:hostile/d/fifo" in notes
        assert len(notes) == len(links) + 1, notes
        assert _everything(area) == {
            "outside.txt": "file",
            "dl": "dir",
            "dl/d": "dir",
            "dl/d/sub": "dir",
            "dl/d/sub/inner.txt": "file",
            "dl/d/ok.txt": "file",
            "dl/d/suid": "file",
        }
        assert (destination / "d" / "ok.txt").read_bytes() == b"fine\n"
        # No setuid bit nor more than the umask allows comes from a VM.
        assert (destination / "d" / "suid").stat().st_mode & 0o7777 == 0o777 & ~_umask()

        # The VM turns the links into real folders; a second download stays inside.
        for link in ("l2", "l3", "l4"):
            (tree / link).unlink()
        (tree / "l4").mkdir()
        (tree / "l4" / "PWNED").write_bytes(b"x")
        world.ok("vm", "cp", "-r", "vm1:hostile/d", str(destination))
        pwned = sorted(str(p.relative_to(area)) for p in area.rglob("PWNED"))
        assert pwned == ["dl/d/l4/PWNED"]
        assert not any(p.is_symlink() for p in area.rglob("*"))
    finally:
        import shutil

        shutil.rmtree(hostile)


def test_a_download_never_writes_through_a_local_link(world: World, tmp_path: Path) -> None:
    """Links already in the destination (the user's, or an older tool's) are not followed."""
    tree = world.vm_home("vm1") / "plain"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_bytes(b"new\n")
    (tree / "g").write_bytes(b"new\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "g").write_bytes(b"old\n")
    destination = tmp_path / "dl" / "plain"
    destination.mkdir(parents=True)
    os.symlink(elsewhere, destination / "sub")
    os.symlink(elsewhere / "g", destination / "g")
    try:
        result = world.ok("vm", "cp", "-r", "vm1:plain", str(tmp_path / "dl"))
    finally:
        import shutil

        shutil.rmtree(tree)
    assert f"{destination / 'sub'} is a symbolic link" in result.stderr.decode()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["g"]
    assert (elsewhere / "g").read_bytes() == b"old\n"
    # The link named g was replaced by the file, not written through.
    assert not (destination / "g").is_symlink()
    assert (destination / "g").read_bytes() == b"new\n"


def test_an_upload_copies_local_links_as_links_never_their_targets(
    world: World, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET-CONTENT\n")
    source = tmp_path / "up"
    source.mkdir()
    (source / "a.txt").write_bytes(b"a\n")
    os.symlink("../secret.txt", source / "out")
    world.ok("vm", "cp", "-r", str(source), "vm1:uploaded-links")
    remote = world.vm_home("vm1") / "uploaded-links"
    try:
        assert (remote / "a.txt").read_bytes() == b"a\n"
        assert (remote / "out").is_symlink()
        for path in remote.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert b"TOP-SECRET" not in path.read_bytes()
    finally:
        import shutil

        shutil.rmtree(remote)


# --- error messages: one line, real paths, a hint ---------------------------------------


def _message(result: object) -> list[str]:
    lines = result.stderr.decode().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 2 and lines[1].startswith("Solution: "), lines
    assert "b'" not in lines[0] and 'b"' not in lines[0], lines
    return lines


def test_cp_errors_name_the_path(world: World, tmp_path: Path) -> None:
    home = world.vm_home("vm1")
    (home / "errs-file").write_bytes(b"x\n")
    try:
        # A missing local folder on download: the path as text, not bytes.
        missing_dir = world.golem("vm", "cp", "vm1:errs-file", str(tmp_path / "nodir" / "x"))
        assert missing_dir.returncode == 1
        lines = _message(missing_dir)
        assert lines[0] == f"Error: No such local file or folder: {tmp_path / 'nodir' / 'x'}"

        # A local path component that is a file: "not a folder", not "is a folder".
        (tmp_path / "plain").write_bytes(b"")
        through_file = world.golem("vm", "cp", "vm1:errs-file", str(tmp_path / "plain" / "x"))
        assert through_file.returncode == 1
        lines = _message(through_file)
        assert lines[0] == f"Error: Not a folder: {tmp_path / 'plain' / 'x'}"

        # A remote path component that is a file, on upload: named, and on the VM.
        local = tmp_path / "local.txt"
        local.write_bytes(b"y\n")
        remote_through_file = world.golem("vm", "cp", str(local), "vm1:errs-file/x")
        assert remote_through_file.returncode == 1
        lines = _message(remote_through_file)
        assert "vm1:errs-file/x" in lines[0] and "is a folder" not in lines[0], lines

        # A missing remote file names the path that is missing.
        missing = world.golem("vm", "cp", "vm1:errs-nothing/here", str(tmp_path))
        assert missing.returncode == 1
        lines = _message(missing)
        assert lines[0] == "Error: No such file or folder on vm1:errs-nothing/here"

        # A remote folder without -r.
        (home / "errs-dir").mkdir()
        folder = world.golem("vm", "cp", "vm1:errs-dir", str(tmp_path))
        assert folder.returncode == 2
        assert _message(folder) == [
            "Error: vm1:errs-dir is a folder",
            "Solution: Pass -r to copy folders.",
        ]
    finally:
        (home / "errs-file").unlink()
        if (home / "errs-dir").exists():
            (home / "errs-dir").rmdir()


# --- the copy's fast paths: many files at once, small files in one request ------------


def _sized_tree(root: Path) -> None:
    """More files than are copied at once, sizes on both sides of SMALL_FILE, odd modes
    and old times, and a read-only folder that must still be filled."""
    from requestor.ssh.tuning import SMALL_FILE, TREE_CONCURRENCY

    sizes = [0, 1, SMALL_FILE - 1, SMALL_FILE, SMALL_FILE + 1, 3 * SMALL_FILE + 7]
    sizes += [100 + 997 * i for i in range(2 * TREE_CONCURRENCY)]
    modes = [0o644, 0o600, 0o755, 0o640, 0o444, 0o700]
    for index, size in enumerate(sizes):
        folder = root / f"part{index % 3}" / ("deep" if index % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{index:02d}.bin"
        path.write_bytes(os.urandom(size))
        path.chmod(modes[index % len(modes)])
        os.utime(path, (MTIME + index, MTIME + index))
    locked = root / "locked"
    locked.mkdir()
    (locked / "inside.txt").write_bytes(b"still written\n")
    os.utime(locked / "inside.txt", (MTIME, MTIME))
    locked.chmod(0o555)
    for folder in sorted(root.rglob("*"), reverse=True):
        if folder.is_dir():
            os.utime(folder, (MTIME + 9, MTIME + 9))
    os.utime(root, (MTIME + 9, MTIME + 9))


def _digests(root: Path) -> dict[str, tuple[int, int, str | None]]:
    """relative path -> (mode bits, mtime, sha256 or None for folders)."""
    return {
        name: (mode, mtime, None if content is None else hashlib.sha256(content).hexdigest())
        for name, (mode, mtime, content) in _tree(root).items()
    }


def test_a_tree_of_many_sizes_both_ways_keeps_every_byte_mode_and_time(
    world: World, tmp_path: Path
) -> None:
    source = tmp_path / "sized"
    source.mkdir()
    _sized_tree(source)
    expected = _digests(source)
    assert len([v for v in expected.values() if v[2] is not None]) > 16

    remote = world.vm_home("vm1") / "sized"
    back = tmp_path / "back"
    back.mkdir()
    try:
        world.ok("vm", "cp", "-r", str(source), "vm1:")
        assert _digests(remote) == expected

        world.ok("vm", "cp", "-r", "vm1:sized", str(back))
        assert _digests(back / "sized") == expected
    finally:
        import shutil

        for root in (remote, back, source):
            for folder in [root, *root.rglob("*")]:
                if folder.is_dir() and not folder.is_symlink():
                    folder.chmod(0o755)
            shutil.rmtree(root, ignore_errors=True)


def test_an_error_deep_in_a_tree_names_the_path_that_failed(world: World, tmp_path: Path) -> None:
    """Files are copied several at a time; the message still names the one that failed,
    not the folder the walk started from."""
    source = tmp_path / "deep-err"
    (source / "a" / "b").mkdir(parents=True)
    for index in range(40):
        (source / "a" / f"f{index}.txt").write_bytes(b"x\n")
    (source / "a" / "b" / "inner.txt").write_bytes(b"y\n")
    remote = world.vm_home("vm1") / "deep-err"
    (remote / "a").mkdir(parents=True)
    (remote / "a" / "b").write_bytes(b"a file where the tree has a folder\n")
    try:
        result = world.golem("vm", "cp", "-r", str(source), "vm1:")
        assert result.returncode == 1
        lines = _message(result)
        assert "vm1:./deep-err/a/b failed" in lines[0], lines
    finally:
        import shutil

        shutil.rmtree(remote)
