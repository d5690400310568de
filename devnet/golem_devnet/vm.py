"""A devnet VM: an asyncssh server that stands in for a cloud VM's sshd.

It is not isolation. The shell, the commands and the port forwards all run as
the user who started the devnet, on the host; only the login (user ``ubuntu``,
the keys in its ``~/.ssh/authorized_keys``) and the SFTP view are VM-like.

A VM's folder is its root file system, as far as SFTP sees it::

    <vm>/etc/ssh/ssh_host_ed25519_key(.pub)   host key, kept across stop/start
    <vm>/home/ubuntu/                         HOME and working directory
    <vm>/home/ubuntu/.ssh/authorized_keys     the key from POST /vms, as cloud-init writes it;
                                              read at each login, as sshd does
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import asyncssh

VM_USER = "ubuntu"
HOST_KEY_PATH = Path("etc/ssh/ssh_host_ed25519_key")
HOME_PATH = Path("home/ubuntu")
_CHUNK = 65536
# After the shell exits, output still in flight is drained for this long; a
# background job that keeps the terminal open must not keep the session alive.
_DRAIN_AFTER_EXIT_S = 0.5
_FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"
_MAX_SYMLINKS = 40  # as Linux: more on one path is ELOOP
# The VM's user can write anything into authorized_keys; the server reads no more
# than this of it (far more than any real file holds).
_AUTHORIZED_KEYS_CAP = 1024 * 1024


def prepare_vm_root(root: Path, hostname: str, public_key: str) -> None:
    """Lay out a fresh VM folder: home, authorized key and shell start files."""
    home = root / HOME_PATH
    (home / ".ssh").mkdir(parents=True, mode=0o700, exist_ok=True)
    (root / HOST_KEY_PATH).parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    (home / ".ssh" / "authorized_keys").write_text(public_key.strip() + "\n")
    (home / ".profile").write_text('[ -n "$BASH_VERSION" ] && [ -f ~/.bashrc ] && . ~/.bashrc\n')
    # The real user's dotfiles are never read (HOME points here); this prompt
    # makes it obvious which VM a terminal is on.
    (home / ".bashrc").write_text(f"PS1='{VM_USER}@{hostname}:\\w\\$ '\n")


def load_or_create_host_key(root: Path) -> asyncssh.SSHKey:
    path = root / HOST_KEY_PATH
    if path.exists():
        return asyncssh.read_private_key(path)
    return create_host_key(root)


def create_host_key(root: Path) -> asyncssh.SSHKey:
    """A new ed25519 host key, written over the VM folder's key files (if any)."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = root / HOST_KEY_PATH
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    # Written beside and renamed into place, so a reader never sees half a key.
    # Created 0600 from the start: asyncssh's own writer honours the umask.
    for target, data, mode in (
        (path, key.export_private_key(), 0o600),
        (path.with_suffix(".pub"), key.export_public_key(), 0o644),
    ):
        partial = target.with_name(target.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        partial.replace(target)
    return key


def read_authorized_keys(home: Path) -> asyncssh.SSHAuthorizedKeys | None:
    """The keys ``home/.ssh/authorized_keys`` trusts now; None if it trusts none.

    Read at each login, as sshd does, so keys added or removed over SSH take
    effect at the next connection. Lines that are not keys are skipped (as sshd
    skips them); a key that cloud-init could not use leaves a VM nobody can log
    in to, and the devnet behaves the same instead of refusing the create.
    """
    try:
        with open(home / ".ssh" / "authorized_keys", "rb") as handle:
            text = handle.read(_AUTHORIZED_KEYS_CAP).decode(errors="replace")
        return asyncssh.import_authorized_keys(text)
    except (OSError, ValueError):  # missing, unreadable, or no usable line
        return None


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _set_winsize(fd: int, width: int, height: int, pixwidth: int, pixheight: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


def _take_controlling_tty() -> None:
    # Runs in the child between fork and exec, after setsid(): makes the pty
    # (already on fd 0) the session's terminal, so bash gets job control.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # After the ")" closing the command name: state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def kill_session(sid: int) -> None:
    """Kill every process of the session a VM command started, as a hangup would."""
    for pid in {sid, *_session_members(sid)}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _exit(process: asyncssh.SSHServerProcess[bytes], returncode: int) -> None:
    if returncode < 0:
        name = signal.Signals(-returncode).name.removeprefix("SIG")
        process.exit_with_signal(name)
    else:
        process.exit(returncode)


class _HomeSFTPServer(asyncssh.SFTPServer):
    """SFTP confined to the VM folder; relative paths start in /home/ubuntu, like sshd.

    Paths are resolved here, one component at a time, as a chroot would: a symlink
    met on the way is followed inside the VM folder (an absolute target starts at
    the VM's ``/``, ``..`` stops at it), so no path -- through links or not -- leads
    out of the folder. asyncssh's own chroot mapping follows links with the host's
    view and rewrites link targets; here a link's target is stored and answered as
    the client wrote it.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path) -> None:
        super().__init__(chan, chroot=bytes(root))
        real = self._chroot
        assert real is not None
        self._root = real
        # The folder as the VM's shell knows it (HOME); links it makes hold this path.
        self._host_roots = {real, os.path.abspath(bytes(root))}

    def _resolve(self, path: bytes, follow_last: bool) -> bytes:
        """``path`` as a link-free VM path (``/...``); the last component too if ``follow_last``."""
        root = self._root
        if not path.startswith(b"/"):
            path = b"/" + bytes(HOME_PATH) + b"/" + path
        todo = [part for part in reversed(path.split(b"/")) if part not in (b"", b".")]
        done: list[bytes] = []
        links = 0
        while todo:
            part = todo.pop()
            if part == b"..":
                if done:
                    done.pop()
                continue
            if not todo and not follow_last:
                done.append(part)
                break
            try:
                target = os.readlink(b"/".join([root, *done, part]))
            except OSError:  # not a link, or not there: taken as it is
                done.append(part)
                continue
            links += 1
            if links > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
            target = self._vm_target(target)
            if target.startswith(b"/"):
                done = []
            todo.extend(p for p in reversed(target.split(b"/")) if p not in (b"", b"."))
        return b"/" + b"/".join(done)

    def _vm_target(self, target: bytes) -> bytes:
        """A link target as the VM sees it: host paths into the VM folder become VM paths.

        A VM's shell runs on the host, so ``ln -s ~/x`` stores the host path of the
        VM folder; anything else (relative, or absolute outside it) is left as it is.
        """
        for root in self._host_roots:
            if target == root:
                return b"/"
            if target.startswith(root + b"/"):
                return target[len(root) :]
        return target

    def map_path(self, path: bytes) -> bytes:
        # Links on the way are followed; the last component is not (lstat, remove,
        # rename, readlink... act on a link itself). Operations that follow the last
        # component resolve it first (see below).
        return self._root + self._resolve(path, follow_last=False).rstrip(b"/")

    def _follow(self, path: bytes) -> bytes:
        return self._resolve(path, follow_last=True)

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        return super().open(self._follow(path), pflags, attrs)

    def open56(
        self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs
    ) -> object:
        return super().open56(self._follow(path), desired_access, flags, attrs)

    def stat(self, path: bytes) -> Any:
        return super().stat(self._follow(path))

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> Any:
        return super().setstat(self._follow(path), attrs)

    def statvfs(self, path: bytes) -> Any:
        return super().statvfs(self._follow(path))

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        async for name in super().scandir(self._follow(path)):
            yield name

    def realpath(self, path: bytes) -> bytes:
        return self._follow(path)

    def readlink(self, path: bytes) -> bytes:
        # The target as stored (relative ones untouched); a host path into the VM
        # folder, as a VM shell writes, is answered as the VM path.
        return self._vm_target(os.readlink(self.map_path(path)))

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        # Stored exactly as sent: following it is confined by _resolve anyway.
        os.symlink(oldpath, self.map_path(newpath))

    def exit(self) -> None:
        # asyncssh closes an SFTP subsystem channel without an exit status; OpenSSH's
        # sftp-server exits 0, and OpenSSH 9's scp (SFTP underneath) fails without it.
        # scp -O sessions end through this method too, after sending their own status.
        chan = self.channel
        if chan.get_subsystem() == "sftp":
            with contextlib.suppress(OSError):
                chan.exit(0)


class _SSHServer(asyncssh.SSHServer):
    def __init__(self, vm: VMServer) -> None:
        self._vm = vm

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._vm.connections.add(conn)
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        self._vm.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        # Only ubuntu has a home with keys; anyone else is offered nothing to match.
        keys = read_authorized_keys(self._vm.home) if username == VM_USER else None
        self._conn.set_authorized_keys(keys)
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        # "localhost" on a VM is the VM; here it is the host, so forwards stay on
        # loopback and never reach out of the machine.
        return is_loopback_host(dest_host)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False


class VMServer:
    """One VM's sshd, on an internal loopback port; ``start``/``stop`` as often as needed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / HOME_PATH
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._sessions: set[int] = set()
        self._host_key: asyncssh.SSHKey | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def listening(self) -> bool:
        return self._acceptor is not None

    @property
    def host_key(self) -> asyncssh.SSHKey:
        if self._host_key is None:
            self._host_key = load_or_create_host_key(self.root)
        return self._host_key

    def rotate_host_key(self) -> asyncssh.SSHKey:
        """Replace the host key, as a provider that re-created the VM would.

        The new key is written to the VM folder (so stop/start keeps it) and, if the
        server is listening, shown to every connection from now on; connections
        already open keep the key they were made with, as sshd's do after a reload.
        """
        self._host_key = create_host_key(self.root)
        if self._acceptor is not None:
            self._acceptor.update(server_host_keys=[self._host_key])
        return self._host_key

    async def start(self) -> int:
        """Listen on 127.0.0.1 (any free port) and return that port."""
        if self._acceptor is None:
            self._acceptor = await asyncssh.create_server(
                lambda: _SSHServer(self),
                "127.0.0.1",
                0,
                server_host_keys=[self.host_key],
                process_factory=self._handle,
                sftp_factory=lambda chan: _HomeSFTPServer(chan, self.root),
                allow_scp=True,
                encoding=None,
                # The pty does echo and line editing, as a real terminal would.
                line_editor=False,
                agent_forwarding=False,
                x11_forwarding=False,
                keepalive_interval=30,
                keepalive_count_max=4,
                login_timeout=30,
                # What a client sends arrives in packets of up to 128 KiB within an
                # 8 MiB window (asyncssh's defaults: 32 KiB, 2 MiB), as from an
                # OpenSSH server; uploads otherwise cost the devnet twice the CPU.
                window=8 * 1024 * 1024,
                max_pktsize=128 * 1024,
            )
        port: int = self._acceptor.get_port()
        return port

    async def stop(self) -> None:
        """Refuse new connections, drop current ones and kill what they started."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
            await acceptor.wait_closed()
        for sid in list(self._sessions):
            kill_session(sid)
        connections = list(self.connections)
        for conn in connections:
            conn.abort()
        if connections:
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in connections], timeout=2
            )

    def _environment(self, term: str | None, requested: Mapping[Any, Any]) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "USER": VM_USER,
            "LOGNAME": VM_USER,
            "SHELL": "/bin/bash",
            "PATH": os.environ.get("PATH", _FALLBACK_PATH),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        if term:
            env["TERM"] = term
        # What a stock sshd_config accepts (AcceptEnv LANG LC_*).
        for key, value in requested.items():
            name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
            if name == "LANG" or name.startswith("LC_"):
                env[name] = value.decode(errors="replace") if isinstance(value, bytes) else value
        return env

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        if process.subsystem:
            process.stderr.write(f"subsystem {process.subsystem} is not available\n".encode())
            process.exit(1)
            return
        command: str | None = process.command
        term = process.get_terminal_type()
        if isinstance(term, bytes):
            term = term.decode(errors="replace")
        argv = ["bash", "-c", command] if command is not None else ["bash", "-l"]
        env = self._environment(term, process.env)
        run = self._run_pty(process, argv, env) if term else self._run_pipes(process, argv, env)
        work = asyncio.ensure_future(run)
        closed = asyncio.ensure_future(process.channel.wait_closed())
        try:
            await asyncio.wait([work, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, closed):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
        if work.cancelled():  # the client went away first
            return
        error = work.exception()
        if error is None:
            _exit(process, work.result())
        else:
            process.stderr.write(f"devnet: cannot run the command: {error}\n".encode())
            process.exit(255)

    async def _spawn(
        self, argv: list[str], env: dict[str, str], **kwargs: Any
    ) -> asyncio.subprocess.Process:
        child = await asyncio.create_subprocess_exec(
            *argv, cwd=self.home, env=env, start_new_session=True, **kwargs
        )
        self._sessions.add(child.pid)
        return child

    def _reap(self, child: asyncio.subprocess.Process) -> None:
        kill_session(child.pid)
        self._sessions.discard(child.pid)
        # Close the child's pipes now, synchronously (nothing can cancel it): a
        # pipe whose reader was cancelled stops being read once its buffer is
        # full, never sees EOF, and left to the garbage collector would be closed
        # after this loop is gone. asyncio has no public close for a Process.
        child._transport.close()  # type: ignore[attr-defined]

    async def _run_pipes(
        self, process: asyncssh.SSHServerProcess[bytes], argv: list[str], env: dict[str, str]
    ) -> int:
        PIPE = asyncio.subprocess.PIPE
        child = await self._spawn(argv, env, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        assert child.stdin and child.stdout and child.stderr
        stdin = child.stdin

        async def feed() -> None:
            try:
                while data := await _read_stdin(process, child.pid, None):
                    stdin.write(data)
                    await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                stdin.close()

        feeder = asyncio.ensure_future(feed())
        try:
            await asyncio.gather(
                _pump(child.stdout, process.stdout), _pump(child.stderr, process.stderr)
            )
            return await child.wait()
        finally:
            feeder.cancel()
            self._reap(child)

    async def _run_pty(
        self, process: asyncssh.SSHServerProcess[bytes], argv: list[str], env: dict[str, str]
    ) -> int:
        master, slave = os.openpty()
        try:
            _set_winsize(master, *process.get_terminal_size())
            child = await self._spawn(
                argv, env, stdin=slave, stdout=slave, stderr=slave, preexec_fn=_take_controlling_tty
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        loop = asyncio.get_running_loop()
        output = asyncio.StreamReader(limit=_CHUNK)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(output), os.fdopen(master, "rb", buffering=0)
        )

        async def feed() -> None:
            # EOF from the client is not passed on: sshd does not either on a tty.
            with contextlib.suppress(OSError):
                while data := await _read_stdin(process, child.pid, master):
                    await _write_all(master, data)

        feeder = asyncio.ensure_future(feed())
        pump = asyncio.ensure_future(_pump(output, process.stdout))
        try:
            returncode = await child.wait()
            await asyncio.wait([pump], timeout=_DRAIN_AFTER_EXIT_S)
            return returncode
        finally:
            feeder.cancel()
            pump.cancel()
            transport.close()
            self._reap(child)


async def _read_stdin(
    process: asyncssh.SSHServerProcess[bytes], pid: int, tty: int | None
) -> bytes:
    """The next stdin data; window changes and signals are applied on the way."""
    while True:
        try:
            data: bytes = await process.stdin.read(_CHUNK)
            return data
        except asyncssh.TerminalSizeChanged as change:
            if tty is not None:
                _set_winsize(tty, change.width, change.height, change.pixwidth, change.pixheight)
        except asyncssh.SignalReceived as received:
            _deliver_signal(received.signal, pid, tty)
        except asyncssh.BreakReceived:
            pass


def _deliver_signal(name: str, pid: int, tty: int | None) -> None:
    try:
        number = signal.Signals["SIG" + name.upper()]
    except KeyError:
        return
    with contextlib.suppress(OSError):
        # On a terminal the signal is for the job in the foreground, as ^C is.
        group = os.tcgetpgrp(tty) if tty is not None else pid
        os.killpg(group, number)


async def _pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    with contextlib.suppress(OSError, asyncssh.Error):
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            # The terminal's input queue is full until the program reads it.
            await asyncio.sleep(0.01)
            continue
        view = view[written:]
