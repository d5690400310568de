"""The interactive client: a remote PTY attached to the local terminal.

asyncssh gives us a channel, not a terminal client; this module is the part
OpenSSH's ``ssh`` does itself: raw mode (always restored), TERM, the window
size and its changes, the tty's control characters, an ``~.`` escape to drop a
hung session, and the remote exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field

from requestor.errors import SSHError
from requestor.ssh._asyncssh import asyncssh
from requestor.ssh.exec import connection_lost, locale_env
from requestor.ssh.streams import CHUNK, StdinReader, exit_code, write_all

STDIN, STDOUT = 0, 1
DROPPED_STATUS = 255  # what OpenSSH exits with after ``~.``
_CR, _LF, _TILDE = 0x0D, 0x0A, 0x7E

ESCAPE_HELP = (
    b"\r\nSupported escape sequences (after a newline):\r\n"
    b" ~.  - terminate the connection\r\n"
    b" ~?  - this message\r\n"
    b" ~~  - send the escape character by typing it twice\r\n"
)

# The local tty's control characters, passed on so Backspace, ^C, ^D etc. mean
# on the VM what they mean here (OpenSSH sends the same list).
_CONTROL_CHARACTERS = {
    asyncssh.PTY_VINTR: termios.VINTR,
    asyncssh.PTY_VQUIT: termios.VQUIT,
    asyncssh.PTY_VERASE: termios.VERASE,
    asyncssh.PTY_VKILL: termios.VKILL,
    asyncssh.PTY_VEOF: termios.VEOF,
    asyncssh.PTY_VSTART: termios.VSTART,
    asyncssh.PTY_VSTOP: termios.VSTOP,
    asyncssh.PTY_VSUSP: termios.VSUSP,
    asyncssh.PTY_VREPRINT: termios.VREPRINT,
    asyncssh.PTY_WERASE: termios.VWERASE,
    asyncssh.PTY_VLNEXT: termios.VLNEXT,
}


@dataclass
class EscapeFilter:
    """OpenSSH's escape handling: ``~`` is special only at the start of a line."""

    at_line_start: bool = True
    _pending: bool = field(default=False, repr=False)

    def feed(self, data: bytes) -> tuple[bytes, list[str]]:
        """The bytes to send on, and the escapes seen (``"drop"``, ``"help"``).

        After ``"drop"`` the rest of ``data`` is discarded.
        """
        out = bytearray()
        actions: list[str] = []
        for byte in data:
            if self._pending:
                self._pending = False
                if byte == ord("."):
                    actions.append("drop")
                    return bytes(out), actions
                if byte == ord("?"):
                    actions.append("help")
                    continue
                if byte == _TILDE:
                    out.append(_TILDE)
                    self.at_line_start = False
                    continue
                out.append(_TILDE)  # not an escape: both characters go through
            elif self.at_line_start and byte == _TILDE:
                self._pending = True
                continue
            out.append(byte)
            self.at_line_start = byte in (_CR, _LF)
        return bytes(out), actions


def _terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(STDOUT)
    except OSError:
        try:
            size = os.get_terminal_size(STDIN)
        except OSError:
            return 80, 24
    return size.columns, size.lines


def _terminal_modes() -> dict[int, int]:
    try:
        control = termios.tcgetattr(STDIN)[6]
    except termios.error:
        return {}
    modes: dict[int, int] = {}
    for opcode, index in _CONTROL_CHARACTERS.items():
        value = control[index]
        modes[opcode] = value[0] if isinstance(value, bytes) else int(value)
    return modes


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode for the session; the old settings come back however it ends."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSADRAIN)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def run_shell(conn: asyncssh.SSHClientConnection, command: str | None, name: str) -> int:
    """A session with a PTY: the login shell, or ``command`` (``-t``)."""
    stdin_is_tty = os.isatty(STDIN)
    width, height = _terminal_size()
    process: asyncssh.SSHClientProcess[bytes] = await conn.create_process(
        command,
        encoding=None,
        env=locale_env(),
        request_pty="force",
        term_type=os.environ.get("TERM") or "xterm",
        term_size=(width, height),
        term_modes=_terminal_modes() if stdin_is_tty else {},
    )
    try:
        with raw_terminal(STDIN) if stdin_is_tty else contextlib.nullcontext():
            status = await _attach(process, name, escapes=stdin_is_tty)
    except SSHError:
        _new_line()  # golem's message must not stick to the remote prompt
        raise
    return status


def _new_line() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.buffer.write(b"\r\n")
        sys.stderr.buffer.flush()


async def _attach(process: asyncssh.SSHClientProcess[bytes], name: str, escapes: bool) -> int:
    loop = asyncio.get_running_loop()
    dropped = asyncio.Event()

    def resize() -> None:
        width, height = _terminal_size()
        with contextlib.suppress(OSError, asyncssh.Error):
            process.change_terminal_size(width, height)

    async def feed() -> None:
        reader = StdinReader(STDIN)
        escape = EscapeFilter() if escapes else None
        while data := await reader.read():
            if escape is not None:
                data, actions = escape.feed(data)
                if "help" in actions:
                    await write_all(STDOUT, ESCAPE_HELP)
                if "drop" in actions:
                    dropped.set()
                    return
            if data:
                process.stdin.write(data)
                await process.stdin.drain()
        # On a PTY EOF is a character (^D) the remote tty handles; a closed
        # local stdin (-t with a pipe) is passed on as the channel's EOF.
        with contextlib.suppress(OSError, asyncssh.Error):
            process.stdin.write_eof()

    async def show() -> None:
        while data := await process.stdout.read(CHUNK):
            await write_all(STDOUT, data)

    killed: list[int] = []

    def terminate(signum: int) -> None:
        killed.append(signum)
        dropped.set()

    loop.add_signal_handler(signal.SIGWINCH, resize)
    # SIGTERM/SIGHUP would otherwise kill us with the terminal still raw.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, terminate, signum)
    feeder = asyncio.ensure_future(feed())
    output = asyncio.ensure_future(show())
    drop = asyncio.ensure_future(dropped.wait())
    try:
        await asyncio.wait([output, drop], return_when=asyncio.FIRST_COMPLETED)
        if killed:
            process.close()
            _new_line()
            return 128 + killed[0]
        if dropped.is_set():
            process.close()
            sys.stderr.buffer.write(f"\r\nConnection to {name} closed.\r\n".encode())
            sys.stderr.buffer.flush()
            return DROPPED_STATUS
        error = output.exception()
        if error is not None:
            raise connection_lost(name, error, interactive=True) from None
        await process.wait_closed()
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        for task in (feeder, output, drop):
            task.cancel()
        await asyncio.gather(feeder, output, drop, return_exceptions=True)
    status = exit_code(process.returncode)
    if status is None:
        raise connection_lost(name, None, interactive=True)
    return status
