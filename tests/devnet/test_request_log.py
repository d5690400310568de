"""The primitives that make tests deterministic: each provider's log of the requests
it received, and the ``hold`` fault that parks requests until it is changed."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import pytest

from golem_devnet.faults import Faults
from tests.devnet.helpers import FAST, new_key, vm_body
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(60)

KEY, _ = new_key()
ADMIN_HEADERS = {"Content-Type": "application/json"}


async def _call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.request(method, url, **kwargs) as response,
    ):
        return response.status, await response.json()


def _vm_names(net: DevnetThread, index: int = 0) -> list[str]:
    return [vm["name"] for vm in net.summaries()[index]["vms"]]


async def test_every_request_is_logged_with_route_vm_and_times(devnet: DevnetThread) -> None:
    api = devnet.providers[1].api_url
    assert (await _call("POST", f"{api}/vms", json=vm_body("logged", KEY)))[0] == 200
    await _call("GET", f"{api}/vms/logged")
    await _call("POST", f"{api}/vms/logged/stop")
    await _call("GET", f"{api}/nowhere")

    records = devnet.requests(1)
    assert [(r.route, r.method, r.path, r.vm, r.status) for r in records] == [
        ("create", "POST", "/api/v1/vms", "logged", 200),
        ("get", "GET", "/api/v1/vms/logged", "logged", 200),
        ("stop", "POST", "/api/v1/vms/logged/stop", "logged", 200),
        (None, "GET", "/api/v1/nowhere", None, 404),
    ]
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert all(
        a.monotonic <= b.monotonic and a.wall <= b.wall for a, b in itertools.pairwise(records)
    )
    # Per provider, by index or id, filtered by route (either spelling) and VM.
    assert devnet.requests(devnet.providers[1].provider_id) == records
    assert devnet.requests(0) == []
    assert devnet.requests(1, route="POST /vms") == records[:1]
    assert devnet.requests(1, route="stop", vm="logged") == records[2:3]
    assert devnet.requests(1, after=2) == records[2:]


async def test_wait_for_request_returns_once_it_arrives(devnet: DevnetThread) -> None:
    api = devnet.providers[0].api_url
    # Started first: the waiter is parked on the devnet's condition when the request comes.
    waiter = asyncio.ensure_future(
        asyncio.to_thread(devnet.wait_for_request, 0, route="get", vm="later", timeout=20)
    )
    status, _ = await _call("GET", f"{api}/vms/later")
    assert status == 404
    record = await waiter
    assert (record.route, record.vm, record.seq) == ("get", "later", 1)
    # One that has already arrived is found at once; a later one can be asked for.
    assert devnet.wait_for_request(0, route="GET /vms/{name}", timeout=5) == record
    with pytest.raises(TimeoutError):
        devnet.wait_for_request(0, route="get", after=record.seq, timeout=0.2)


async def test_hold_parks_a_route_until_released(devnet: DevnetThread) -> None:
    provider = devnet.providers[0]
    devnet.set_faults(0, latency_ms=0, hold=["POST /vms"])
    async with aiohttp.ClientSession(timeout=FAST) as session:
        create = asyncio.ensure_future(
            session.post(f"{provider.api_url}/vms", json=vm_body("parked", KEY))
        )
        record = await asyncio.to_thread(devnet.wait_for_request, 0, route="create", vm="parked")
        # Received and parked: no VM yet, and other routes still answer.
        assert _vm_names(devnet) == []
        async with session.get(f"{provider.api_url}/vms") as response:
            assert (response.status, await response.json()) == (200, [])
        assert not create.done()

        faults = devnet.release(0)
        assert faults.hold == frozenset()
        response = await create
        async with response:
            assert response.status == 200
            assert (await response.json())["name"] == "parked"
    assert _vm_names(devnet) == ["parked"]
    assert record.seq == 1


async def test_a_held_request_goes_on_after_its_client_is_gone(devnet: DevnetThread) -> None:
    """A client that dies while its create is parked has still asked: released, the
    provider creates the VM (as a deployed provider does)."""
    provider = devnet.providers[2]
    devnet.hold(2, "create")
    async with aiohttp.ClientSession(timeout=FAST) as session:
        create = asyncio.ensure_future(
            session.post(f"{provider.api_url}/vms", json=vm_body("orphan", KEY))
        )
        held = await asyncio.to_thread(devnet.wait_for_request, 2, route="create", vm="orphan")
        assert held.status is None
        create.cancel()
        with pytest.raises(asyncio.CancelledError):
            await create
    devnet.release(2, "POST /vms")
    done = devnet.wait_for_request(2, route="create", vm="orphan", answered=True)
    assert (done.seq, done.status) == (held.seq, 200)
    assert _vm_names(devnet, 2) == ["orphan"]


async def test_hold_keeps_other_faults_and_release_keeps_them_too(devnet: DevnetThread) -> None:
    devnet.set_faults(1, latency_ms=5, missing_routes=["start"])
    held = devnet.hold(1, "DELETE /vms/{name}", "stop")
    assert (held.latency_ms, held.missing_routes, held.hold) == (
        5,
        frozenset({"start"}),
        frozenset({"delete", "stop"}),
    )
    released = devnet.release(1, "stop")
    assert released.hold == frozenset({"delete"}) and released.latency_ms == 5
    assert devnet.release(1).hold == frozenset()
    assert Faults(hold=["POST /vms"]).describe() == "hold=create"


async def test_held_requests_end_when_the_devnet_stops(devnet_factory: Any) -> None:
    net = devnet_factory(providers=1)
    net.hold(0, "list")
    async with aiohttp.ClientSession(timeout=FAST) as session:
        listing = asyncio.ensure_future(session.get(f"{net.providers[0].api_url}/vms"))
        await asyncio.to_thread(net.wait_for_request, 0, route="list")
        await asyncio.to_thread(net.stop)
        # Given up at shutdown: a 503, or the connection cut if that came first.
        (outcome,) = await asyncio.gather(listing, return_exceptions=True)
        if isinstance(outcome, aiohttp.ClientResponse):
            outcome.release()
            assert outcome.status == 503
        else:
            assert isinstance(outcome, aiohttp.ClientError), outcome


async def test_admin_route_reads_the_log_and_sets_a_hold(devnet: DevnetThread) -> None:
    provider = devnet.providers[0]
    admin = f"{devnet.admin_url}/providers/{provider.provider_id}"
    status, answer = await _call(
        "PUT", f"{admin}/faults", json={"hold": ["POST /vms"]}, headers=ADMIN_HEADERS
    )
    assert status == 200 and answer["faults"]["hold"] == ["create"]
    async with aiohttp.ClientSession(timeout=FAST) as session:
        create = asyncio.ensure_future(
            session.post(f"{provider.api_url}/vms", json=vm_body("via-admin", KEY))
        )
        # A long poll: answers as soon as the POST has arrived.
        status, records = await _call(
            "GET", f"{admin}/requests", params={"route": "create", "vm": "via-admin", "wait": "20"}
        )
        assert status == 200
        assert [(r["seq"], r["route"], r["method"], r["vm"]) for r in records] == [
            (1, "create", "POST", "via-admin")
        ]
        assert {"path", "monotonic", "wall"} <= set(records[0])
        status, _ = await _call("PUT", f"{admin}/faults", json={}, headers=ADMIN_HEADERS)
        assert status == 200
        response = await create
        async with response:
            assert response.status == 200
    status, records = await _call("GET", f"{admin}/requests", params={"after": "1"})
    assert (status, records) == (200, [])
    # Nothing new arrives: a bounded wait answers an empty list.
    status, records = await _call("GET", f"{admin}/requests", params={"after": "1", "wait": "0.2"})
    assert (status, records) == (200, [])
    assert (await _call("GET", f"{admin}/requests", params={"route": "nope"}))[0] == 400
    unknown = f"{devnet.admin_url}/providers/nobody/requests"
    assert (await _call("GET", unknown))[0] == 404
