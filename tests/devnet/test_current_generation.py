"""The current provider generation (wire contract, "Current provider generation"),
served next to the legacy one in the same devnet."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from golem_devnet.current import (
    PAYMENTS_OFF,
    STREAM_REQUIRED,
    ZERO_ADDRESS,
    CurrentOptions,
    Pricing,
)
from golem_devnet.network import Devnet
from tests.devnet.helpers import FAST, new_key, refuses, ssh, vm_body
from tests.plugins.devnet import DevnetFactory
from tests.support.threaded import DevnetThread, ProviderHandle

pytestmark = pytest.mark.timeout(60)

KEY, _ = new_key()
PRICING_KEYS = {
    "usd_per_core_month",
    "usd_per_gb_ram_month",
    "usd_per_gb_storage_month",
    "glm_per_core_month",
    "glm_per_gb_ram_month",
    "glm_per_gb_storage_month",
}
VM_INFO_KEYS = {
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
ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")


async def _call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.request(method, url, **kwargs) as response,
    ):
        return response.status, await response.json()


async def _ad(net: DevnetThread, provider_id: str) -> dict[str, Any]:
    status, ad = await _call("GET", f"{net.discovery_url}/api/v1/advertisements/{provider_id}")
    assert status == 200
    result: dict[str, Any] = ad
    return result


async def _run(provider: ProviderHandle, port: int, command: str = "echo hi") -> str:
    async with await ssh(provider.ip_address, port, KEY) as conn:
        result = await conn.run(command, check=True)
    return str(result.stdout)


def _pair(devnet_factory: DevnetFactory, **options: Any) -> tuple[DevnetThread, Any, Any]:
    """A devnet with one legacy provider and one current provider (the last)."""
    net = devnet_factory(providers=2, current=1, **options)
    legacy, current = net.providers
    return net, legacy, current


def _is_aware(stamp: str) -> bool:
    return datetime.fromisoformat(stamp).tzinfo is not None


# --- side by side ----------------------------------------------------------------------


async def test_both_generations_side_by_side(devnet_factory: DevnetFactory) -> None:
    net = devnet_factory(providers=4, current=2)
    assert [p.generation for p in net.providers] == ["legacy", "legacy", "current", "current"]
    assert [s["generation"] for s in net.summaries()] == ["legacy", "legacy", "current", "current"]
    legacy, current = net.providers[0], net.providers[3]

    for route in (
        "/provider/info",
        "/summary",
        "/payments/streams",
        "/vms/jobs/abc",
        "/vms/x/stream",
    ):
        assert await _call("GET", legacy.api_url + route) == (404, {"detail": "Not Found"})
    assert await _call("POST", legacy.api_url + "/admin/shutdown") == (404, {"detail": "Not Found"})

    # The same create works on both, synchronously without ?async=true.
    for provider in (legacy, current):
        status, info = await _call("POST", f"{provider.api_url}/vms", json=vm_body("both", KEY))
        assert status == 200, info
        assert set(info) == VM_INFO_KEYS and info["status"] == "running"
        assert "hi" in await _run(provider, info["ssh_port"])

    # Legacy keeps its start route and its answers; current has no start route.
    assert (await _call("POST", f"{legacy.api_url}/vms/both/stop"))[0] == 200
    status, info = await _call("POST", f"{legacy.api_url}/vms/both/start")
    assert status == 200 and info["status"] == "running"
    assert await _call("GET", f"{legacy.api_url}/vms/nope") == (404, {"detail": "VM not found"})
    assert await _call("POST", f"{current.api_url}/vms/both/start") == (
        404,
        {"detail": "Not Found"},
    )


def test_current_count_and_options_are_checked(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="current must be between 0"):
        Devnet(tmp_path, 2, current=3)
    with pytest.raises(ValueError, match="not current"):
        Devnet(
            tmp_path,
            2,
            current=1,
            provider_current_options={"devnet-provider-01": CurrentOptions(payments=True)},
        )


# --- async create and jobs ------------------------------------------------------------------


async def test_async_create_job_creating_then_ready_then_ssh(
    devnet_factory: DevnetFactory,
) -> None:
    net, _, current = _pair(devnet_factory, current_options=CurrentOptions(hold_jobs=True))
    base = current.api_url
    status, accepted = await _call("POST", f"{base}/vms?async=true", json=vm_body("web-1", KEY))
    assert status == 202
    assert set(accepted) == {"job_id", "vm_id", "status"}
    assert accepted["vm_id"] == "web-1" and accepted["status"] == "creating"
    job_id = accepted["job_id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", job_id)

    status, job = await _call("GET", f"{base}/vms/jobs/{job_id}")
    assert status == 200
    assert set(job) == {"job_id", "vm_id", "status", "error", "created_at", "updated_at"}
    assert (job["status"], job["error"], job["vm_id"]) == ("creating", None, "web-1")
    assert _is_aware(job["created_at"]) and _is_aware(job["updated_at"])

    status, info = await _call("GET", f"{base}/vms/web-1")
    assert status == 200
    assert (info["status"], info["ip_address"], info["ssh_port"]) == ("creating", None, None)
    status, vms = await _call("GET", f"{base}/vms")
    assert status == 200 and [vm["name"] for vm in vms] == ["web-1"]
    status, access = await _call("GET", f"{base}/vms/web-1/access")
    assert status == 202
    assert access == {
        "vm_id": "web-1",
        "multipass_name": None,
        "status": "creating",
        "ssh_port": None,
    }

    assert net.release_jobs(current.provider_id) == [job_id]
    status, job = await _call("GET", f"{base}/vms/jobs/{job_id}")
    assert (job["status"], job["error"]) == ("ready", None)
    assert _is_aware(job["updated_at"])
    status, info = await _call("GET", f"{base}/vms/web-1")
    assert info["status"] == "running" and info["ip_address"] and info["ssh_port"]
    status, access = await _call("GET", f"{base}/vms/web-1/access")
    assert status == 200
    assert access["ssh_host"] == current.ip_address and access["ssh_port"] == info["ssh_port"]
    assert access["multipass_name"].startswith("golem-web-1-")
    assert "hi" in await _run(current, access["ssh_port"])


async def test_async_create_without_hold_is_ready_when_waited_for(
    devnet_factory: DevnetFactory,
) -> None:
    net, _, current = _pair(devnet_factory)
    status, accepted = await _call(
        "POST", f"{current.api_url}/vms", params={"async": "true"}, json=vm_body("quick", KEY)
    )
    assert status == 202
    job = net.wait_job(current.provider_id, accepted["job_id"])
    assert job["status"] == "ready"
    status, info = await _call("GET", f"{current.api_url}/vms/quick")
    assert "hi" in await _run(current, info["ssh_port"])


async def test_failed_job_creates_nothing(devnet_factory: DevnetFactory) -> None:
    net, _, current = _pair(devnet_factory, current_options=CurrentOptions(fail_jobs=True))
    free_before = (await _ad(net, current.provider_id))["resources"]
    status, accepted = await _call(
        "POST", f"{current.api_url}/vms?async=true", json=vm_body("doomed", KEY)
    )
    assert status == 202
    job = net.wait_job(current.provider_id, accepted["job_id"])
    assert job["status"] == "failed"
    assert job["error"].startswith("Failed to create VM doomed: ")
    assert await _call("GET", f"{current.api_url}/vms/jobs/{accepted['job_id']}") == (200, job)
    assert await _call("GET", f"{current.api_url}/vms/doomed") == (
        404,
        {"detail": "VM doomed not found"},
    )
    assert (await _ad(net, current.provider_id))["resources"] == free_before

    # Not enough resources in the background is a failed job too.
    net.set_current_options(current.provider_id)
    body = vm_body("too-big", KEY, cpu=16, memory=64, storage=1000)
    status, accepted = await _call("POST", f"{current.api_url}/vms?async=true", json=body)
    assert status == 202
    job = net.wait_job(current.provider_id, accepted["job_id"])
    assert job["status"] == "failed" and job["error"].startswith("Failed to create VM too-big: ")


async def test_unknown_job_is_404(devnet_factory: DevnetFactory) -> None:
    _, _, current = _pair(devnet_factory)
    assert await _call(
        "GET", f"{current.api_url}/vms/jobs/00000000-0000-0000-0000-000000000000"
    ) == (
        404,
        {"detail": "job not found"},
    )


async def test_running_without_ssh_port_then_access_202_then_200(
    devnet_factory: DevnetFactory,
) -> None:
    net, _, current = _pair(devnet_factory, current_options=CurrentOptions(hold_ssh_proxy=True))
    base = current.api_url
    status, accepted = await _call("POST", f"{base}/vms?async=true", json=vm_body("slow", KEY))
    assert net.wait_job(current.provider_id, accepted["job_id"])["status"] == "ready"

    status, info = await _call("GET", f"{base}/vms/slow")
    assert (info["status"], info["ssh_port"]) == ("running", None) and info["ip_address"]
    status, access = await _call("GET", f"{base}/vms/slow/access")
    assert status == 202
    assert access["status"] == "creating" and access["ssh_port"] is None
    assert access["vm_id"] == "slow" and access["multipass_name"].startswith("golem-slow-")
    status, summary = await _call("GET", f"{base}/summary")
    assert summary["vms"] == [
        {
            "id": "slow",
            "status": "running",
            "ssh_port": None,
            "resources": {"cpu": 1, "memory": 1, "storage": 10},
        }
    ]

    assert net.release_ssh_proxy(current.provider_id) == ["slow"]
    status, access = await _call("GET", f"{base}/vms/slow/access")
    assert status == 200 and access["ssh_port"]
    status, info = await _call("GET", f"{base}/vms/slow")
    assert info["ssh_port"] == access["ssh_port"]
    assert "hi" in await _run(current, access["ssh_port"])


async def test_sync_create_also_waits_for_its_ssh_proxy(devnet_factory: DevnetFactory) -> None:
    net, _, current = _pair(devnet_factory, current_options=CurrentOptions(hold_ssh_proxy=True))
    status, info = await _call("POST", f"{current.api_url}/vms", json=vm_body("sync", KEY))
    assert status == 200
    assert (info["status"], info["ssh_port"]) == ("running", None)
    assert (await _call("GET", f"{current.api_url}/vms/sync/access"))[0] == 202
    net.release_ssh_proxy(current.provider_id)
    assert (await _call("GET", f"{current.api_url}/vms/sync/access"))[0] == 200


async def test_delete_during_a_held_job_fails_it(devnet_factory: DevnetFactory) -> None:
    net, _, current = _pair(devnet_factory, current_options=CurrentOptions(hold_jobs=True))
    status, accepted = await _call(
        "POST", f"{current.api_url}/vms?async=true", json=vm_body("gone", KEY)
    )
    assert status == 202
    assert await _call("DELETE", f"{current.api_url}/vms/gone") == (200, None)
    job = net.wait_job(current.provider_id, accepted["job_id"])
    assert job["status"] == "failed" and job["error"].startswith("Failed to create VM gone")
    assert (await _call("GET", f"{current.api_url}/vms/gone"))[0] == 404
    assert await _call("DELETE", f"{current.api_url}/vms/never-was") == (200, None)


# --- stop, and no start ------------------------------------------------------------------------


async def test_stop_is_final_and_unknown_names_are_404(devnet_factory: DevnetFactory) -> None:
    _, _, current = _pair(devnet_factory)
    base = current.api_url
    status, info = await _call("POST", f"{base}/vms", json=vm_body("stopme", KEY))
    port = info["ssh_port"]
    assert "hi" in await _run(current, port)

    status, stopped = await _call("POST", f"{base}/vms/stopme/stop")
    assert status == 200
    assert (stopped["status"], stopped["ip_address"], stopped["ssh_port"]) == (
        "stopped",
        None,
        port,
    )
    assert refuses(current.ip_address, port)
    status, info = await _call("GET", f"{base}/vms/stopme")
    assert (info["status"], info["ip_address"], info["ssh_port"]) == ("stopped", None, port)

    for route in ("start", "restart"):
        assert await _call("POST", f"{base}/vms/stopme/{route}") == (404, {"detail": "Not Found"})
    assert refuses(current.ip_address, port)

    missing = {"detail": "VM ghost not found"}
    assert await _call("POST", f"{base}/vms/ghost/stop") == (404, missing)
    assert await _call("GET", f"{base}/vms/ghost") == (404, missing)
    # Quirk kept from the legacy generation.
    assert (await _call("GET", f"{base}/vms/ghost/access"))[0] == 500


async def test_list_is_the_real_list(devnet_factory: DevnetFactory) -> None:
    _, _, current = _pair(devnet_factory)
    for name in ("one", "two"):
        await _call("POST", f"{current.api_url}/vms", json=vm_body(name, KEY))
    status, vms = await _call("GET", f"{current.api_url}/vms")
    assert status == 200
    assert sorted(vm["name"] for vm in vms) == ["one", "two"]
    assert all(set(vm) == VM_INFO_KEYS for vm in vms)


# --- provider info, summary, pricing ----------------------------------------------------------


async def test_provider_info_with_payments_off(devnet_factory: DevnetFactory) -> None:
    _, _, current = _pair(devnet_factory)
    status, info = await _call("GET", f"{current.api_url}/provider/info")
    assert status == 200
    assert info == {
        "provider_id": current.provider_id,
        "stream_payment_address": ZERO_ADDRESS,
        "glm_token_address": ZERO_ADDRESS,
        "ip_address": current.ip_address,
        "country": current.country,
        "platform": "x86_64",
    }
    assert ZERO_ADDRESS == "0x" + "0" * 40
    for route in ("/vms/anything/stream", "/payments/streams"):
        assert await _call("GET", current.api_url + route) == (400, {"detail": PAYMENTS_OFF})


async def test_summary(devnet_factory: DevnetFactory) -> None:
    _, _, current = _pair(devnet_factory)
    await _call("POST", f"{current.api_url}/vms", json=vm_body("sum", KEY, cpu=2, memory=2))
    status, summary = await _call("GET", f"{current.api_url}/summary")
    assert status == 200
    assert set(summary) == {"status", "resources", "pricing", "vms", "env"}
    assert summary["status"] == "running" and summary["env"] == {}
    total = {"cpu": current.cpu, "memory": current.memory, "storage": current.storage}
    assert summary["resources"]["total"] == total
    assert summary["resources"]["available"] == {
        "cpu": current.cpu - 2,
        "memory": current.memory - 2,
        "storage": current.storage - 10,
    }
    assert set(summary["pricing"]) == PRICING_KEYS
    [vm] = summary["vms"]
    assert set(vm) == {"id", "status", "ssh_port", "resources"}
    assert vm["id"] == "sum" and vm["status"] == "running" and vm["ssh_port"]


async def test_pricing_in_advertisements_and_summary(devnet_factory: DevnetFactory) -> None:
    custom = Pricing(
        usd_per_core_month=10,
        usd_per_gb_ram_month=2,
        usd_per_gb_storage_month=0.1,
        glm_per_core_month=40,
        glm_per_gb_ram_month=8,
        glm_per_gb_storage_month=0.4,
    )
    net = devnet_factory(
        providers=4,
        current=3,
        provider_current_options={
            "devnet-provider-03": CurrentOptions(pricing=custom),
            "devnet-provider-04": CurrentOptions(advertise_pricing=False),
        },
    )
    legacy, default, priced, unpriced = net.providers
    ads = {p.provider_id: await _ad(net, p.provider_id) for p in net.providers}
    assert "pricing" not in ads[legacy.provider_id]
    assert all("platform" not in ad for ad in ads.values())  # discovery drops it
    assert set(ads[default.provider_id]["pricing"]) == PRICING_KEYS
    assert ads[priced.provider_id]["pricing"] == custom.model_dump()
    assert ads[unpriced.provider_id]["pricing"] is None
    # Different providers have different default prices.
    assert ads[default.provider_id]["pricing"] != Pricing.for_index(2).model_dump()
    _, summary = await _call("GET", f"{priced.api_url}/summary")
    assert summary["pricing"] == custom.model_dump()
    _, summary = await _call("GET", f"{default.api_url}/summary")
    assert summary["pricing"] == ads[default.provider_id]["pricing"]
    # The list route serves it too.
    _, listed = await _call("GET", f"{net.discovery_url}/api/v1/advertisements")
    assert [ad.get("pricing", "absent") is None for ad in listed] == [False, False, False, True]


async def test_identity_mismatch_option(devnet_factory: DevnetFactory) -> None:
    impostor = "0x" + "ab" * 20
    net, _, current = _pair(
        devnet_factory, current_options=CurrentOptions(provider_info_id=impostor)
    )
    assert (await _ad(net, current.provider_id))["provider_id"] == current.provider_id
    _, info = await _call("GET", f"{current.api_url}/provider/info")
    assert info["provider_id"] == impostor


# --- payment-required mode --------------------------------------------------------------------


async def test_payment_required_refuses_create_without_stream(
    devnet_factory: DevnetFactory,
) -> None:
    net, _, current = _pair(devnet_factory, current_options=CurrentOptions(payments=True))
    base = current.api_url
    _, info = await _call("GET", f"{base}/provider/info")
    assert ADDRESS.match(info["stream_payment_address"])
    assert info["stream_payment_address"] != ZERO_ADDRESS
    assert info["glm_token_address"] != ZERO_ADDRESS
    free_before = (await _ad(net, current.provider_id))["resources"]

    refused = (400, {"detail": STREAM_REQUIRED})
    assert await _call("POST", f"{base}/vms", json=vm_body("unpaid", KEY)) == refused
    assert await _call("POST", f"{base}/vms?async=true", json=vm_body("unpaid", KEY)) == refused
    assert await _call("GET", f"{base}/vms") == (200, [])
    assert (await _call("GET", f"{base}/vms/unpaid"))[0] == 404
    assert (await _call("GET", f"{base}/summary"))[1]["vms"] == []
    assert (await _ad(net, current.provider_id))["resources"] == free_before

    status, vm = await _call("POST", f"{base}/vms", json=vm_body("paid", KEY, stream_id=42))
    assert status == 200 and vm["status"] == "running"
    status, stream = await _call("GET", f"{base}/vms/paid/stream")
    assert status == 200
    assert stream["stream_id"] == "42" and stream["vm_id"] == "paid"
    assert stream["chain"]["recipient"] == info["stream_payment_address"]
    assert stream["chain"]["halted"] is False
    status, streams = await _call("GET", f"{base}/payments/streams")
    assert status == 200 and [s["stream_id"] for s in streams] == ["42"]
    assert await _call("GET", f"{base}/vms/ghost/stream") == (404, {"detail": "VM ghost not found"})


async def test_payments_can_be_switched_on_at_run_time(devnet_factory: DevnetFactory) -> None:
    net, _, current = _pair(devnet_factory)
    net.set_current_options(current.provider_id, payments=True)
    assert (await _call("POST", f"{current.api_url}/vms", json=vm_body("x-1", KEY)))[0] == 400
    with pytest.raises(ValueError, match="legacy"):
        net.set_current_options(net.providers[0].provider_id, payments=True)


# --- admin shutdown ----------------------------------------------------------------------------


async def test_admin_shutdown_stops_only_that_provider(devnet_factory: DevnetFactory) -> None:
    net, legacy, current = _pair(devnet_factory)
    status, answer = await _call("POST", f"{current.api_url}/admin/shutdown")
    assert status == 200 and answer == {"status": "shutting down"}
    assert refuses(current.ip_address, 7466)
    assert not refuses(legacy.ip_address, 7466)
    summary = {s["provider_id"]: s for s in net.summaries()}
    assert summary[current.provider_id]["faults"]["offline"] is True
    net.clear_faults(current.provider_id)
    assert (await _call("GET", f"{current.api_url}/provider/info"))[0] == 200


async def test_admin_shutdown_wants_a_loopback_host(devnet_factory: DevnetFactory) -> None:
    _, _, current = _pair(devnet_factory)
    status, answer = await _call(
        "POST", f"{current.api_url}/admin/shutdown", headers={"Host": "rebound.example"}
    )
    assert (status, answer) == (403, {"detail": "Forbidden"})
    assert (await _call("GET", f"{current.api_url}/provider/info"))[0] == 200


# --- faults and resources still apply ------------------------------------------------------------


async def test_jobs_that_outgrow_the_provider_fail_cleanly(devnet_factory: DevnetFactory) -> None:
    net, _, current = _pair(devnet_factory, current_options=CurrentOptions(hold_jobs=True))
    accepted = []
    for name in ("big-a", "big-b"):
        body = vm_body(name, KEY, cpu=current.cpu, memory=1)
        status, answer = await _call("POST", f"{current.api_url}/vms?async=true", json=body)
        assert status == 202
        accepted.append(answer["job_id"])
    assert sorted(net.release_jobs(current.provider_id)) == sorted(accepted)
    jobs = [(await _call("GET", f"{current.api_url}/vms/jobs/{job_id}"))[1] for job_id in accepted]
    assert sorted(job["status"] for job in jobs) == ["failed", "ready"]
    [failed] = [job for job in jobs if job["status"] == "failed"]
    assert failed["error"] == f"Failed to create VM {failed['vm_id']}: An unexpected error occurred"
    _, vms = await _call("GET", f"{current.api_url}/vms")
    assert [vm["name"] for vm in vms] == [next(j["vm_id"] for j in jobs if j["status"] == "ready")]
    assert (await _ad(net, current.provider_id))["resources"]["cpu"] == 0


async def test_faults_apply_to_current_providers_too(devnet_factory: DevnetFactory) -> None:
    net, _, current = _pair(devnet_factory)
    net.set_faults(current.provider_id, missing_routes=frozenset({"stop"}))
    await _call("POST", f"{current.api_url}/vms", json=vm_body("faulty", KEY))
    assert await _call("POST", f"{current.api_url}/vms/faulty/stop") == (
        404,
        {"detail": "Not Found"},
    )
    net.set_faults(current.provider_id, error_rate=1.0)
    assert await _call("GET", f"{current.api_url}/provider/info") == (
        500,
        {"detail": "Injected fault"},
    )
