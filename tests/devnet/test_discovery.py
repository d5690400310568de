"""The devnet discovery service: routes, filters, errors and expiry of the wire contract."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from golem_devnet.discovery import AdvertisementIn, AdvertisementStore
from tests.devnet.helpers import FAST
from tests.support.clock import ManualClock

pytestmark = pytest.mark.timeout(30)

HEADERS = {"X-Provider-ID": "tester", "X-Provider-Signature": "sig"}
AD = {
    "ip_address": "127.0.0.99",
    "country": "SE",
    "resources": {"cpu": 2, "memory": 4, "storage": 20},
}


async def _get(url: str, **params: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.get(url, params=params) as response,
    ):
        return response.status, await response.json()


async def test_lists_every_provider_with_its_free_resources(devnet: Any) -> None:
    status, ads = await _get(f"{devnet.discovery_url}/api/v1/advertisements")
    assert status == 200
    assert [ad["provider_id"] for ad in ads] == [p.provider_id for p in devnet.providers]
    first = ads[0]
    assert set(first) == {
        "provider_id",
        "ip_address",
        "country",
        "resources",
        "created_at",
        "updated_at",
    }
    provider = devnet.providers[0]
    assert first["ip_address"] == provider.ip_address
    assert first["resources"] == {
        "cpu": provider.cpu,
        "memory": provider.memory,
        "storage": provider.storage,
    }
    # Distinct capacities and countries, so filters can tell providers apart.
    assert len({(p.cpu, p.memory, p.storage) for p in devnet.providers}) == 3
    assert len({p.country for p in devnet.providers}) == 3


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"cpu": "8"}, ["devnet-provider-02", "devnet-provider-03"]),
        ({"memory": "32"}, ["devnet-provider-03"]),
        ({"storage": "80", "cpu": "16"}, ["devnet-provider-03"]),
        ({"country": "US"}, ["devnet-provider-02"]),
        ({"country": "us"}, ["devnet-provider-02"]),
        ({"cpu": "64"}, []),
    ],
)
async def test_filters(devnet: Any, params: dict[str, str], expected: list[str]) -> None:
    status, ads = await _get(f"{devnet.discovery_url}/api/v1/advertisements", **params)
    assert status == 200
    assert [ad["provider_id"] for ad in ads] == expected


@pytest.mark.parametrize("name", ["cpu", "memory", "storage"])
async def test_minimum_below_one_is_adv_002(devnet: Any, name: str) -> None:
    status, body = await _get(f"{devnet.discovery_url}/api/v1/advertisements", **{name: "0"})
    assert status == 400
    assert body["detail"]["code"] == "ADV_002"
    assert name in body["detail"]["message"]


async def test_bad_country_is_adv_002_and_non_integer_is_422(devnet: Any) -> None:
    status, body = await _get(f"{devnet.discovery_url}/api/v1/advertisements", country="SWE")
    assert (status, body["detail"]["code"]) == (400, "ADV_002")
    status, body = await _get(f"{devnet.discovery_url}/api/v1/advertisements", cpu="two")
    assert status == 422
    assert body["detail"][0]["loc"] == ["query", "cpu"]


async def test_get_one_and_unknown(devnet: Any) -> None:
    provider = devnet.providers[1]
    status, ad = await _get(f"{devnet.discovery_url}/api/v1/advertisements/{provider.provider_id}")
    assert status == 200 and ad["ip_address"] == provider.ip_address
    status, body = await _get(f"{devnet.discovery_url}/api/v1/advertisements/nobody")
    assert status == 404
    assert body == {"detail": {"code": "ADV_004", "message": "Advertisement not found"}}


async def test_health_and_unknown_route(devnet: Any) -> None:
    assert await _get(f"{devnet.discovery_url}/health") == (200, {"status": "healthy"})
    assert await _get(f"{devnet.discovery_url}/nothing") == (404, {"detail": "Not Found"})


async def test_post_replaces_and_delete_checks_the_owner(devnet_factory: Any) -> None:
    clock = ManualClock()
    devnet = devnet_factory(providers=3, clock=clock)
    url = f"{devnet.discovery_url}/api/v1/advertisements"
    async with aiohttp.ClientSession(timeout=FAST) as session:
        async with session.post(url, json=AD, headers=HEADERS) as response:
            assert response.status == 200
            first = await response.json()
        assert first["provider_id"] == "tester" and first["resources"] == AD["resources"]
        clock.advance(0.01)  # so the refresh's updated_at is later
        changed = {**AD, "resources": {"cpu": 1, "memory": 1, "storage": 10}}
        async with session.post(url, json=changed, headers=HEADERS) as response:
            second = await response.json()
        assert second["created_at"] == first["created_at"]
        assert second["updated_at"] > first["updated_at"]
        async with session.get(url, params={"cpu": 2, "country": "SE"}) as response:
            assert "tester" not in [ad["provider_id"] for ad in await response.json()]

        other = {**HEADERS, "X-Provider-ID": "someone-else"}
        async with session.delete(f"{url}/tester", headers=other) as response:
            assert response.status == 401
            assert (await response.json())["detail"]["code"] == "AUTH_004"
        async with session.delete(f"{url}/tester") as response:
            assert response.status == 422
        async with session.delete(f"{url}/tester", headers=HEADERS) as response:
            assert (response.status, await response.json()) == (200, {"status": "success"})
        async with session.delete(f"{url}/tester", headers=HEADERS) as response:
            assert response.status == 404


@pytest.mark.parametrize(
    ("headers", "body", "loc"),
    [
        ({"X-Provider-Signature": "s"}, AD, ["header", "x-provider-id"]),
        ({"X-Provider-ID": "p"}, AD, ["header", "x-provider-signature"]),
        (HEADERS, {**AD, "ip_address": "not-an-ip"}, ["body", "ip_address"]),
        (HEADERS, {**AD, "country": "Sweden"}, ["body", "country"]),
        (HEADERS, {"ip_address": "127.0.0.9", "country": "SE"}, ["body", "resources"]),
        (
            HEADERS,
            {**AD, "resources": {"cpu": -1, "memory": 1, "storage": 1}},
            ["body", "resources", "cpu"],
        ),
    ],
)
async def test_post_validation_is_422(
    devnet: Any, headers: dict[str, str], body: dict[str, Any], loc: list[str]
) -> None:
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.post(
            f"{devnet.discovery_url}/api/v1/advertisements", json=body, headers=headers
        ) as response,
    ):
        assert response.status == 422
        detail = (await response.json())["detail"]
    assert loc in [item["loc"] for item in detail]
    assert all({"loc", "msg", "type"} <= set(item) for item in detail)


async def test_invalid_json_body_is_422(devnet: Any) -> None:
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.post(
            f"{devnet.discovery_url}/api/v1/advertisements", data=b"{nope", headers=HEADERS
        ) as response,
    ):
        assert response.status == 422
        assert (await response.json())["detail"][0]["type"] == "json_invalid"


def test_store_expires_stale_advertisements() -> None:
    clock = ManualClock()
    store = AdvertisementStore(ttl_s=300, clock=clock)
    store.put("a", AdvertisementIn.model_validate(AD))
    clock.advance(200)
    store.put("b", AdvertisementIn.model_validate(AD))
    clock.advance(150)  # a: 350 s old, b: 150 s old
    assert [ad["provider_id"] for ad in store.active()] == ["b"]
    assert store.get("a") is None
    # A provider that comes back gets a fresh record.
    fresh = store.put("a", AdvertisementIn.model_validate(AD))
    assert fresh["created_at"] == fresh["updated_at"]
    assert len(store.active()) == 2


async def test_stale_advertisements_disappear_over_http(devnet_factory: Any) -> None:
    # Discovery's clock moves only when the test says: expiry is a step, not a wait.
    clock = ManualClock()
    net = devnet_factory(providers=2, ad_ttl_s=300, readvertise_s=3600, clock=clock)
    status, ads = await _get(f"{net.discovery_url}/api/v1/advertisements")
    assert len(ads) == 2
    clock.advance(300)  # exactly the TTL: still listed
    status, ads = await _get(f"{net.discovery_url}/api/v1/advertisements")
    assert len(ads) == 2
    clock.advance(1)
    status, ads = await _get(f"{net.discovery_url}/api/v1/advertisements")
    assert (status, ads) == (200, [])


async def test_providers_readvertise_periodically(devnet_factory: Any) -> None:
    # Re-advertising runs on real time (every 0.05 s) and discovery's TTL on the
    # test's clock: after 400 clock seconds (more than the 300 s TTL) the ad is
    # listed only thanks to a refresh sent after the clock had moved.
    clock = ManualClock()
    net = devnet_factory(providers=1, ad_ttl_s=300, readvertise_s=0.05, clock=clock)
    clock.advance(200)
    # Two rounds: the first may have been under way before the clock moved.
    await asyncio.to_thread(net.wait_for_readvertise, 2)
    clock.advance(200)
    status, ads = await _get(f"{net.discovery_url}/api/v1/advertisements")
    assert (status, len(ads)) == (200, 1)
    assert ads[0]["updated_at"] > ads[0]["created_at"]  # the same record, refreshed
