"""Provider nodes: POST /vms validation, resources, the deployed quirks, lifecycle answers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.devnet.helpers import FAST, create_vm, new_key, vm_body
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.timeout(30)

KEY, _ = new_key()


async def _call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.request(method, url, **kwargs) as response,
    ):
        return response.status, await response.json()


async def _free(net: DevnetThread, provider_id: str) -> dict[str, int]:
    status, ad = await _call("GET", f"{net.discovery_url}/api/v1/advertisements/{provider_id}")
    assert status == 200
    resources: dict[str, int] = ad["resources"]
    return resources


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"name": "ab"}, ["body", "name"]),
        ({"name": "a" * 65}, ["body", "name"]),
        ({"name": "-abc"}, ["body", "name"]),
        ({"name": "abc-"}, ["body", "name"]),
        ({"name": "Abc"}, ["body", "name"]),
        ({"name": "a_bc"}, ["body", "name"]),
        ({"name": "ab--cd"}, ["body", "name"]),
        ({"resources": {"cpu": 3, "memory": 1, "storage": 10}}, ["body", "resources", "cpu"]),
        ({"resources": {"cpu": 32, "memory": 1, "storage": 10}}, ["body", "resources", "cpu"]),
        ({"resources": {"cpu": 1, "memory": 3, "storage": 10}}, ["body", "resources", "memory"]),
        ({"resources": {"cpu": 1, "memory": 128, "storage": 10}}, ["body", "resources", "memory"]),
        ({"resources": {"cpu": 1, "memory": 1, "storage": 9}}, ["body", "resources", "storage"]),
        ({"resources": {"cpu": 1, "memory": 1}}, ["body", "resources", "storage"]),
        ({"ssh_key": "ecdsa-sha2-nistp256 AAAA"}, ["body", "ssh_key"]),
        ({"ssh_key": "ssh-ed25519"}, ["body", "ssh_key"]),
        ({"ssh_key": None}, ["body", "ssh_key"]),
    ],
)
async def test_create_validation_rules(
    devnet: DevnetThread, change: dict[str, Any], loc: list[str]
) -> None:
    body = {**vm_body("valid-name", KEY), **change}
    body = {key: value for key, value in body.items() if value is not None}
    status, answer = await _call("POST", f"{devnet.providers[0].api_url}/vms", json=body)
    assert status == 422
    assert loc in [item["loc"] for item in answer["detail"]]
    assert all({"loc", "msg", "type"} <= set(item) for item in answer["detail"])


@pytest.mark.parametrize("name", ["abc", "a" * 64, "my-web-server-2", "0x1"])
async def test_create_accepts_valid_names_and_both_key_types(
    devnet: DevnetThread, name: str
) -> None:
    status, info = await _call(
        "POST",
        f"{devnet.providers[0].api_url}/vms",
        json=vm_body(name, "ssh-rsa AAAAB3Nza fake", image="24.04"),
    )
    assert status == 200
    assert info["name"] == info["id"] == name


async def test_create_answers_vm_info_and_access(devnet: DevnetThread) -> None:
    provider = devnet.providers[0]
    status, info = await _call(
        "POST", f"{provider.api_url}/vms", json=vm_body("web-1", KEY, cpu=2, memory=4, storage=20)
    )
    assert status == 200
    assert set(info) == {
        "id",
        "name",
        "status",
        "resources",
        "ip_address",
        "ssh_port",
        "created_at",
        "updated_at",
        "error_message",
    }
    assert info["status"] == "running"
    assert info["resources"] == {"cpu": 2, "memory": 4, "storage": 20}
    assert info["ssh_port"] == 50800
    assert info["ip_address"].startswith("10.161.")
    assert info["error_message"] is None

    status, access = await _call("GET", f"{provider.api_url}/vms/web-1/access")
    assert status == 200
    assert access["ssh_host"] == provider.ip_address
    assert access["ssh_port"] == 50800
    assert access["vm_id"] == "web-1"
    assert access["multipass_name"].startswith("golem-web-1-")

    assert await _call("GET", f"{provider.api_url}/vms/web-1") == (200, info)
    status, listed = await _call("GET", f"{provider.api_url}/vms")
    assert (status, [vm["name"] for vm in listed]) == (200, ["web-1"])


async def test_ports_count_up_from_50800_and_are_reused(devnet: DevnetThread) -> None:
    provider = devnet.providers[2]
    async with aiohttp.ClientSession(timeout=FAST) as session:
        ports = [(await create_vm(session, provider, f"vm-{i}", KEY))["ssh_port"] for i in range(3)]
        assert ports == [50800, 50801, 50802]
        async with session.delete(f"{provider.api_url}/vms/vm-1") as response:
            assert response.status == 200
        assert (await create_vm(session, provider, "vm-9", KEY))["ssh_port"] == 50801
    # Each provider counts on its own address.
    status, info = await _call(
        "POST", f"{devnet.providers[1].api_url}/vms", json=vm_body("other", KEY)
    )
    assert (status, info["ssh_port"]) == (200, 50800)


async def test_resources_are_tracked_refused_and_freed(devnet: DevnetThread) -> None:
    provider = devnet.providers[0]  # 4 CPU, 8 GB, 40 GB
    assert await _free(devnet, provider.provider_id) == {"cpu": 4, "memory": 8, "storage": 40}
    async with aiohttp.ClientSession(timeout=FAST) as session:
        await create_vm(session, provider, "big", KEY, cpu=4, memory=4, storage=10)
        # Re-advertised before the answer came back.
        assert await _free(devnet, provider.provider_id) == {"cpu": 0, "memory": 4, "storage": 30}
        async with session.post(f"{provider.api_url}/vms", json=vm_body("more", KEY)) as r:
            # The deployed quirk: not enough resources is a bare 500.
            assert (r.status, await r.json()) == (500, {"detail": "An unexpected error occurred"})
        async with session.post(
            f"{devnet.providers[1].api_url}/vms", json=vm_body("too-much-memory", KEY, memory=32)
        ) as r:
            assert r.status == 500
        async with session.delete(f"{provider.api_url}/vms/big") as r:
            assert (r.status, await r.json()) == (200, None)
        assert await _free(devnet, provider.provider_id) == {"cpu": 4, "memory": 8, "storage": 40}
        await create_vm(session, provider, "more", KEY)


async def test_reused_name_orphans_the_first_vm(devnet: DevnetThread) -> None:
    provider = devnet.providers[1]  # 8 CPU
    async with aiohttp.ClientSession(timeout=FAST) as session:
        first = await create_vm(session, provider, "twice", KEY, cpu=4)
        second = await create_vm(session, provider, "twice", KEY, cpu=4)
    assert second["ssh_port"] != first["ssh_port"]
    # The orphan keeps its resources: nothing is left.
    assert (await _free(devnet, provider.provider_id))["cpu"] == 0
    status, listed = await _call("GET", f"{provider.api_url}/vms")
    assert (status, [vm["ssh_port"] for vm in listed]) == (200, [second["ssh_port"]])
    summary = next(s for s in devnet.summaries() if s["provider_id"] == provider.provider_id)
    assert sorted((vm["ssh_port"], vm["orphaned"]) for vm in summary["vms"]) == [
        (first["ssh_port"], True),
        (second["ssh_port"], False),
    ]


async def test_unknown_vm_answers_like_deployed_providers(devnet: DevnetThread) -> None:
    api = devnet.providers[0].api_url
    assert await _call("GET", f"{api}/vms/ghost") == (404, {"detail": "VM not found"})
    assert await _call("GET", f"{api}/vms/ghost/access") == (
        500,
        {"detail": "An unexpected error occurred"},
    )
    assert await _call("DELETE", f"{api}/vms/ghost") == (200, None)
    assert await _call("POST", f"{api}/vms/ghost/stop") == (404, {"detail": "VM not found"})
    assert await _call("POST", f"{api}/vms/ghost/start") == (404, {"detail": "VM not found"})
    assert await _call("GET", f"{api}/nothing") == (404, {"detail": "Not Found"})
    assert await _call("PUT", f"{api}/vms") == (405, {"detail": "Method Not Allowed"})


async def test_stop_start_delete_statuses(devnet: DevnetThread) -> None:
    api = devnet.providers[0].api_url
    async with aiohttp.ClientSession(timeout=FAST) as session:
        await create_vm(session, devnet.providers[0], "cycle", KEY)
    status, info = await _call("POST", f"{api}/vms/cycle/stop")
    assert (status, info["status"]) == (200, "stopped")
    status, info = await _call("POST", f"{api}/vms/cycle/stop")  # idempotent
    assert (status, info["status"]) == (200, "stopped")
    status, info = await _call("POST", f"{api}/vms/cycle/start")
    assert (status, info["status"]) == (200, "running")
    assert await _call("DELETE", f"{api}/vms/cycle") == (200, None)
    assert (await _call("GET", f"{api}/vms/cycle"))[0] == 404


async def test_create_with_invalid_json_is_422(devnet: DevnetThread) -> None:
    status, answer = await _call(
        "POST",
        f"{devnet.providers[0].api_url}/vms",
        data=b"[",
        headers={"Content-Type": "application/json"},
    )
    assert status == 422
    assert answer["detail"][0]["type"] == "json_invalid"


async def test_concurrent_creates_never_overcommit(devnet: DevnetThread) -> None:
    provider = devnet.providers[0]  # 4 CPU

    async def one(session: aiohttp.ClientSession, index: int) -> tuple[int, Any]:
        async with session.post(f"{provider.api_url}/vms", json=vm_body(f"c-{index}", KEY)) as r:
            return r.status, await r.json()

    async with aiohttp.ClientSession(timeout=FAST) as session:
        answers = await asyncio.gather(*(one(session, i) for i in range(6)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 200, 200, 200, 500, 500]
    ports = {body["ssh_port"] for status, body in answers if status == 200}
    assert ports == {50800, 50801, 50802, 50803}


async def test_capacity_scale_multiplies_capacity(devnet_factory: Any) -> None:
    net = devnet_factory(providers=1, capacity_scale=4)
    provider = net.providers[0]
    assert (provider.cpu, provider.memory, provider.storage) == (16, 32, 160)
    assert await _free(net, provider.provider_id) == {"cpu": 16, "memory": 32, "storage": 160}
