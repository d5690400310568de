"""A throwaway PostgreSQL server on loopback, for the team-mode (PostgreSQL) suites.

``start_server()`` runs ``initdb`` into a fresh folder in /dev/shm (memory: much
faster databases) where there is room, else under the temp dir, starts
the server with ``pg_ctl -w`` on 127.0.0.1 and a free port (password auth,
scram-sha-256, for a superuser with a random password; no Unix socket), and
returns a ``PostgresServer`` that creates and drops databases. The pytest
fixtures around it are in tests/plugins/postgres.py.

PostgreSQL refuses to run as root. When the suite runs as root (CI), the
cluster belongs to ``nobody`` and every PostgreSQL binary runs as that user; its
folder sits directly in a folder others may traverse, never inside a 0700 one.

No stray servers: a watchdog process (this file, run as a script) holds the read
end of a pipe that only the suite's process holds open. When the pipe closes,
because ``stop()`` closed it or because the suite died in any way (Ctrl-C,
``os._exit``, SIGKILL), the watchdog shuts the server down and deletes its folder.

Run as a script, ``python tests/support/postgres.py bindir`` prints the binaries'
folder, or exits 1 saying what is missing (the Makefile uses it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

HOST = "127.0.0.1"
SUPERUSER = "golem_test"
# Who runs PostgreSQL when the suite runs as root: it exists on every Debian-like
# system, and a throwaway cluster in a temp dir needs no account of its own.
UNPRIVILEGED_USER = "nobody"
SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
DEBIAN_ROOT = Path("/usr/lib/postgresql")
# Where the binaries are, when not where find_bindir looks (also: where they are not,
# to see the suite skip).
BINDIR_ENV = "GOLEM_TEST_POSTGRES_BINDIR"
_PORT_ATTEMPTS = 5
_START_TIMEOUT_S = 60
_ADMIN_TIMEOUT_S = 30
SHM = Path("/dev/shm")
# The cluster (~40 MB), a few databases alive at once (~8 MB each) and WAL up to
# max_wal_size, with room to spare.
_SHM_NEEDED_BYTES = 512 * 1024 * 1024
# For speed: nothing here must survive a crash, and the concurrency suites open
# many connections at once (several machines, each with a pool, per test). WAL
# capped, since in memory it costs RAM (the default lets it grow to 1 GB).
_SERVER_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
    "max_wal_size": "64MB",
    "min_wal_size": "32MB",
}


class PostgresUnavailable(Exception):
    """PostgreSQL cannot be found or started here; the message says why."""


def _holds_server_tools(folder: Path) -> bool:
    return all(os.access(folder / tool, os.X_OK) for tool in SERVER_TOOLS)


def find_bindir() -> Path:
    """The folder of the newest installed server binaries (initdb, pg_ctl, postgres):
    $GOLEM_TEST_POSTGRES_BINDIR alone when set, else Debian's
    /usr/lib/postgresql/<major>/bin, then ``pg_config --bindir``."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        if _holds_server_tools(Path(override)):
            return Path(override)
        raise PostgresUnavailable(
            f"{BINDIR_ENV}={override} does not hold PostgreSQL's {', '.join(SERVER_TOOLS)}"
        )
    majors = [p for p in DEBIAN_ROOT.glob("*/bin") if p.parent.name.isdigit()]
    candidates = sorted(majors, key=lambda p: int(p.parent.name), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        # On Debian pg_config comes with the client and libpq-dev too, without a server.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    for bindir in candidates:
        if _holds_server_tools(bindir):
            return bindir
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in "
        f"{DEBIAN_ROOT}/<version>/bin or pg_config --bindir; install PostgreSQL's server, "
        "e.g. apt-get install postgresql (make test does, as root)"
    )


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int


