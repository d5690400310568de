"""The one way to reach golem's state: an async engine on the local SQLite file
(the default) or on a shared PostgreSQL database (team mode), and short read or
write transactions with the same meaning on both.

Why the pragmas and the explicit BEGIN: with pysqlite's own transaction handling,
two processes that both upgrade a read to a write fail at once with "database is
locked" (busy_timeout does not help there), and updates can be lost. Write
transactions therefore start with ``BEGIN IMMEDIATE``, which waits on the busy
timeout for the write lock instead.

On a shared PostgreSQL database, write transactions take one transaction-level
advisory lock first, so that writes from every process on every machine are
serialised exactly as SQLite's BEGIN IMMEDIATE serialises them: golem's writes
read, then change (a first host-key pin, a counter, a name check before an
insert), and under PostgreSQL's default READ COMMITTED two such writes at once
would lose one update. The writes are short and never span a network call, so
the cost is small; reads take no lock. A write that records what a provider
already did waits only ``RECORD_BUSY_TIMEOUT_MS`` for it (``lock_timeout``).

Claims (``Database.claim``) make several machines act on each VM once: on
PostgreSQL a VM is claimed with a session-level advisory lock, on SQLite (one
machine, whose write lock already serialises the records) every claim succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from requestor.db.errors import translate_errors
from requestor.errors import ConfigError
from requestor.settings import Settings, redact_url
from requestor.statefiles import create_private_file, private_dir

BUSY_TIMEOUT_MS = 30_000
# A write that records what a provider already did waits this long for the lock,
# then fails, so that the command can say what happened instead of hanging 30 s.
RECORD_BUSY_TIMEOUT_MS = 3_000
_BUSY_MS = "golem_busy_ms"
_BEGIN_MODE = "golem_begin"
# The advisory lock that serialises write transactions on a shared database
# ("golem-w" in ASCII; migrations use their own key).
WRITE_LOCK_KEY = 0x676F6C656D2D77
# A shared database that does not answer the connection in this time is down.
CONNECT_TIMEOUT_S = 10.0
# Connections one golem process keeps to a shared database: bulk actions write
# each VM's result on its own short transaction, many at once.
POSTGRESQL_POOL_SIZE = 10
POSTGRESQL_POOL_OVERFLOW = 20
# The first key of every claim's advisory lock (pg_try_advisory_lock(int, int)),
# the VM's id the second: other applications' locks on the database, and golem's
# own one-key migration lock, live in other key spaces. "golm" in ASCII.
CLAIM_NAMESPACE = 0x676F6C6D


def _prepare_directory(db_path: Path) -> None:
    # An unusable path is a bad setting (exit 2), not a failed operation.
    private_dir(db_path.parent, "GOLEM_REQUESTOR_DB_PATH")
    if db_path.exists() and not os.access(db_path, os.R_OK | os.W_OK):
        raise ConfigError(
            f"The database {db_path} is not readable and writable by you",
            hint="Fix its permissions, or point GOLEM_REQUESTOR_DB_PATH elsewhere.",
        )
    try:
        create_private_file(db_path)
    except OSError as error:
        raise ConfigError(
            f"Cannot create the database {db_path}: {error.strerror}",
            hint="Point GOLEM_REQUESTOR_DB_PATH at a file in a folder you can write.",
        ) from None


def create_engine(location: Path | str) -> AsyncEngine:
    """The engine for a SQLite file (a Path) or a PostgreSQL URL (a str)."""
    if isinstance(location, str):
        return _postgresql_engine(location)
    return _sqlite_engine(location)


def _postgresql_engine(url: str) -> AsyncEngine:
    try:
        import asyncpg  # noqa: F401 - only to say how to install it
    except ImportError:
        raise ConfigError(
            "GOLEM_REQUESTOR_DATABASE_URL names PostgreSQL, but the asyncpg driver is not"
            " installed",
            hint="pip install 'golem-vm-requestor[postgresql]', or unset"
            " GOLEM_REQUESTOR_DATABASE_URL to keep the state in the local SQLite file.",
        ) from None
    engine = create_async_engine(
        url,
        pool_size=POSTGRESQL_POOL_SIZE,
        max_overflow=POSTGRESQL_POOL_OVERFLOW,
        connect_args={
            "timeout": CONNECT_TIMEOUT_S,
            "server_settings": {"application_name": "golem"},
        },
    )

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        # Only the wait for a lock is bounded; statements themselves are short.
        busy_ms = int(options.get(_BUSY_MS, BUSY_TIMEOUT_MS))
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {busy_ms}")
        if options.get(_BEGIN_MODE) == "IMMEDIATE":
            # Released by COMMIT or ROLLBACK, also when the process dies.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")

    return engine


def _sqlite_engine(db_path: Path) -> AsyncEngine:
    """An engine whose connections use WAL, a busy timeout and explicit BEGINs."""
    _prepare_directory(db_path)
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{db_path}",
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the driver; the "begin" hook below emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        # Set at every BEGIN: a pooled connection must not keep another write's wait.
        busy_ms = int(options.get(_BUSY_MS, BUSY_TIMEOUT_MS))
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")
        connection.exec_driver_sql(f"BEGIN {options.get(_BEGIN_MODE, 'DEFERRED')}")

    return engine


class Database:
    """Engine plus session factories. ``async with Database(location) as db`` brings
    the schema to head first (cheaply when it already is), and disposes the engine
    on exit: aiosqlite's worker threads are not daemons and would hang the process.

    ``location`` is the SQLite file (a Path) or a PostgreSQL URL (a str);
    ``Database.for_settings`` picks the one the settings name.
    """

    def __init__(self, location: Path | str) -> None:
        self.location = location
        self.shared = isinstance(location, str)
        # How messages name it: never with the URL's credentials.
        self.label = redact_url(location) if isinstance(location, str) else str(location)
        self.engine = create_engine(location)
        self._read_sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, autoflush=False
        )
        self._write_sessions = async_sessionmaker(
            self.engine.execution_options(**{_BEGIN_MODE: "IMMEDIATE"}),
            expire_on_commit=False,
            autoflush=False,
        )
        self._record_sessions = async_sessionmaker(
            self.engine.execution_options(
                **{_BEGIN_MODE: "IMMEDIATE", _BUSY_MS: RECORD_BUSY_TIMEOUT_MS}
            ),
            expire_on_commit=False,
            autoflush=False,
        )
        # One writer at a time inside this process. Without it, concurrent tasks
        # on pooled connections contend for SQLite's write lock, and SQLite's busy
        # handler backs off with sleeps of up to 100 ms: 200 small writes took
        # over a second. Other processes still wait on busy_timeout. PostgreSQL
        # has row locks: its writers need no turns.
        self._write_turn: contextlib.AbstractAsyncContextManager[object] = (
            contextlib.nullcontext() if self.shared else asyncio.Lock()
        )
        self._claims = _Claims(self.engine, self.label) if self.shared else None

    @classmethod
    def for_settings(cls, settings: Settings) -> Database:
        return cls(settings.database_url or settings.db_path)

    async def __aenter__(self) -> Database:
        from requestor.db.migrate import ensure_schema

        try:
            with translate_errors(self.label, shared=self.shared):
                await ensure_schema(self.engine, self.label)
        except BaseException:
            await self.engine.dispose()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._claims is not None:
            await self._claims.close()
        await self.engine.dispose()

    async def take_claim(self, vm_id: int) -> bool:
        """Claim a VM before acting on it: False when another golem process (maybe
        on another machine) holds it now; never waits for it. Hold the claim
        across the provider's call AND the write that records its answer, then
        ``release_claim``. On SQLite every claim succeeds: one machine, whose
        processes already take turns to record."""
        return True if self._claims is None else await self._claims.take(vm_id)

    async def release_claim(self, vm_id: int) -> None:
        """Give up a claim ``take_claim`` returned True for; finishes even when
        the caller is cancelled meanwhile."""
        if self._claims is not None:
            await self._claims.release(vm_id)

    @asynccontextmanager
    async def claim(self, vm_id: int, *, wait: float = 0.0) -> AsyncIterator[bool]:
        """``async with db.claim(vm.id) as claimed:`` act on the VM only if
        ``claimed`` (``take_claim``), released on exit.

        ``wait``: seconds to keep trying while another golem holds the claim, for
        work that must not be skipped as "handled elsewhere" (an edit of the VM's
        authorized keys is not the same edit as another's); polled with backoff,
        since an advisory lock that blocks would hold up the one claim connection.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        pause = 0.02
        claimed = await self.take_claim(vm_id)
        while not claimed and loop.time() < deadline:
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, 0.5)
            claimed = await self.take_claim(vm_id)
        try:
            yield claimed
        finally:
            if claimed:
                await self.release_claim(vm_id)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A short read-only transaction."""
        async with self._read_sessions() as session:
            with translate_errors(self.label, shared=self.shared):
                async with session.begin():
                    yield session

    @asynccontextmanager
    async def write(self, *, after_remote: bool = False) -> AsyncIterator[AsyncSession]:
        """A short write transaction (``BEGIN IMMEDIATE``), committed on exit.

        ``after_remote``: the write records what a provider already did; it waits
        only ``RECORD_BUSY_TIMEOUT_MS`` for another process's lock, then raises
        ``DatabaseLockedError`` for the caller to say what was not recorded.
        Never hold one across a network call.
        """
        sessions = self._record_sessions if after_remote else self._write_sessions
        async with self._write_turn, sessions() as session:
            with translate_errors(self.label, shared=self.shared):
                async with session.begin():
                    yield session


class _Claims:
    """A process's claims on VMs in a shared database: advisory locks, all on ONE
    dedicated connection (so 200 VMs in flight take one of PostgreSQL's
    connections, not 200), its queries one at a time (a connection runs one).

    Session-level locks outlive transactions, so the connection runs in
    autocommit: it is never left idle in a transaction. A process that dies
    frees its claims with its connection.
    """

    def __init__(self, engine: AsyncEngine, label: str) -> None:
        self._engine = engine
        self._label = label
        self._connection: AsyncConnection | None = None
        self._turn = asyncio.Lock()
        # Releases of claims whose taker was cancelled while the query ran.
        self._orphaned: set[asyncio.Task[None]] = set()

    async def _ask(self, function: str, vm_id: int) -> bool:
        async with self._turn:
            with translate_errors(self._label, shared=True):
                if self._connection is None:
                    connection = await self._engine.connect()
                    self._connection = await connection.execution_options(
                        isolation_level="AUTOCOMMIT"
                    )
                answer = await self._connection.scalar(
                    text(f"SELECT {function}(:namespace, :vm_id)"),
                    {"namespace": CLAIM_NAMESPACE, "vm_id": vm_id},
                )
                return bool(answer)

    async def take(self, vm_id: int) -> bool:
        """Claim ``vm_id`` if no other session holds it; never waits for one that does."""
        asking = asyncio.ensure_future(self._ask("pg_try_advisory_lock", vm_id))
        try:
            # Shielded: a query cut off halfway would leave the shared
            # connection unusable for every other VM's claim.
            return await asyncio.shield(asking)
        except asyncio.CancelledError:
            asking.add_done_callback(lambda done: self._release_if_taken(done, vm_id))
            raise

    def _release_if_taken(self, asking: asyncio.Future[bool], vm_id: int) -> None:
        if asking.cancelled() or asking.exception() is not None or not asking.result():
            return
        release = asyncio.ensure_future(self.release(vm_id))
        self._orphaned.add(release)
        release.add_done_callback(self._orphaned.discard)

    async def release(self, vm_id: int) -> None:
        """Give the claim up. A failure is not an error: a lost connection has
        freed every claim it held."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self._ask("pg_advisory_unlock", vm_id))

    async def close(self) -> None:
        await asyncio.gather(*self._orphaned, return_exceptions=True)
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        with contextlib.suppress(Exception):
            async with self._turn:
                # Back in the pool it would keep any claim still held.
                await connection.execute(text("SELECT pg_advisory_unlock_all()"))
        with contextlib.suppress(Exception):
            await connection.close()
