"""Run by test_postgres_harness.py in a pytest of its own, where PostgreSQL's
binaries are hidden; not collected by the suite itself (no test_ prefix). Light on
imports: each run starts a Python."""

from __future__ import annotations

from tests.plugins.postgres import DbBackend


def test_needs_the_server(pg_url: str) -> None:
    assert pg_url


def test_runs_on_each_backend(db_backend: DbBackend) -> None:
    assert db_backend.name == "sqlite"
