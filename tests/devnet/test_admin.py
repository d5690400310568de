"""The devnet-only admin routes on the discovery server."""

from __future__ import annotations

from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from requestor.devnet.admin import add_admin_routes, is_loopback_peer
from requestor.devnet.faults import Faults
from requestor.devnet.threaded import DevnetThread
from tests.devnet.helpers import FAST

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.45.3.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.0.2.7", False),
        ("::ffff:192.0.2.7", False),
        ("2001:db8::1", False),
        ("", False),
        (None, False),
        ("not-an-ip", False),
    ],
)
def test_is_loopback_peer(remote: str | None, allowed: bool) -> None:
    assert is_loopback_peer(remote) is allowed


async def test_non_loopback_peer_gets_403() -> None:
    backend = mock.Mock()
    app = web.Application()
    add_admin_routes(app, backend)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        ("192.0.2.7", 40000) if name == "peername" else default
    )
    request = make_mocked_request("GET", "/devnet/providers", app=app, transport=transport)
    match = await app.router.resolve(request)
    response = await match.handler(request)
    assert response.status == 403
    backend.provider_summaries.assert_not_called()


async def _call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.request(method, url, **kwargs) as response,
    ):
        return response.status, await response.json()


async def test_lists_providers_with_faults_and_vms(devnet: DevnetThread) -> None:
    status, providers = await _call("GET", f"{devnet.admin_url}/providers")
    assert status == 200
    assert [p["provider_id"] for p in providers] == [p.provider_id for p in devnet.providers]
    first = providers[0]
    assert first["ip_address"] == devnet.providers[0].ip_address
    assert first["api_url"] == devnet.providers[0].api_url
    assert first["faults"] == Faults().model_dump(mode="json")
    assert first["vms"] == []
    assert first["free"] == first["capacity"]
    status, one = await _call("GET", f"{devnet.admin_url}/providers/devnet-provider-02")
    assert (status, one["country"]) == (200, "US")
    assert (await _call("GET", f"{devnet.admin_url}/providers/nobody"))[0] == 404


async def test_put_faults_replaces_and_validates(devnet: DevnetThread) -> None:
    url = f"{devnet.admin_url}/providers/devnet-provider-01/faults"
    status, answer = await _call(
        "PUT", url, json={"latency_ms": 5, "missing_routes": ["stop", "start"]}
    )
    assert status == 200
    assert answer["faults"]["missing_routes"] == ["start", "stop"]
    status, answer = await _call("PUT", url, json={"hang": False})
    assert answer["faults"] == Faults().model_dump(mode="json")  # replaced, not merged

    for bad in ({"error_rate": 2}, {"missing_routes": ["fly"]}, {"unknown": 1}):
        status, answer = await _call("PUT", url, json=bad)
        assert status == 422, bad
        assert answer["detail"][0]["loc"][0] == "body"
    status, _ = await _call("PUT", f"{devnet.admin_url}/providers/nobody/faults", json={})
    assert status == 404


async def test_put_all_faults(devnet: DevnetThread) -> None:
    status, answer = await _call("PUT", f"{devnet.admin_url}/faults", json={"latency_ms": 1})
    assert status == 200
    assert len(answer["providers"]) == 3
    assert {s["faults"]["latency_ms"] for s in devnet.summaries()} == {1}


def test_faults_describe() -> None:
    assert Faults().describe() == "healthy"
    described = Faults(offline=True, latency_ms=20, missing_routes=frozenset({"stop", "start"}))
    assert described.describe() == "latency_ms=20 offline missing_routes=start,stop"
