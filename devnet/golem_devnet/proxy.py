"""The provider's SSH port: a TCP proxy from ``provider_ip:port`` to a VM's sshd.

Deployed providers do the same: the advertised address and an allocated port
forward to the VM's port 22, which is not reachable from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Literal

GarbageMode = Literal["non-ascii", "close", "silent"]

_CHUNK = 256 * 1024  # bulk copies pass in fewer, larger writes


class TcpProxy:
    """Listens on one fixed address and port, and can stop and listen again on it."""

    def __init__(
        self, host: str, port: int, garbage: Callable[[], GarbageMode | None] = lambda: None
    ) -> None:
        self.host = host
        self.port = port
        # Read at each connection: the provider's ``garbage_ssh`` fault of the moment.
        self._garbage = garbage
        # None while the VM boots: connections are accepted and closed at once,
        # as a provider's proxy does while the VM's sshd is not up yet.
        self.target_port: int | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def listen(self) -> None:
        """Bind the port; ``OSError`` if it is taken."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def close(self) -> None:
        """Refuse new connections and cut the current ones."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            garbage = self._garbage()
            if garbage is not None:
                await _speak_garbage(garbage, reader, writer)
                return
            if self.target_port is None:
                return
            try:
                up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                return
            self._writers.add(upstream)
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._writers.discard(end)
                    end.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()
        # Pass a half-close on, so "EOF on stdin" style protocols keep working.
        if sink.can_write_eof() and not sink.is_closing():
            sink.write_eof()


# Not ASCII, so a client that decodes the version line strictly fails there.
_NON_ASCII_VERSION = "SSH-2.0-d\u00e9v\u00f1et \u2603\r\n".encode()
_VERSION = b"SSH-2.0-OpenSSH_9.2\r\n"


async def _speak_garbage(
    mode: GarbageMode, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """What a broken or hostile SSH port does; the caller closes the connection."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        if mode == "non-ascii":
            writer.write(_NON_ASCII_VERSION)
            await writer.drain()
            await reader.read(_CHUNK)  # until the client gives up
        elif mode == "close":
            # A valid version line, then a cut once the client's version line has
            # arrived, where the key exchange begins.
            writer.write(_VERSION)
            await writer.drain()
            await reader.readuntil(b"\n")
        else:
            while await reader.read(_CHUNK):  # silence, until the client leaves
                pass
