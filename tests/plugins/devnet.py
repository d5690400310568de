"""pytest fixtures that run a devnet in a background thread (see tests.support.threaded).

``devnet``: 3 providers on a random loopback block, a free discovery port and a
state dir under ``tmp_path``; torn down after the test.
``devnet_factory(providers=N, **options)``: more devnets, or other options
(``faults=Faults(...)``, ``provider_faults={...}``, ``ad_ttl_s``, ``current=N``
for the current provider generation...); all are
torn down after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.threaded import DevnetThread

DevnetFactory = Callable[..., DevnetThread]


@pytest.fixture
def devnet_factory(tmp_path: Path) -> Iterator[DevnetFactory]:
    started: list[DevnetThread] = []

    def factory(providers: int = 3, **options: Any) -> DevnetThread:
        state_dir = tmp_path / f"devnet-{len(started) + 1}"
        net = DevnetThread(state_dir, providers, **options).start()
        started.append(net)
        return net

    yield factory
    for net in reversed(started):
        net.stop()


@pytest.fixture
def devnet(devnet_factory: DevnetFactory) -> DevnetThread:
    return devnet_factory()
