"""Output scripts can trust: ``--json`` on every command that prints a result and
its error object, ``-q``, tables that keep names whole in a pipe, ``list``
filters, ``providers --sort/--limit``, one flag vocabulary, and messages that
fit the situation (issue 12). Against the devnet, driving the real CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from requestor.settings import load_settings
from tests.conftest import GOLEM, GolemEnv, assert_ok, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.fleet import create_fleet
from tests.support.threaded import DevnetThread

LONG_NAME = "a" + "-long-name" * 6 + "-x"  # 63 characters
assert len(LONG_NAME) == 63


@pytest.fixture
def env(devnet: DevnetThread, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", devnet.discovery_url)
    return {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}


def _error_object(stderr: str, code: str, exit_code: int) -> dict[str, Any]:
    """stderr is exactly one JSON object {"error": {code, exit_code, message, hint}}."""
    body = json.loads(stderr)
    assert set(body) == {"error"}, stderr
    error = body["error"]
    assert set(error) == {"code", "exit_code", "message", "hint"}, error
    assert (error["code"], error["exit_code"]) == (code, exit_code), error
    assert error["message"] and "\n" not in error["message"]
    return dict(error)


def _fleet(golem_env: GolemEnv, devnet: DevnetThread, count: int, prefix: str = "vm") -> list[str]:
    settings = load_settings(
        {**golem_env.env, "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    )
    ids = [p.provider_id for p in devnet.providers]
    return asyncio.run(create_fleet(settings, ids, count, prefix=prefix))


# --- --json: success output and the error object on every command -----------------------


def test_json_on_every_command_that_prints_a_result(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    provider = devnet.providers[0].provider_id
    created = golem("vm", "create", "web-1", "--provider", provider, *SMALL_VM, "--json")
    assert_ok(created)
    assert json.loads(created.stdout)["name"] == "web-1"

    providers = json.loads(golem("vm", "providers", "--json").stdout)
    assert {p["provider_id"] for p in providers} == {p.provider_id for p in devnet.providers}
    assert [vm["name"] for vm in json.loads(golem("vm", "list", "--json").stdout)] == ["web-1"]

    config = golem("vm", "ssh-config", "web-1", "--json")
    assert_ok(config)
    body = json.loads(config.stdout)
    assert body["entries"] == 1 and "Host golem-web-1" in body["config"]
    assert body["config_path"] is None and body["skipped"] == []
    written = json.loads(golem("vm", "ssh-config", "--write", "--json").stdout)
    assert Path(written["config_path"]).read_text() == written["config"]
    assert written["include_line"].startswith("Include ")

    source = tmp_path / "notes.txt"
    source.write_bytes(b"x" * 1000)
    (tmp_path / "empty").write_bytes(b"")
    copied = golem("vm", "cp", str(source), str(tmp_path / "empty"), "web-1:", "--json")
    assert_ok(copied)
    assert json.loads(copied.stdout) == {
        "vm": "web-1",
        "direction": "upload",
        "sources": [str(source), str(tmp_path / "empty")],
        "destination": ".",
        "files": 2,
        "bytes": 1000,
        "warnings": [],
    }

    stopped = golem("vm", "stop", "web-1", "--json")
    assert_ok(stopped)
    assert json.loads(stopped.stdout)[0]["status"] == "stopped"
    assert_ok(golem("vm", "start", "web-1", "--json"))
    destroyed = json.loads(golem("vm", "destroy", "web-1", "--yes", "--json").stdout)
    assert destroyed[0]["result"] == "done"

    _fleet(golem_env, devnet, 1, prefix="old")
    forgot = golem("vm", "forget", "old-000", "--force", "--json")
    assert_ok(forgot)
    assert [(o["name"], o["result"]) for o in json.loads(forgot.stdout)] == [("old-000", "done")]
    assert db_rows(golem_env.db_path) == {}

    status = run_golem(golem_env, "devnet", "status", "--json", extra_env=env)
    assert_ok(status)
    assert len(json.loads(status.stdout)) == len(devnet.providers)
    last = devnet.providers[-1].provider_id
    fault = run_golem(
        golem_env, "devnet", "fault", last, "--latency-ms", "5", "--json", extra_env=env
    )
    assert_ok(fault)
    answer = json.loads(fault.stdout)
    assert answer["provider_id"] == last and answer["faults"]["latency_ms"] == 5


def test_forward_json_gives_the_listening_address(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    env,  # type: ignore[no-untyped-def]
) -> None:
    _fleet(golem_env, devnet, 1)
    process = subprocess.Popen(
        [str(GOLEM), "vm", "forward", "vm-000", "0:22", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**golem_env.env, **env},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        body = json.loads(first)
        assert body["vm"] == "vm-000" and body["remote_port"] == 22
        assert body["host"] == "127.0.0.1" and body["port"] > 0
        assert body["address"] == f"127.0.0.1:{body['port']}"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)


@pytest.mark.parametrize(
    ("args", "code", "exit_code"),
    [
        (("vm", "list", "--timeout", "x"), "usage", 2),
        (("vm", "list", "--no-such-option"), "usage", 2),
        (("vm", "no-such-command"), "usage", 2),
        (("vm", "create", "Bad-Name", *SMALL_VM), "input", 2),
        (("vm", "create", "ok-name", "--cpu", "1"), "usage", 2),
        (("vm", "providers", "--country", "Sweden"), "input", 2),
        (("vm", "stop", "nope"), "nothing_matched", 2),
        (("vm", "start", "nope"), "nothing_matched", 2),
        (("vm", "destroy", "nope", "--yes"), "nothing_matched", 2),
        (("vm", "forget", "nope", "--yes"), "nothing_matched", 2),
        (("vm", "stop", "--all", "web-1"), "input", 2),
        (("vm", "ssh-config", "nope"), "vm_not_found", 1),
        (("vm", "cp", "nope:x", "."), "vm_not_found", 1),
        (("vm", "forward", "nope", "80"), "vm_not_found", 1),
        (
            (
                "vm",
                "providers",
            ),
            "discovery_unavailable",
            1,
        ),
    ],
)
def test_json_errors_are_one_object_on_stderr(
    golem_env: GolemEnv, args: tuple[str, ...], code: str, exit_code: int
) -> None:
    # Discovery here is 127.0.0.1:9, where nothing listens (conftest).
    done = run_golem(golem_env, *args, "--json")
    assert done.returncode == exit_code, done.stderr
    assert done.stdout == ""
    error = _error_object(done.stderr, code, exit_code)
    assert error["hint"], error


def test_devnet_status_json_error_is_an_object(golem_env: GolemEnv) -> None:
    done = run_golem(
        golem_env, "devnet", "status", "--json", "--discovery-url", "http://127.0.0.1:9"
    )
    assert done.returncode == 1
    error = _error_object(done.stderr, "failed", 1)
    assert "No devnet answers" in error["message"]


# --- pipes, -q, list filters ------------------------------------------------------------------


def test_a_pipe_keeps_a_63_character_name_and_address_whole(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    env,  # type: ignore[no-untyped-def]
) -> None:
    provider = devnet.providers[0]
    assert_ok(
        run_golem(
            golem_env,
            "vm",
            "create",
            LONG_NAME,
            "--provider",
            provider.provider_id,
            *SMALL_VM,
            extra_env=env,
        )
    )
    piped = {k: v for k, v in golem_env.env.items() if k != "COLUMNS"}
    done = subprocess.run(
        [str(GOLEM), "vm", "list"],
        capture_output=True,
        text=True,
        env={**piped, **env},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if LONG_NAME in line)
    assert "…" not in done.stdout
    assert provider.ip_address in row and "● running" in row
    listing = subprocess.run(
        [str(GOLEM), "vm", "providers"],
        capture_output=True,
        text=True,
        env={**piped, **env},
        timeout=60,
        check=False,
    )
    assert "…" not in listing.stdout
    assert provider.provider_id in listing.stdout


def test_quiet_prints_names_only(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
) -> None:
    names = _fleet(golem_env, devnet, 3)
    assert sorted(golem("vm", "list", "-q").stdout.splitlines()) == names
    ids = golem("vm", "providers", "--quiet", "--sort", "country").stdout.splitlines()
    assert sorted(ids) == sorted(p.provider_id for p in devnet.providers)


def test_list_filters_by_pattern_provider_and_status(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
) -> None:
    web = _fleet(golem_env, devnet, 3, prefix="web")
    db = _fleet(golem_env, devnet, 2, prefix="db")
    assert_ok(golem("vm", "stop", "web-001"))

    def names(*args: str) -> list[str]:
        result = golem("vm", "list", "--json", *args)
        assert_ok(result)
        return sorted(vm["name"] for vm in json.loads(result.stdout))

    assert names("web-*") == web
    assert names("db-000", "web-002") == ["db-000", "web-002"]
    assert names("--status", "stopped") == ["web-001"]
    assert names("web-*", "--status", "running") == ["web-000", "web-002"]
    first = devnet.providers[0].provider_id  # round-robin: web-000 and db-000 are there
    assert names("--provider", first) == ["db-000", "web-000"]
    assert names("nothing-*") == []
    # --refresh asks about the matching VMs only.
    devnet.set_faults(devnet.providers[1].provider_id, offline=True)
    assert names("--refresh", "db-*", "--provider", first) == ["db-000"]
    rows = db_rows(golem_env.db_path)
    assert rows["web-001"]["status"] == "stopped" and rows["db-001"]["status"] == "running"
    # A table with no match says so, and it is not an error.
    empty = golem("vm", "list", "nothing-*")
    assert_ok(empty)
    assert "No VM matches these filters" in empty.stdout
    assert len(db) == 2


# --- one vocabulary, providers --sort/--limit ---------------------------------------------------


def test_create_takes_provider_and_the_old_provider_id_alias(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
) -> None:
    first, second = devnet.providers[0], devnet.providers[1]
    assert_ok(golem("vm", "create", "new-flag", "--provider", first.provider_id, *SMALL_VM))
    assert_ok(golem("vm", "create", "old-flag", "--provider-id", second.provider_id, *SMALL_VM))
    rows = db_rows(golem_env.db_path)
    assert rows["new-flag"]["provider_id"] == first.provider_id
    assert rows["old-flag"]["provider_id"] == second.provider_id
    help_text = golem("vm", "create", "--help").stdout
    assert "--provider-id is an alias" in help_text


def test_providers_sort_limit_and_the_hint_when_nothing_matches(
    golem_env: GolemEnv,
    devnet_factory,
    monkeypatch: pytest.MonkeyPatch,
    golem,  # type: ignore[no-untyped-def]
) -> None:
    devnet = devnet_factory(providers=4, capacity_scale=1)
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", devnet.discovery_url)
    ads = json.loads(golem("vm", "providers", "--json", "--no-probe").stdout)

    def order(*args: str) -> list[str]:
        result = golem("vm", "providers", "--json", *args)
        assert_ok(result)
        return [p["provider_id"] for p in json.loads(result.stdout)]

    by_cpu = sorted(ads, key=lambda p: -p["resources"]["cpu"])  # stable, as golem's
    assert order("--sort", "cpu", "--no-probe") == [p["provider_id"] for p in by_cpu]
    by_country = sorted(ads, key=lambda p: p["country"])
    assert order("--sort", "country", "--no-probe") == [p["provider_id"] for p in by_country]
    latencies = json.loads(golem("vm", "providers", "--json", "--sort", "latency").stdout)
    assert [p["latency_ms"] for p in latencies] == sorted(p["latency_ms"] for p in latencies)
    assert order("--sort", "memory", "--limit", "2", "--no-probe") == [
        p["provider_id"] for p in sorted(ads, key=lambda p: -p["resources"]["memory"])[:2]
    ]
    table = golem("vm", "providers", "--limit", "1", "--no-probe")
    assert f"(1 of {len(ads)})" in table.stdout

    nothing = golem("vm", "providers", "--cpu", "1000")
    assert_ok(nothing)
    assert "(0 total)" in nothing.stdout
    assert "No provider matches these filters" in nothing.stdout

    refused = golem("vm", "providers", "--sort", "latency", "--no-probe")
    assert refused.exit_code == 2
    assert "--sort latency needs the probe" in refused.output


def test_sort_keys_of_the_cli_are_the_services() -> None:
    from requestor.cli.vm import PROVIDER_SORT_KEYS
    from requestor.services.provider_search import SORT_KEYS

    assert tuple(SORT_KEYS) == PROVIDER_SORT_KEYS


# --- messages that fit the situation --------------------------------------------------------


def test_a_rate_limited_discovery_says_wait_and_retry(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
) -> None:
    async def limit(net):  # type: ignore[no-untyped-def]
        net.discovery_service.rate_limited = True

    devnet.run(limit)
    result = golem("vm", "providers")
    assert result.exit_code == 1
    assert "HTTP 429" in result.stderr
    assert "Solution: The discovery service is limiting requests: wait a minute" in result.stderr
    assert "filter" not in result.stderr


def test_start_refused_by_a_failing_provider_names_start(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
) -> None:
    _fleet(golem_env, devnet, 1)
    assert_ok(golem("vm", "stop", "vm-000"))
    devnet.set_faults(devnet.providers[0].provider_id, error_rate=1.0)
    result = golem("vm", "start", "vm-000")
    assert result.exit_code == 1
    assert "refused to start the VM" in result.stderr
    assert "describe" not in result.stderr


def test_destroy_on_an_offline_provider_suggests_forget_with_the_name(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
) -> None:
    _fleet(golem_env, devnet, 1)
    devnet.set_faults(devnet.providers[0].provider_id, offline=True)
    result = golem("vm", "destroy", "vm-000", "--yes")
    assert result.exit_code == 1
    assert "golem vm forget vm-000" in result.stderr
    assert "Choose a different provider" not in result.stderr
    assert "vm-000" in db_rows(golem_env.db_path)


def test_start_on_a_gone_vm_names_it_in_the_forget_hint(
    golem_env: GolemEnv,
    devnet: DevnetThread,
    golem,
    env,  # type: ignore[no-untyped-def]
) -> None:
    _fleet(golem_env, devnet, 1)
    row = db_rows(golem_env.db_path)["vm-000"]
    provider = devnet.providers[0]

    async def delete(net):  # type: ignore[no-untyped-def]
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.delete(f"{provider.api_url}/vms/{row['provider_vm_name']}") as response,
        ):
            assert response.status == 200

    devnet.run(delete)
    result = golem("vm", "start", "vm-000")
    assert result.exit_code == 1
    assert "Solution: Remove the local record with 'golem vm forget vm-000'" in result.stderr
    assert "forget NAME" not in result.stderr


def test_groups_alone_show_help_with_whole_descriptions(golem_env: GolemEnv) -> None:
    for group in ((), ("vm",), ("devnet",)):
        done = run_golem(golem_env, *group)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Usage: golem")
        # click cuts a description to what fits and ends it with "...".
        commands = done.stdout.split("Commands:")[1].splitlines()
        assert not any(line.rstrip().endswith("...") for line in commands), done.stdout
    root = run_golem(golem_env, "--help").stdout
    assert "discovery, providers and VMs, no internet." in " ".join(root.split())
    missing = run_golem(golem_env, "--debug")
    assert missing.returncode == 2 and "Missing command" in missing.stderr


def test_devnet_up_with_one_provider_says_provider(golem_env: GolemEnv, tmp_path: Path) -> None:
    from tests.support.threaded import random_base_address

    process = subprocess.Popen(
        [
            str(GOLEM),
            "devnet",
            "up",
            "--providers",
            "1",
            "--discovery-port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
            "--base-address",
            random_base_address(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=golem_env.env,
    )
    try:
        assert process.stderr is not None
        lines: list[str] = []
        for line in process.stderr:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(lines)
        assert "Devnet: 1 provider," in text, text
        assert ".env.dev" not in text
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert os.path.exists(tmp_path / "state")


def test_every_error_code_is_documented() -> None:
    """docs/json.md lists the codes a script can match on: each GolemError class's."""
    import importlib
    import pkgutil
    import re

    import requestor
    from requestor.errors import GolemError

    for module in pkgutil.walk_packages(requestor.__path__, "requestor."):
        if module.name.startswith(("requestor._migrations", "requestor.cli", "requestor.__main__")):
            continue
        importlib.import_module(module.name)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "json.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", docs.split("## Errors")[1]))

    def subclasses(cls: type[GolemError]) -> set[type[GolemError]]:
        direct = set(cls.__subclasses__())
        return direct.union(*(subclasses(c) for c in direct))

    codes = {cls.code for cls in subclasses(GolemError)}
    assert codes <= documented, codes - documented
    assert GolemError.code in documented
