"""``golem vm ssh NAME`` in a real terminal (a pty driven by pexpect), started from a
local bash so the terminal's modes can be compared before and after."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.conftest import GOLEM
from tests.ssh.conftest import World

LOCAL = "LOCAL-PROMPT> "
REMOTE = re.compile(r"ubuntu@vm1[-\w]*:\S*[$#] ")


@pytest.fixture
def terminal(world: World, tmp_path: Path) -> Iterator[pexpect.spawn]:
    env = {**world.env, "TERM": "xterm-256color", "PS1": LOCAL}
    child = pexpect.spawn(
        "bash",
        ["--norc", "--noprofile", "-i"],
        env=env,
        cwd=str(tmp_path),
        dimensions=(24, 80),
        timeout=20,
    )
    child.expect_exact(LOCAL)
    yield child
    child.close(force=True)


def _local(child: pexpect.spawn, line: str) -> str:
    child.sendline(line)
    child.expect_exact(LOCAL)
    return child.before.decode(errors="replace")


def test_interactive_session(terminal: pexpect.spawn, tmp_path: Path) -> None:
    child = terminal
    _local(child, "stty -g > before.txt")
    child.sendline(f"{GOLEM} vm ssh vm1")
    child.expect(REMOTE)

    child.sendline("stty size; echo TERM=$TERM")
    child.expect(r"(\d+) (\d+)\r\nTERM=(\S+)\r\n")
    assert child.match.groups() == (b"24", b"80", b"xterm-256color")
    child.expect(REMOTE)

    # The local window grows: SIGWINCH must carry the new size to the remote pty.
    # The change travels asynchronously: ask again until it shows, within a deadline.
    child.setwinsize(40, 132)
    deadline = time.monotonic() + 15
    while True:
        child.sendline("stty size")
        child.expect(r"(\d+) (\d+)\r\n")
        size = child.match.groups()
        child.expect(REMOTE)
        if size == (b"40", b"132") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert size == (b"40", b"132")

    # Raw mode: ^C goes to the remote foreground job, not to golem. Sent once the job
    # runs: a ^C that arrives while bash is still starting it can be lost, and the
    # sleep then outlasts the expect below (seen under load).
    child.sendline("sh -c 'echo sleeping; exec sleep 30'")
    child.expect_exact("sleeping\r\n")
    child.sendcontrol("c")
    child.expect(REMOTE)
    child.sendline("echo still here")
    child.expect_exact("still here\r\n")
    child.expect(REMOTE)

    child.sendline("exit 3")
    child.expect_exact(LOCAL)
    assert "rc=3" in _local(child, "echo rc=$?")
    _local(child, "stty -g > after.txt")
    # All modes and control characters (stty -g leaves out only the window size).
    assert (tmp_path / "before.txt").read_text().strip() != ""
    assert (tmp_path / "before.txt").read_text() == (tmp_path / "after.txt").read_text()


def test_tilde_dot_drops_a_hung_session(terminal: pexpect.spawn, tmp_path: Path) -> None:
    child = terminal
    _local(child, "stty -g > before.txt")
    child.sendline(f"{GOLEM} vm ssh vm1")
    child.expect(REMOTE)
    # A "~" that is not at the start of a line, and "~~", are plain characters.
    child.sendline("echo a~b; echo ~~x")
    child.expect_exact("a~b\r\n")
    child.expect(REMOTE)
    child.send("sleep 60\r")  # something that will not end by itself
    child.send("~.")
    child.expect_exact("Connection to vm1 closed.")
    child.expect_exact(LOCAL)
    assert "rc=255" in _local(child, "echo rc=$?")
    _local(child, "stty -g > after.txt")
    assert (tmp_path / "before.txt").read_text() == (tmp_path / "after.txt").read_text()


def test_remote_exit_status_is_the_process_exit_status(world: World) -> None:
    env = {**world.env, "TERM": "xterm"}
    child = pexpect.spawn(
        str(GOLEM), ["vm", "ssh", "vm1"], env=env, dimensions=(24, 80), timeout=20
    )
    child.expect(REMOTE)
    child.sendline("exit 42")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 42


def test_a_lost_session_ends_on_a_line_of_its_own(world: World) -> None:
    env = {**world.env, "TERM": "xterm"}
    child = pexpect.spawn(
        str(GOLEM), ["vm", "ssh", "vm2"], env=env, dimensions=(24, 80), timeout=20
    )
    try:
        child.expect(re.compile(rb"ubuntu@vm2[-\w]*:\S*[$#] "))
        world.devnet_stop("vm2")  # the connection goes away under the session
        child.expect(pexpect.EOF)
    finally:
        world.devnet_start("vm2")
        child.close(force=True)
    text = child.before.decode(errors="replace")
    # Not glued to the remote prompt, and worded for a shell rather than a command.
    assert "\r\nError: The session on VM vm2 ended unexpectedly" in text, text
    assert "before the remote command finished" not in text
    assert child.exitstatus == 1
