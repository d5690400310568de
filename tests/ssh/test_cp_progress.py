"""``golem vm cp`` draws a progress bar on stderr when stderr is a terminal (a real
pty, driven by pexpect), and draws nothing when it is not; either way the copy
is whole."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from pathlib import Path

import pexpect

from tests.conftest import GOLEM
from tests.ssh.conftest import World

# Large enough that the copy outlives several of rich's refreshes (10 a second).
SIZE_MB = 100
# rich's DownloadColumn: "52.4/104.9 MB" while the bar is drawn.
SIZE_SO_FAR = re.compile(rb"\d+(?:\.\d+)?/104\.9 MB")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _big_file(path: Path) -> str:
    with path.open("wb") as handle:
        for _ in range(SIZE_MB):
            handle.write(os.urandom(1 << 20))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _in_terminal(world: World, command: str, cwd: Path) -> tuple[int, bytes]:
    """Run ``command`` (a shell line) with stdin and stdout on a pty, as a user would;
    returns its exit status and everything the terminal received."""
    child = pexpect.spawn(
        "bash",
        ["--norc", "--noprofile", "-c", command],
        env={**world.env, "TERM": "xterm-256color"},
        cwd=str(cwd),
        dimensions=(24, 160),
        timeout=120,
    )
    try:
        output = child.read()
    finally:
        child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return child.exitstatus, output


def test_cp_draws_progress_when_stderr_is_a_terminal(world: World, tmp_path: Path) -> None:
    source = tmp_path / "progress-upload.bin"
    digest = _big_file(source)
    remote = world.vm_home("vm1") / "progress-copy.bin"
    try:
        status, screen = _in_terminal(
            world, f"exec {shlex.quote(str(GOLEM))} vm cp {source.name} vm1:{remote.name}", tmp_path
        )
        text = ANSI.sub(b"", screen)
        assert status == 0, text[-2000:]
        assert b"progress-upload.bin" in text, text[-2000:]
        assert SIZE_SO_FAR.search(text), text[-2000:]
        assert _sha256(remote) == digest

        # Back down, with the same bar.
        status, screen = _in_terminal(
            world, f"exec {shlex.quote(str(GOLEM))} vm cp vm1:{remote.name} returned.bin", tmp_path
        )
        text = ANSI.sub(b"", screen)
        assert status == 0, text[-2000:]
        assert b"progress-copy.bin" in text and SIZE_SO_FAR.search(text), text[-2000:]
        assert _sha256(tmp_path / "returned.bin") == digest
    finally:
        remote.unlink(missing_ok=True)


def test_cp_draws_nothing_when_stderr_is_not_a_terminal(world: World, tmp_path: Path) -> None:
    source = tmp_path / "quiet-upload.bin"
    digest = _big_file(source)
    remote = world.vm_home("vm1") / "quiet-copy.bin"
    errors = tmp_path / "stderr.txt"
    try:
        # stdout still a terminal: what counts is stderr, where the bar would go.
        status, screen = _in_terminal(
            world,
            f"exec {shlex.quote(str(GOLEM))} vm cp {source.name} vm1:{remote.name} 2>{errors}",
            tmp_path,
        )
        assert status == 0, errors.read_bytes()[-2000:]
        assert errors.read_bytes() == b""
        assert screen == b""
        assert _sha256(remote) == digest

        # All pipes, as in a script.
        back = tmp_path / "back.bin"
        result = world.ok("vm", "cp", f"vm1:{remote.name}", str(back))
        assert (result.stdout, result.stderr) == (b"", b"")
        assert _sha256(back) == digest
    finally:
        remote.unlink(missing_ok=True)
