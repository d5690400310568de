"""Discovery 0.1.25: an advertisement may carry ``pricing`` (or null); ``platform`` is dropped."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.devnet.helpers import FAST
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(30)

PRICING = {
    "usd_per_core_month": 3.0,
    "usd_per_gb_ram_month": 1.5,
    "usd_per_gb_storage_month": 0.05,
    "glm_per_core_month": 12.0,
    "glm_per_gb_ram_month": 6.0,
    "glm_per_gb_storage_month": 0.2,
}


async def _post(net: DevnetThread, provider_id: str, **extra: Any) -> tuple[int, Any]:
    body = {
        "ip_address": "127.0.0.99",
        "country": "SE",
        "resources": {"cpu": 1, "memory": 1, "storage": 10},
        **extra,
    }
    headers = {"X-Provider-ID": provider_id, "X-Provider-Signature": "sig"}
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.post(
            f"{net.discovery_url}/api/v1/advertisements", json=body, headers=headers
        ) as response,
    ):
        return response.status, await response.json()


async def test_pricing_is_kept_and_platform_dropped(devnet: DevnetThread) -> None:
    status, ad = await _post(devnet, "priced", pricing=PRICING, platform="x86_64")
    assert status == 200
    assert ad["pricing"] == PRICING and "platform" not in ad
    status, ad = await _post(devnet, "unpriced", pricing=None)
    assert status == 200 and ad["pricing"] is None
    status, ad = await _post(devnet, "legacy")
    assert status == 200 and "pricing" not in ad

    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.get(f"{devnet.discovery_url}/api/v1/advertisements/priced") as response,
    ):
        assert (await response.json())["pricing"] == PRICING


async def test_pricing_must_be_an_object_of_numbers(devnet: DevnetThread) -> None:
    status, answer = await _post(devnet, "bad", pricing={"usd_per_core_month": "cheap"})
    assert status == 422
    assert ["body", "pricing", "usd_per_core_month"] in [item["loc"] for item in answer["detail"]]
