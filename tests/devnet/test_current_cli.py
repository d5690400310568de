"""``golem devnet up --current N`` and its options; ``golem devnet status`` shows generations."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from golem_devnet.current import STREAM_REQUIRED, ZERO_ADDRESS, CurrentOptions
from tests.conftest import GolemEnv
from tests.devnet.helpers import FAST, new_key, vm_body
from tests.devnet.test_cli import UpProcess
from tests.plugins.devnet import DevnetFactory

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def ups() -> Iterator[list[UpProcess]]:
    started: list[UpProcess] = []
    yield started
    for up in started:
        if up.process.poll() is None:
            up.process.kill()
            up.process.wait(timeout=10)


async def _call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=FAST) as session,
        session.request(method, url, **kwargs) as response,
    ):
        return response.status, await response.json()


def test_up_with_current_providers_payments_and_options(
    golem_env: GolemEnv, tmp_path: Path, ups: list[UpProcess]
) -> None:
    up = UpProcess(
        golem_env,
        tmp_path / "state",
        "--providers",
        "4",
        "--current",
        "2",
        "--payments",
        "devnet-provider-04",
        "--current-option",
        "devnet-provider-03:provider_info_id=0xabc",
        "--job-delay",
        "5",
    )
    ups.append(up)
    url = up.exports()["GOLEM_REQUESTOR_DISCOVERY_URL"]
    providers = asyncio.run(_call("GET", f"{url}/devnet/providers"))[1]
    assert [p["generation"] for p in providers] == ["legacy", "legacy", "current", "current"]
    third, fourth = providers[2], providers[3]
    assert third["current"]["provider_info_id"] == "0xabc"
    assert third["current"]["job_delay_s"] == fourth["current"]["job_delay_s"] == 5
    assert (third["current"]["payments"], fourth["current"]["payments"]) == (False, True)

    async def check() -> None:
        _, info = await _call("GET", f"{third['api_url']}/provider/info")
        assert info["provider_id"] == "0xabc"
        assert info["stream_payment_address"] == ZERO_ADDRESS
        _, info = await _call("GET", f"{fourth['api_url']}/provider/info")
        assert info["stream_payment_address"] != ZERO_ADDRESS
        key, _ = new_key()
        answer = await _call("POST", f"{fourth['api_url']}/vms", json=vm_body("nope", key))
        assert answer == (400, {"detail": STREAM_REQUIRED})
        status, job = await _call(
            "POST", f"{third['api_url']}/vms?async=true", json=vm_body("later", key)
        )
        assert status == 202
        _, job = await _call("GET", f"{third['api_url']}/vms/jobs/{job['job_id']}")
        assert job["status"] == "creating"  # for 5 s
        _, ads = await _call("GET", f"{url}/api/v1/advertisements")
        assert ["pricing" in ad for ad in ads] == [False, False, True, True]

    asyncio.run(check())
    code, stderr = up.signal(signal.SIGINT)
    assert code == 0, stderr
    assert "Generation" in stderr and "current (payments" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--providers", "2", "--current", "3"], "current must be between 0"),
        (["--providers", "2", "--current", "1", "--payments", "devnet-provider-01"], "not current"),
        (["--current", "1", "--current-option", "devnet-provider-03:nonsense=1"], "nonsense"),
        (["--current", "1", "--current-option", "no-colon"], "Invalid --current-option"),
        (
            ["--current", "1", "--current-option", "devnet-provider-03:job_delay_s=-1"],
            "job_delay_s",
        ),
    ],
)
def test_up_refuses_bad_current_options(
    golem: Any, golem_env: GolemEnv, tmp_path: Path, args: list[str], message: str
) -> None:
    result = golem("devnet", "up", "--state-dir", str(tmp_path / "s"), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_status_shows_each_providers_generation(
    golem: Any, golem_env: GolemEnv, devnet_factory: DevnetFactory
) -> None:
    net = devnet_factory(
        providers=3,
        current=2,
        provider_current_options={"devnet-provider-03": CurrentOptions(payments=True)},
    )
    env = {"GOLEM_REQUESTOR_DISCOVERY_URL": net.discovery_url}
    result = golem("devnet", "status", env=env)
    assert result.exit_code == 0, result.output
    lines = {
        line.split()[1]: line for line in result.output.splitlines() if "devnet-provider-" in line
    }
    assert "legacy" in lines["devnet-provider-01"]
    assert (
        "current" in lines["devnet-provider-02"] and "payments" not in lines["devnet-provider-02"]
    )
    assert "current (payments)" in lines["devnet-provider-03"]

    result = golem("devnet", "status", "--json", env=env)
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [p["generation"] for p in listed] == ["legacy", "current", "current"]
    assert listed[2]["current"]["payments"] is True and "current" not in listed[0]


async def test_admin_routes_change_options_and_release(devnet_factory: DevnetFactory) -> None:
    net = devnet_factory(providers=2, current=1)
    legacy, current = net.providers
    admin = f"{net.admin_url}/providers"
    headers = {"Content-Type": "application/json"}
    status, answer = await _call(
        "PUT", f"{admin}/{current.provider_id}/current", json={"hold_jobs": True}, headers=headers
    )
    assert status == 200 and answer["current"]["hold_jobs"] is True
    key, _ = new_key()
    _, job = await _call("POST", f"{current.api_url}/vms?async=true", json=vm_body("held", key))
    status, answer = await _call(
        "POST", f"{admin}/{current.provider_id}/release", json={}, headers=headers
    )
    assert status == 200 and answer["jobs"] == [job["job_id"]]
    _, job = await _call("GET", f"{current.api_url}/vms/jobs/{job['job_id']}")
    assert job["status"] == "ready"

    status, answer = await _call(
        "PUT", f"{admin}/{legacy.provider_id}/current", json={}, headers=headers
    )
    assert (status, answer) == (409, {"detail": f"{legacy.provider_id} is a legacy provider"})
    status, _ = await _call("PUT", f"{admin}/nobody/current", json={}, headers=headers)
    assert status == 404
    status, _ = await _call(
        "PUT", f"{admin}/{current.provider_id}/current", json={"bogus": 1}, headers=headers
    )
    assert status == 422
    # Like every admin route: a JSON content type, or no change.
    status, _ = await _call("PUT", f"{admin}/{current.provider_id}/current", data=b"{}")
    assert status == 415


def test_current_and_release_commands(
    golem: Any, golem_env: GolemEnv, devnet_factory: DevnetFactory
) -> None:
    net = devnet_factory(providers=2, current=1)
    legacy, current = net.providers
    env = {"GOLEM_REQUESTOR_DISCOVERY_URL": net.discovery_url}
    result = golem("devnet", "current", current.provider_id, "--payments", "--hold-jobs", env=env)
    assert result.exit_code == 0, result.output
    assert f"{current.provider_id}: payments hold_jobs" in result.output
    summary = {s["provider_id"]: s for s in net.summaries()}[current.provider_id]
    assert summary["current"]["payments"] is True

    result = golem("devnet", "release", current.provider_id, env=env)
    assert result.exit_code == 0, result.output
    assert "released 0 job(s), 0 SSH port(s)" in result.output

    result = golem("devnet", "current", current.provider_id, env=env)
    assert f"{current.provider_id}: -" in result.output
    result = golem("devnet", "current", legacy.provider_id, env=env)
    assert result.exit_code == 1 and "legacy provider" in result.output

    # --json: the admin API's answer; an error is the JSON error object.
    result = golem("devnet", "current", current.provider_id, "--payments", "--json", env=env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["provider_id"] == current.provider_id
    assert answer["current"]["payments"] is True
    result = golem("devnet", "release", current.provider_id, "--json", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "provider_id": current.provider_id,
        "jobs": [],
        "ssh_proxy": [],
    }
    result = golem("devnet", "current", legacy.provider_id, "--json", env=env)
    assert result.exit_code == 1 and result.stdout == ""
    assert "legacy provider" in json.loads(result.stderr)["error"]["message"]
