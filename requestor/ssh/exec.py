"""``golem vm ssh NAME -- CMD``: one remote command without a terminal.

stdout and stderr stay separate and unchanged (bytes in, bytes out), local
stdin is streamed in with its EOF, and the remote exit status is returned, so
the command works in scripts and pipes as OpenSSH's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from requestor.errors import SSHError
from requestor.ssh._asyncssh import asyncssh
from requestor.ssh.streams import CHUNK, StdinReader, exit_code, pump_stdin, write_all

STDOUT, STDERR = 1, 2


def locale_env() -> dict[str, str]:
    """What OpenSSH's stock client config sends (SendEnv LANG LC_*)."""
    return {k: v for k, v in os.environ.items() if k == "LANG" or k.startswith("LC_")}


class _StdoutClosed(Exception):
    """Whoever reads our stdout has gone (``... | head``)."""


async def _pump_out(reader: asyncssh.SSHReader[bytes], fd: int) -> None:
    while data := await reader.read(CHUNK):
        try:
            await write_all(fd, data)
        except BrokenPipeError:
            raise _StdoutClosed from None


async def run_command(conn: asyncssh.SSHClientConnection, command: str | None, name: str) -> int:
    """Run ``command`` (None: the login shell) without a PTY; return its exit status."""
    process: asyncssh.SSHClientProcess[bytes] = await conn.create_process(
        command,
        encoding=None,
        env=locale_env(),
        request_pty=False,
    )
    feeder = asyncio.ensure_future(pump_stdin(StdinReader(0), process.stdin))
    try:
        await asyncio.gather(_pump_out(process.stdout, STDOUT), _pump_out(process.stderr, STDERR))
        await process.wait_closed()
    except _StdoutClosed:
        # As a local producer in a pipeline would: end with SIGPIPE's status.
        process.close()
        return 128 + signal.SIGPIPE
    except (OSError, asyncssh.Error) as error:
        raise connection_lost(name, error) from None
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, asyncssh.Error):
            await feeder
    status = exit_code(process.returncode)
    if status is None:
        raise connection_lost(name, None)
    return status


def connection_lost(
    name: str, error: BaseException | None, *, interactive: bool = False
) -> SSHError:
    detail = f": {error}" if error is not None and str(error) else ""
    if interactive:
        message = f"The session on VM {name} ended unexpectedly: the connection was lost{detail}"
    else:
        message = f"The connection to VM {name} was lost before the remote command finished{detail}"
    return SSHError(message, hint="Check the VM with 'golem vm list --refresh', then try again.")
