"""The test-harness pieces the benchmarks use, imported in this one place: the
thread-hosted devnet, the fleet filler and the throwaway PostgreSQL server live
with the test harness (tests/support/), since neither distribution ships them."""

from __future__ import annotations

from tests.support.fleet import create_fleet
from tests.support.postgres import PostgresServer, PostgresUnavailable, start_server
from tests.support.threaded import DevnetThread

__all__ = [
    "DevnetThread",
    "PostgresServer",
    "PostgresUnavailable",
    "create_fleet",
    "start_server",
]