def _server_account() -> _Account | None:
    """Whom PostgreSQL runs as: None for the current user, or an unprivileged one for root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"the tests run as root, which PostgreSQL refuses, and there is no user "
            f"{UNPRIVILEGED_USER!r} to run it as"
        ) from None
    return _Account(UNPRIVILEGED_USER, entry.pw_uid, entry.pw_gid)


def _others_can_traverse(folder: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (folder, *folder.parents))


def _parent_folder(account: _Account | None) -> Path:
    """Where the cluster's folder goes: memory (tmpfs) where there is room, since
    creating a database copies ~250 files (measured on a busy machine: 10 ms on
    /dev/shm, 350 ms on ext4 even with fsync off); else the temp dir. The account
    running the server must be able to reach it (not TMPDIR inside root's 0700 home)."""
    for folder in (SHM, Path(tempfile.gettempdir()), Path("/tmp")):
        try:
            usable = folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
            if usable and folder == SHM:
                fs = os.statvfs(folder)
                usable = fs.f_bavail * fs.f_frsize >= _SHM_NEEDED_BYTES
        except OSError:
            continue
        if usable and (account is None or _others_can_traverse(folder)):
            return folder
    reach = f" that {account.name} can reach" if account else ""
    raise PostgresUnavailable(f"no writable temp folder{reach} for the cluster")


def _make_root(account: _Account | None) -> Path:
    """A fresh folder for the cluster, keyed by pytest-xdist worker (parallel runs)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    parent = _parent_folder(account)
    root = Path(tempfile.mkdtemp(prefix=f"golem-pg-{worker}-", dir=parent))
    if account is not None:
        os.chown(root, account.uid, account.gid)
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _run_tool(
    account: _Account | None, args: list[str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    # Only what the tools need: PG* variables of the caller (PGPORT, PGDATA...) must not steer them.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    as_user: dict[str, Any] = {}
    if account is not None:
        as_user = {"user": account.uid, "group": account.gid, "extra_groups": []}
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            # Beyond pg_ctl's own --timeout, so that it reports first.
            timeout=_START_TIMEOUT_S + 30,
            check=False,
            **as_user,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise PostgresUnavailable(f"{Path(args[0]).name} could not run: {e}") from e


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Admin:
    """One superuser connection to the ``postgres`` database, on an event loop of its
    own in a thread: callable from plain fixtures and from async tests alike."""

    def __init__(self, dsn: str) -> None:
        import asyncio

        try:
            import asyncpg
        except ImportError:
            raise PostgresUnavailable(
                "asyncpg is not installed: pip install -e '.[dev]' (make install does)"
            ) from None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="postgres-admin", daemon=True
        )
        self._thread.start()
        # One statement at a time: an asyncpg connection refuses overlapping ones.
        self._lock = threading.Lock()
        try:
            self._connection = self._run(asyncpg.connect(dsn, timeout=_ADMIN_TIMEOUT_S))
        except Exception as e:
            self._stop_loop()
            raise PostgresUnavailable(f"the server started but refused a connection: {e}") from e

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_ADMIN_TIMEOUT_S)

    def execute(self, sql: str) -> None:
        with self._lock:
            self._run(self._connection.execute(sql, timeout=_ADMIN_TIMEOUT_S))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._connection.close(timeout=_ADMIN_TIMEOUT_S))
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_ADMIN_TIMEOUT_S)
        self._loop.close()


@dataclass
class PostgresServer:
    """A running throwaway server; ``stop()`` (or the suite's end) removes it all."""

    host: str
    port: int
    user: str
    password: str
    bindir: Path
    root: Path
    os_user: str  # whom the server process runs as
    _watchdog: subprocess.Popen[bytes] = field(repr=False)
    _admin: _Admin | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        pid = _postmaster_pid(self.data_dir)
        if pid is None:
            raise RuntimeError("the PostgreSQL server is not running")
        return pid

    def url(self, database: str, *, password: str | None = None) -> str:
        """The SQLAlchemy URL golem takes (GOLEM_REQUESTOR_DATABASE_URL); another
        ``password`` makes one the server refuses."""
        dsn = self.dsn(database, password=password)
        return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    def dsn(self, database: str, *, password: str | None = None) -> str:
        """The same place as a libpq/asyncpg DSN, for ``asyncpg.connect``."""
        secret = self.password if password is None else password
        return f"postgresql://{self.user}:{secret}@{self.host}:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def create_database(self, name: str | None = None, *, template: str = "template1") -> str:
        """Create a database as a copy of ``template`` (empty by default) and return its
        name. FILE_COPY: with fsync off, copying the files beats WAL-logging every page."""
        name = name or f"t_{secrets.token_hex(6)}"
        self._admin_connection().execute(
            f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY'
        )
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending whatever connections a test left open to it."""
        self._admin_connection().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin_connection(self) -> _Admin:
        if self._admin is None:
            raise RuntimeError("the PostgreSQL server is stopped")
        return self._admin

    def stop(self) -> None:
        """Shut the server down and delete its folder (the watchdog does both)."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        _stop_watchdog(self._watchdog, self.root)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _shut_down(data_dir: Path) -> None:
    """Immediate shutdown (SIGQUIT: no checkpoint, the data is thrown away), then wait
    for the postmaster to exit. Root may signal it, unlike ``pg_ctl`` that refuses root."""
    pid = _postmaster_pid(data_dir)
    if pid is None:
        return
    try:
        # A pidfd names this process, not whatever later reuses its number.
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGQUIT)
        select.select([pidfd], [], [], _START_TIMEOUT_S)  # readable once it exited
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def _watch(root: Path) -> None:
    """The watchdog: wait for the suite's end of the pipe to close, then clean up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()
    _shut_down(root / "data")
    shutil.rmtree(root, ignore_errors=True)


def _start_watchdog(root: Path) -> subprocess.Popen[bytes]:
    # Its own session: a Ctrl-C at the terminal must not kill it before the suite does.
    # -I: neither this folder's modules nor PYTHON* variables shadow the standard library.
    return subprocess.Popen(
        [sys.executable, "-I", __file__, "watch", str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop_watchdog(watchdog: subprocess.Popen[bytes], root: Path) -> None:
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    try:
        watchdog.wait(_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()
    if root.exists():  # the watchdog died early (killed): do its work here
        _shut_down(root / "data")
        shutil.rmtree(root, ignore_errors=True)


def _initdb(bindir: Path, root: Path, account: _Account | None, password: str) -> None:
    pwfile = root / "pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    if account is not None:
        os.chown(pwfile, account.uid, account.gid)
    try:
        result = _run_tool(
            account,
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(root / "data"),
                "--username",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=root,
        )
    finally:
        pwfile.unlink()
    if result.returncode != 0:
        detail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise PostgresUnavailable(f"initdb failed (exit {result.returncode}): {detail}")
    with (root / "data" / "postgresql.conf").open("a") as conf:
        conf.write("\n# tests/support/postgres.py\n")
        conf.writelines(f"{key} = {value}\n" for key, value in _SERVER_SETTINGS.items())


def _start_postmaster(bindir: Path, root: Path, account: _Account | None) -> int:
    """Start on a free port and return it; another process may take the port between
    our probe and the server's bind, so a refused bind is retried on a new one."""
    log = root / "server.log"
    for _ in range(_PORT_ATTEMPTS):
        port = _free_port()
        result = _run_tool(
            account,
            [
                str(bindir / "pg_ctl"),
                "--pgdata",
                str(root / "data"),
                "--log",
                str(log),
                "--wait",
                f"--timeout={_START_TIMEOUT_S}",
                "-o",
                f"-p {port}",
                "start",
            ],
            cwd=root,
        )
        if result.returncode == 0:
            return port
        if "could not bind" not in _tail(log, 20):
            break
    raise PostgresUnavailable(
        f"PostgreSQL did not start (pg_ctl exit {result.returncode}): {_tail(log)}"
    )


def start_server() -> PostgresServer:
    """Create a cluster and start it; raises ``PostgresUnavailable`` saying why not."""
    bindir = find_bindir()
    account = _server_account()
    root = _make_root(account)
    watchdog = _start_watchdog(root)
    try:
        password = secrets.token_hex(16)
        _initdb(bindir, root, account, password)
        port = _start_postmaster(bindir, root, account)
        server = PostgresServer(
            host=HOST,
            port=port,
            user=SUPERUSER,
            password=password,
            bindir=bindir,
            root=root,
            os_user=account.name if account else pwd.getpwuid(os.geteuid()).pw_name,
            _watchdog=watchdog,
        )
        server._admin = _Admin(server.dsn("postgres"))
    except BaseException:
        _stop_watchdog(watchdog, root)
        raise
    return server


def main(argv: list[str]) -> int:
    if argv[:1] == ["watch"] and len(argv) == 2:
        _watch(Path(argv[1]))
        return 0
    if argv == ["bindir"]:
        try:
            print(find_bindir())
        except PostgresUnavailable as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    print("usage: postgres.py bindir | watch ROOT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
