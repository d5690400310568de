"""``golem vm forward``: a local TCP port that leads to a port on the VM, until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from requestor.errors import InputError, SSHError
from requestor.ssh._asyncssh import asyncssh
from requestor.text import clean

LOCAL_HOST = "127.0.0.1"  # never all interfaces: the tunnel is the user's, not the LAN's
REMOTE_HOST = "localhost"  # as seen from the VM
_SPEC = re.compile(r"^(?:(\d{1,5}):)?(\d{1,5})$")


@dataclass(frozen=True)
class ForwardSpec:
    local_port: int  # 0: any free port
    remote_port: int


def parse_spec(text: str) -> ForwardSpec:
    """``[LOCAL_PORT:]REMOTE_PORT``; without LOCAL_PORT the same number is used locally."""
    match = _SPEC.match(text.strip())
    if match is None:
        raise InputError(
            f"Invalid port forward {text!r}",
            "Use [LOCAL_PORT:]REMOTE_PORT, e.g. 8080:80 or 5432 (0:80 picks a free local port).",
        )
    remote = int(match.group(2))
    local = int(match.group(1)) if match.group(1) is not None else remote
    if not 1 <= remote <= 65535 or not 0 <= local <= 65535:
        raise InputError(f"Invalid port forward {text!r}: ports are 1 to 65535")
    return ForwardSpec(local, remote)


async def forward(
    conn: asyncssh.SSHClientConnection,
    spec: ForwardSpec,
    name: str,
    on_ready: Callable[[str], None],
) -> None:
    """Listen locally and forward each connection until SIGINT/SIGTERM or the
    connection to the VM ends; ``on_ready`` gets the local address."""
    _report_open_failures(conn, spec, name)
    try:
        listener = await conn.forward_local_port(
            LOCAL_HOST, spec.local_port, REMOTE_HOST, spec.remote_port
        )
    except OSError as error:
        # asyncssh's message repeats the address; the errno's text does not.
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise InputError(
            f"Cannot listen on {LOCAL_HOST}:{spec.local_port}: {reason}",
            f"Pick another local port, or 0:{spec.remote_port} for any free one.",
        ) from None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        on_ready(f"{LOCAL_HOST}:{listener.get_port()}")
        stopped = asyncio.ensure_future(stop.wait())
        closed = asyncio.ensure_future(conn.wait_closed())
        await asyncio.wait([stopped, closed], return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, closed):
            task.cancel()
        if not stop.is_set():
            raise SSHError(
                f"The connection to VM {name} was lost; forwarding stopped",
                hint="Check the VM with 'golem vm list --refresh', then try again.",
            )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        listener.close()
        await listener.wait_closed()


def _report_open_failures(conn: asyncssh.SSHClientConnection, spec: ForwardSpec, name: str) -> None:
    """One stderr line when the VM refuses to open a forwarded connection, as
    OpenSSH's "channel N: open failed"; asyncssh would only close the local side.

    asyncssh's local forwarder opens each channel through the connection's
    ``create_connection``; this wraps it for this connection only.
    """
    original = conn.create_connection

    async def create_connection(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        except asyncssh.ChannelOpenError as error:
            reason = clean(error.reason or "refused", 200)
            sys.stderr.write(
                f"Forwarded connection to port {spec.remote_port} on {name}: "
                f"open failed: {reason}\n"
            )
            sys.stderr.flush()
            raise

    setattr(conn, "create_connection", create_connection)  # noqa: B010
