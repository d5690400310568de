"""The devnet-only admin routes on the discovery server."""

from __future__ import annotations

from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from golem_devnet.admin import add_admin_routes, is_loopback_host_header, is_loopback_peer
from golem_devnet.faults import Faults
from tests.devnet.helpers import FAST
from tests.support.threaded import DevnetThread

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


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.10:9001", True),
        ("127.45.3.10", True),
        ("localhost:9001", True),
        ("LocalHost", True),
        ("[::1]:9001", True),
        ("[::1]", True),
        ("evil.example:9001", False),  # a DNS-rebound name that now points at 127.0.0.10
        ("127.0.0.10.nip.io:9001", False),
        ("localhost.evil.example", False),
        ("10.0.0.1:9001", False),
        ("2130706433", False),
        ("[2001:db8::1]:9001", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback_host_header(host: str | None, allowed: bool) -> None:
    assert is_loopback_host_header(host) is allowed


def _routes(devnet: DevnetThread) -> list[tuple[str, str]]:
    base, vm = devnet.admin_url, "providers/devnet-provider-01/vms/box"
    return [
        ("GET", f"{base}/providers"),
        ("GET", f"{base}/providers/devnet-provider-01"),
        ("PUT", f"{base}/providers/devnet-provider-01/faults"),
        ("PUT", f"{base}/faults"),
        ("POST", f"{base}/{vm}/rotate-host-key"),
    ]


async def test_a_non_loopback_host_header_is_refused_on_every_route(devnet: DevnetThread) -> None:
    # What a page on a DNS-rebound name (resolving to the devnet) gets to send.
    json_header = {"Content-Type": "application/json"}
    for host in ("evil.example:9001", "devnet.localhost.evil.example"):
        for method, url in _routes(devnet):
            status, answer = await _call(
                method, url, data=b'{"offline": true}', headers={**json_header, "Host": host}
            )
            assert status == 403, (method, url, host)
            assert "loopback host" in answer["detail"]
    assert {s["faults"]["offline"] for s in devnet.summaries()} == {False}
    # The same routes with a loopback Host answer (localhost is fine, too).
    netloc = devnet.discovery_url.removeprefix("http://")
    port = netloc.rsplit(":", 1)[1]
    for host in (netloc, f"localhost:{port}", "[::1]"):
        status, _ = await _call("GET", f"{devnet.admin_url}/providers", headers={"Host": host})
        assert status == 200, host


async def test_state_changing_routes_want_json_content_type(devnet: DevnetThread) -> None:
    # A browser's "simple request" (no CORS preflight) can only send these types.
    body = b'{"offline": true}'
    for method, url in _routes(devnet):
        if method == "GET":
            continue
        for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
            headers = {} if content_type is None else {"Content-Type": content_type}
            status, answer = await _call(
                method,
                url,
                data=body,
                headers=headers,
                skip_auto_headers=["Content-Type"],
            )
            assert (status, answer) == (
                415,
                {"detail": "Send the request with Content-Type: application/json"},
            ), (method, url, content_type)
    assert {s["faults"]["offline"] for s in devnet.summaries()} == {False}
    # With the header (and a charset) they work; reads need no header at all.
    status, answer = await _call(
        "PUT",
        f"{devnet.admin_url}/faults",
        data=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert (status, answer["faults"]["offline"]) == (200, True)
    status, _ = await _call(
        "GET", f"{devnet.admin_url}/providers", skip_auto_headers=["Content-Type"]
    )
    assert status == 200


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
