"""pytest fixtures around a real PostgreSQL server on loopback (tests.support.postgres).

``pg_server`` (session): one server per test session (per pytest-xdist worker),
started on first use (~1.5 s) and removed at the end; ``host``, ``port``,
``user``, ``password``, ``admin_url``, ``url(db)``, ``dsn(db)`` (both take
``password=`` for one the server refuses; ``dsn`` for
``asyncpg.connect``), ``create_database(template=...)``, ``drop_database(name)``.
``pg_url``: a fresh empty database for this test, as the URL golem takes
(``postgresql+asyncpg://USER:PASSWORD@127.0.0.1:PORT/NAME``); dropped afterwards.
``pg_url_factory()``: more of them in one test (each call a new database).
``db_backend``: parametrized ``sqlite`` / ``postgresql``: a test using it runs
once per backend; for ``postgresql`` GOLEM_REQUESTOR_DATABASE_URL names a fresh
database, in the test's environment and in ``golem_env.env`` (subprocesses).
One backend only: ``@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)``.

Where PostgreSQL cannot be found or started, every test that needs it is
skipped with the reason (shown by -ra); with GOLEM_TEST_REQUIRE_POSTGRESQL=1
(set by ``make test`` when PostgreSQL is installed) it fails instead. Tests
that need PostgreSQL carry the ``postgresql`` marker: ``-m "not postgresql"``
leaves them out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pytest

from tests.support.postgres import PostgresServer, PostgresUnavailable, start_server

if TYPE_CHECKING:
    from tests.conftest import GolemEnv

DATABASE_URL_ENV = "GOLEM_REQUESTOR_DATABASE_URL"
REQUIRE_ENV = "GOLEM_TEST_REQUIRE_POSTGRESQL"
_PG_FIXTURES = {"pg_server", "pg_url", "pg_url_factory"}

BackendName = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class DbBackend:
    """The backend a ``db_backend`` test runs on; ``url`` is None for SQLite (the
    default file in the test's base dir)."""

    name: BackendName
    url: str | None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: needs the PostgreSQL server (tests/plugins/postgres.py)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db_backend") == "postgresql"
        if on_postgres or _PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        server = start_server()
    except PostgresUnavailable as e:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"PostgreSQL is required ({REQUIRE_ENV}=1) but {e}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url_factory(pg_server: PostgresServer) -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def make() -> str:
        name = pg_server.create_database()
        created.append(name)
        return pg_server.url(name)

    yield make
    for name in created:
        pg_server.drop_database(name)


@pytest.fixture
def pg_url(pg_url_factory: Callable[[], str]) -> str:
    return pg_url_factory()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(
    request: pytest.FixtureRequest, golem_env: GolemEnv, monkeypatch: pytest.MonkeyPatch
) -> DbBackend:
    # golem_env, requested first, has cleared every GOLEM_REQUESTOR_* variable.
    name: BackendName = request.param
    if name == "sqlite":
        return DbBackend(name, None)
    # Only here, so that the SQLite half neither starts nor needs the server.
    url: str = request.getfixturevalue("pg_url")
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    golem_env.env[DATABASE_URL_ENV] = url
    return DbBackend(name, url)
