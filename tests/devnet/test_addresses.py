"""The devnet's loopback address plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_devnet.network import Devnet, discovery_address_for, provider_addresses
from golem_devnet.provider import ProviderSpec


def test_providers_count_up_and_continue_in_the_next_slash_24() -> None:
    addresses = provider_addresses("127.0.0.11", 246)
    assert addresses[:2] == ["127.0.0.11", "127.0.0.12"]
    assert addresses[243] == "127.0.0.254"
    assert addresses[244:] == ["127.0.1.1", "127.0.1.2"]
    assert len(set(addresses)) == 246
    assert discovery_address_for("127.0.0.11") == "127.0.0.10"


@pytest.mark.parametrize("base", ["10.0.0.11", "192.168.1.11", "128.0.0.11", "nope"])
def test_everything_stays_on_loopback(base: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Devnet(tmp_path, 3, base_address=base)


def test_block_end_is_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        provider_addresses("127.255.255.250", 10)


def test_provider_specs_are_readable_and_varied() -> None:
    specs = [ProviderSpec.for_index(i, f"127.0.0.{11 + i}") for i in range(5)]
    assert [s.provider_id for s in specs][:2] == ["devnet-provider-01", "devnet-provider-02"]
    assert [s.country for s in specs] == ["SE", "US", "DE", "PL", "JP"]
    assert [(s.cpu, s.memory, s.storage) for s in specs[:3]] == [
        (4, 8, 40),
        (8, 16, 80),
        (16, 32, 160),
    ]
    assert specs[0].api_url == "http://127.0.0.11:7466/api/v1"


def _block(address: str) -> int:
    """The /24 an address is in, counted from 127.1.0.0/24."""
    second, third = (int(part) for part in address.split(".")[1:3])
    return (second - 1) * 256 + third


def test_xdist_workers_draw_from_disjoint_address_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers of one parallel run never start devnets on the same addresses, also
    when a devnet of 1000 providers spills past its first /24."""
    from tests.support.threaded import random_base_address

    thousand = provider_addresses("127.1.0.11", 1000)
    spill = _block(thousand[-1]) - _block(thousand[0])  # the /24s after the first
    workers = 4
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    used: dict[int, set[int]] = {}
    for index in range(workers):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        used[index] = set()
        for _ in range(2000):
            base = random_base_address()
            assert base.endswith(".11") and not base.startswith("127.0.")
            used[index].update(range(_block(base), _block(base) + spill + 1))
    for index in range(workers):
        others = set().union(*(used[other] for other in range(workers) if other != index))
        assert used[index].isdisjoint(others)
    # Without xdist one process draws from every block.
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    drawn = {_block(random_base_address()) for _ in range(500)}
    assert max(drawn) > 3 * 254 * 256 // 4
