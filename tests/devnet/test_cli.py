"""``golem devnet``: up as a real process (exports, env file, signals, ports), fault, status."""

from __future__ import annotations

import asyncio
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from golem_devnet import cli as devnet_cli
from golem_devnet.faults import ROUTE_NAMES
from tests.conftest import GOLEM, GolemEnv
from tests.devnet.helpers import FAST, create_vm, new_key, port_is_free, refuses, ssh
from tests.support.threaded import DevnetThread, random_base_address

pytestmark = pytest.mark.timeout(60)


class UpProcess:
    """``golem devnet up`` running in the background, its stdout read line by line."""

    def __init__(
        self, golem_env: GolemEnv, state_dir: Path, *args: str, base_address: str | None = None
    ) -> None:
        self.base_address = base_address or random_base_address()
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                str(GOLEM),
                "devnet",
                "up",
                "--state-dir",
                str(state_dir),
                "--base-address",
                self.base_address,
                "--discovery-port",
                "0",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=golem_env.env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def exports(self, timeout: float = 20) -> dict[str, str]:
        found: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while len(found) < 2:
            line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, self.stop_and_read_stderr()
            assert line.startswith("export "), line
            name, _, value = line.removeprefix("export ").strip().partition("=")
            found[name] = value
        return found

    def signal(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=20)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()

    def stop_and_read_stderr(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def up_processes() -> Any:
    started: list[UpProcess] = []
    yield started
    for up in started:
        if up.process.poll() is None:
            up.process.kill()
            up.process.wait(timeout=10)


async def _json(url: str) -> Any:
    async with aiohttp.ClientSession(timeout=FAST) as session, session.get(url) as response:
        assert response.status == 200
        return await response.json()


def test_up_prints_exports_writes_env_and_stops_cleanly_on_sigint(
    golem_env: GolemEnv, tmp_path: Path, up_processes: list[UpProcess]
) -> None:
    state_dir = tmp_path / "state"
    up = UpProcess(golem_env, state_dir)
    up_processes.append(up)
    exports = up.exports()
    url = exports["GOLEM_REQUESTOR_DISCOVERY_URL"]
    discovery_host, discovery_port = url.removeprefix("http://").split(":")
    assert discovery_host == up.base_address.rsplit(".", 1)[0] + ".10"
    assert exports["GOLEM_REQUESTOR_BASE_DIR"] == str(state_dir / "requestor")
    assert "GOLEM_REQUESTOR_FORCE_LOCALHOST" not in exports
    env_file = (state_dir / "env").read_text()
    assert f"export GOLEM_REQUESTOR_DISCOVERY_URL={url}\n" in env_file

    ads = asyncio.run(_json(f"{url}/api/v1/advertisements"))
    assert len(ads) == 3
    provider_ip = ads[0]["ip_address"]
    key, _ = new_key()

    async def make_vm() -> int:
        async with aiohttp.ClientSession(timeout=FAST) as session:
            info = await create_vm(session, _Handle(provider_ip), "in-cli", key)
        async with await ssh(provider_ip, info["ssh_port"], key) as conn:
            assert (await conn.run("echo hello")).stdout == "hello\n"
        port: int = info["ssh_port"]
        return port

    ssh_port = asyncio.run(make_vm())
    code, stderr = up.signal(signal.SIGINT)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "not isolation" in stderr
    for host, port in (
        (discovery_host, int(discovery_port)),
        *((ad["ip_address"], 7466) for ad in ads),
        (provider_ip, ssh_port),
    ):
        assert port_is_free(host, port), (host, port)
        assert refuses(host, port)


class _Handle:
    def __init__(self, ip_address: str) -> None:
        self.api_url = f"http://{ip_address}:7466/api/v1"


def test_sigterm_stops_with_status_0(
    golem_env: GolemEnv, tmp_path: Path, up_processes: list[UpProcess]
) -> None:
    up = UpProcess(golem_env, tmp_path / "state", "--providers", "1")
    up_processes.append(up)
    up.exports()
    code, stderr = up.signal(signal.SIGTERM)
    assert code == 0, stderr


def test_address_in_use_is_a_clear_error(
    golem_env: GolemEnv, tmp_path: Path, devnet: DevnetThread
) -> None:
    base = devnet.providers[0].ip_address
    port = devnet.discovery_url.rsplit(":", 1)[1]
    result = subprocess.run(
        [
            str(GOLEM),
            "devnet",
            "up",
            "--state-dir",
            str(tmp_path / "other"),
            "--base-address",
            base,
            "--discovery-port",
            port,
        ],
        capture_output=True,
        text=True,
        env=golem_env.env,
        timeout=30,
    )
    assert result.returncode == 1
    host = base.rsplit(".", 1)[0] + ".10"
    assert f"Error: Devnet address {host}:{port} is in use" in result.stderr
    assert "Solution:" in result.stderr and "Traceback" not in result.stderr
    # Discovery free, but the providers' address taken.
    result = subprocess.run(
        [
            str(GOLEM),
            "devnet",
            "up",
            "--state-dir",
            str(tmp_path / "third"),
            "--base-address",
            base,
            "--discovery-port",
            "0",
        ],
        capture_output=True,
        text=True,
        env=golem_env.env,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"Devnet address {base}:7466 is in use" in result.stderr


def test_state_dir_in_use_is_a_clear_error(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    result = subprocess.run(
        [
            str(GOLEM),
            "devnet",
            "up",
            "--state-dir",
            str(devnet.state_dir),
            "--base-address",
            random_base_address(),
            "--discovery-port",
            "0",
        ],
        capture_output=True,
        text=True,
        env=golem_env.env,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Another devnet is using the state dir" in result.stderr
    assert (devnet.state_dir / "vms").is_dir()  # the running devnet's VMs were not wiped


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_200_providers_start_fast_and_all_serve(
    golem_env: GolemEnv, tmp_path: Path, up_processes: list[UpProcess]
) -> None:
    up = UpProcess(golem_env, tmp_path / "state", "--providers", "200")
    up_processes.append(up)
    url = up.exports(timeout=30)["GOLEM_REQUESTOR_DISCOVERY_URL"]
    elapsed = time.monotonic() - up.started
    assert elapsed < 10, f"200 providers took {elapsed:.1f} s"

    async def hit_all() -> list[int]:
        ads = await _json(f"{url}/api/v1/advertisements")
        assert len(ads) == 200
        assert len({ad["ip_address"] for ad in ads}) == 200
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(timeout=FAST, connector=connector) as session:

            async def one(ip: str) -> int:
                async with session.get(f"http://{ip}:7466/api/v1/vms/probe") as response:
                    return response.status

            return await asyncio.gather(*(one(ad["ip_address"]) for ad in ads))

    assert set(asyncio.run(hit_all())) == {404}
    code, stderr = up.signal(signal.SIGINT)
    assert code == 0, stderr


def test_up_rejects_bad_fault_flags(golem: Any, golem_env: GolemEnv, tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "s"), "--discovery-port", "0"]
    result = golem("devnet", "up", *state, "--offline", "devnet-provider-09")
    assert result.exit_code == 2
    assert "devnet-provider-09" in result.output
    result = golem("devnet", "up", *state, "--fault", "devnet-provider-01-latency")
    assert result.exit_code == 2
    assert "PROVIDER_ID:KEY=VALUE" in result.output
    result = golem("devnet", "up", *state, "--fault", "devnet-provider-01:error_rate=7")
    assert result.exit_code == 2
    assert "error_rate" in result.output
    result = golem("devnet", "up", *state, "--base-address", "10.0.0.11")
    assert result.exit_code == 2
    assert "loopback" in result.output


def test_fault_and_status_commands(golem: Any, golem_env: GolemEnv, devnet: DevnetThread) -> None:
    env = {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    target = devnet.providers[1]
    result = golem(
        "devnet", "fault", target.provider_id, "--offline", "--latency-ms", "20", env=env
    )
    assert result.exit_code == 0, result.output
    assert f"{target.provider_id}: latency_ms=20 offline" in result.output
    assert refuses(target.ip_address, 7466)

    result = golem("devnet", "status", env=env)
    assert result.exit_code == 0, result.output
    assert target.provider_id in result.output and "offline" in result.output

    result = golem("devnet", "fault", "--all", "--missing-route", "start", env=env)
    assert result.exit_code == 0, result.output
    assert result.output.count("missing_routes=start") == 3
    assert not refuses(target.ip_address, 7466)

    result = golem("devnet", "fault", target.provider_id, env=env)
    assert f"{target.provider_id}: healthy" in result.output
    assert {s["faults"]["missing_routes"] == [] for s in devnet.summaries()} == {True, False}

    result = golem("devnet", "fault", "nobody", env=env)
    assert result.exit_code == 2 and "Provider not found" in result.output
    result = golem("devnet", "fault", env=env)
    assert result.exit_code == 2


def test_fault_refuses_non_loopback_and_explains_no_devnet(golem: Any, golem_env: GolemEnv) -> None:
    result = golem("devnet", "status", "--discovery-url", "http://discovery.golem.network:9001")
    assert result.exit_code == 2 and "loopback only" in result.output
    result = golem("devnet", "status")  # golem_env points discovery at 127.0.0.1:9
    assert result.exit_code == 1 and "No devnet answers" in result.output
    assert "golem devnet up" in result.output


def test_faults_from_up_flags_take_effect(
    golem_env: GolemEnv, tmp_path: Path, up_processes: list[UpProcess]
) -> None:
    up = UpProcess(
        golem_env,
        tmp_path / "state",
        "--offline",
        "devnet-provider-02",
        "--fault",
        "devnet-provider-03:missing-routes=start,stop",
        "--latency-ms",
        "250",
        "--capacity-scale",
        "2",
    )
    up_processes.append(up)
    url = up.exports()["GOLEM_REQUESTOR_DISCOVERY_URL"]
    providers = {p["provider_id"]: p for p in asyncio.run(_json(f"{url}/devnet/providers"))}
    assert providers["devnet-provider-02"]["faults"]["offline"] is True
    assert refuses(providers["devnet-provider-02"]["ip_address"], 7466)
    third = providers["devnet-provider-03"]["faults"]
    assert (third["missing_routes"], third["latency_ms"]) == (["start", "stop"], 250)
    assert providers["devnet-provider-01"]["capacity"] == {"cpu": 8, "memory": 16, "storage": 80}
    started = time.monotonic()
    asyncio.run(_json(f"{providers['devnet-provider-01']['api_url']}/vms"))
    assert time.monotonic() - started >= 0.25
    code, stderr = up.signal(signal.SIGINT)
    assert code == 0, stderr


def test_cli_route_names_match_the_faults_model() -> None:
    assert devnet_cli.ROUTE_NAMES == ROUTE_NAMES


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOLEM_REQUESTOR_BASE_DIR", str(tmp_path / "base"))
    assert devnet_cli.default_state_dir() == tmp_path / "base" / "devnet"
    monkeypatch.delenv("GOLEM_REQUESTOR_BASE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert devnet_cli.default_state_dir() == tmp_path / ".golem" / "devnet"


def test_cli_module_imports_nothing_heavy(golem_env: GolemEnv) -> None:
    code = (
        "import sys, golem_devnet.cli; "
        "heavy = {'aiohttp', 'asyncssh', 'rich', 'pydantic'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30, env=golem_env.env)


def test_fault_flags_are_declared_once_for_up_and_fault() -> None:
    """One table (FAULT_FLAGS) makes the fault options of both commands, and it
    names every field of the Faults model."""
    from golem_devnet.faults import Faults

    assert {flag.field for flag in devnet_cli.FAULT_FLAGS} == set(Faults.model_fields)
    for command in (devnet_cli.up, devnet_cli.fault):
        names = {param.name for param in command.params}
        assert {flag.field for flag in devnet_cli.FAULT_FLAGS} <= names
    up_offline = next(p for p in devnet_cli.up.params if p.name == "offline")
    fault_offline = next(p for p in devnet_cli.fault.params if p.name == "offline")
    assert up_offline.multiple and not fault_offline.multiple  # PROVIDER_ID... vs a switch


def test_hold_from_the_fault_command_parks_and_releases(
    golem: Any, golem_env: GolemEnv, devnet: DevnetThread
) -> None:
    env = {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    target = devnet.providers[0]
    result = golem(
        "devnet", "fault", target.provider_id, "--hold", "POST /vms", "--hold", "stop", env=env
    )
    assert result.exit_code == 0, result.output
    assert f"{target.provider_id}: hold=create,stop" in result.output
    assert devnet.faults(0).hold == frozenset({"create", "stop"})

    key, _ = new_key()

    async def create() -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=FAST) as session:
            return await create_vm(session, target, "held-by-cli", key)

    async def scenario() -> dict[str, Any]:
        creating = asyncio.ensure_future(create())
        await asyncio.to_thread(devnet.wait_for_request, 0, route="create", vm="held-by-cli")
        assert not creating.done()
        released = await asyncio.to_thread(golem, "devnet", "fault", target.provider_id, env=env)
        assert f"{target.provider_id}: healthy" in released.output
        return await creating

    assert asyncio.run(scenario())["name"] == "held-by-cli"

    result = golem("devnet", "fault", target.provider_id, "--hold", "PATCH /vms", env=env)
    assert result.exit_code == 2 and "unknown route 'PATCH /vms'" in result.output


def test_hold_from_up_flags(
    golem_env: GolemEnv, tmp_path: Path, up_processes: list[UpProcess]
) -> None:
    up = UpProcess(
        golem_env,
        tmp_path / "state",
        "--hold",
        "DELETE /vms/{name}",
        "--fault",
        "devnet-provider-02:hold=create,stop",
    )
    up_processes.append(up)
    url = up.exports()["GOLEM_REQUESTOR_DISCOVERY_URL"]
    providers = {p["provider_id"]: p for p in asyncio.run(_json(f"{url}/devnet/providers"))}
    assert providers["devnet-provider-01"]["faults"]["hold"] == ["delete"]
    assert providers["devnet-provider-02"]["faults"]["hold"] == ["create", "stop"]
    code, stderr = up.signal(signal.SIGINT)
    assert code == 0, stderr
