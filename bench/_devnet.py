"""The devnet pieces the benchmarks use, imported in this one place.

The devnet is moving to its own distribution (and its thread helper and fleet
filler under tests/); when it does, only these imports change.
"""

from __future__ import annotations

from requestor.devnet.fleet import create_fleet
from requestor.devnet.threaded import DevnetThread

__all__ = ["DevnetThread", "create_fleet"]
