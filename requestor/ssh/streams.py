"""Our end of a session's byte streams: the local stdin, stdout and stderr.

asyncssh could redirect ``sys.stdin``/``sys.stdout`` itself, but it leaves a tty
or pipe non-blocking afterwards (breaking the shell that started us) and hung
on ``/dev/null``. So we read stdin ourselves: with ``loop.add_reader`` when the
file descriptor can be polled (tty, pipe, socket), from a daemon thread when it
cannot (regular files, ``/dev/null``). Descriptors are never switched to
non-blocking mode: they are shared with the processes around us.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading

from requestor.ssh._asyncssh import asyncssh

CHUNK = 65536


def _pollable(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class StdinReader:
    """``await read()`` gives the next chunk of the descriptor; ``b""`` at EOF."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self._loop = asyncio.get_running_loop()
        self._pollable = _pollable(fd)
        self._queue: asyncio.Queue[bytes] | None = None
        self._eof = False

    async def read(self) -> bytes:
        if self._eof:
            return b""
        data = await (self._poll() if self._pollable else self._from_thread())
        self._eof = not data
        return data

    async def _poll(self) -> bytes:
        ready: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_reader(self.fd, wake)
        try:
            while True:
                await ready
                try:
                    return os.read(self.fd, CHUNK)
                except BlockingIOError:  # someone else made it non-blocking and won the race
                    ready = self._loop.create_future()
                except OSError:  # EIO: the terminal hung up
                    return b""
        finally:
            self._loop.remove_reader(self.fd)

    async def _from_thread(self) -> bytes:
        if self._queue is None:
            # A little read-ahead; the bound is the back-pressure on the thread.
            self._queue = asyncio.Queue(maxsize=4)
            threading.Thread(
                target=self._read_forever, args=(self._queue,), daemon=True, name="golem-stdin"
            ).start()
        return await self._queue.get()

    def _read_forever(self, queue: asyncio.Queue[bytes]) -> None:
        # A daemon thread, not the loop's executor: a read that never returns
        # (stdin left open by the caller) must not keep the process alive.
        while True:
            try:
                data = os.read(self.fd, CHUNK)
            except OSError:
                data = b""
            put = queue.put(data)
            try:
                asyncio.run_coroutine_threadsafe(put, self._loop).result()
            except Exception:  # the loop is closed or the put was cancelled
                put.close()  # never started on a closed loop: no "never awaited" warning
                return  # nobody wants the data any more
            if not data:
                return


async def pump_stdin(reader: StdinReader, writer: asyncssh.SSHWriter[bytes]) -> None:
    """Copy local stdin to the remote's, and pass EOF on."""
    while data := await reader.read():
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError, asyncssh.Error):
        writer.write_eof()


async def write_all(fd: int, data: bytes) -> None:
    """Write everything; the reader at the other end sets the pace.

    The descriptor is usually blocking, and a write simply waits. A parent may
    have made it non-blocking, though (the flag belongs to the open file, shared
    with it): then a full pipe gives ``BlockingIOError``, and we wait for it to
    become writable through the event loop rather than lose output or spin.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _writable(fd)


async def _writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    try:
        loop.add_writer(fd, wake)
    except (OSError, ValueError):  # cannot be polled (a regular file): back off briefly
        await asyncio.sleep(0.01)
        return
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def exit_code(returncode: int | None) -> int | None:
    """OpenSSH's mapping: the remote's status, or 128 + signal when it was killed."""
    if returncode is None:
        return None
    return returncode if returncode >= 0 else 128 + (-returncode)
