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
