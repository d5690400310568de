"""The devnet pieces the benchmarks use, imported in this one place: the thread-hosted
devnet and the fleet filler live with the test harness (tests/support/), since
neither distribution ships them."""

from __future__ import annotations

from tests.support.fleet import create_fleet
from tests.support.threaded import DevnetThread

__all__ = ["DevnetThread", "create_fleet"]
