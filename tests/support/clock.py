"""A clock for the devnet's discovery that moves only when a test says so."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class ManualClock:
    """``golem_devnet.discovery.Clock``: starts at an arbitrary instant; ``advance``
    moves both readings. Thread-safe: tests advance it while the devnet's thread reads."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._lock = threading.Lock()
        self._elapsed = 0.0
        self._start = start

    def monotonic(self) -> float:
        with self._lock:
            return 1000.0 + self._elapsed

    def wall(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds
