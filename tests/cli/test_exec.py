"""``golem vm exec``: one command on many devnet VMs at once, output prefixed per
VM, exit 0 / 3 / 1, and --json with each VM's output and exit status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from requestor.settings import load_settings
from tests.conftest import GolemEnv, assert_ok, run_golem
from tests.support.fleet import create_fleet
from tests.support.threaded import DevnetThread

FLEET = 20


@pytest.fixture
def fleet(
    golem_env: GolemEnv,
    devnet_factory: Callable[..., DevnetThread],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[DevnetThread, list[str]]:
    devnet = devnet_factory(4, capacity_scale=2)
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", devnet.discovery_url)
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url
    names = asyncio.run(
        create_fleet(
            load_settings(), [p.provider_id for p in devnet.providers], FLEET, prefix="web"
        )
    )
    return devnet, names


def _by_name(output: str) -> dict[str, Any]:
    return {entry["name"]: entry for entry in json.loads(output)}


def test_exec_over_twenty_vms_with_one_stopped(
    golem_env: GolemEnv, fleet: tuple[DevnetThread, list[str]]
) -> None:
    _devnet, names = fleet
    stopped = names[7]
    assert_ok(run_golem(golem_env, "vm", "stop", stopped))

    # Two lines on stdout (the second without a newline), one on stderr, and a
    # status that differs per VM: only web-003, which holds a marker file,
    # returns non-zero.
    assert_ok(run_golem(golem_env, "vm", "exec", "web-003", "--", "touch", "fail-here"))
    command = (
        "printf 'hello %s\\nsecond' \"$USER\"; echo oops >&2; if [ -e fail-here ]; then exit 4; fi"
    )
    result = run_golem(golem_env, "vm", "exec", "web-*", "--", command)
    assert result.returncode == 3, result.stderr

    out_lines = result.stdout.splitlines()
    err_lines = result.stderr.splitlines()
    for name in names:
        if name == stopped:
            assert not any(line.startswith(f"{name}: ") for line in out_lines)
            continue
        mine = [line for line in out_lines if line.startswith(f"{name}: ")]
        assert len(mine) == 2, mine
        assert mine[0].startswith(f"{name}: hello ")
        # A last line without a newline is still a line of its own.
        assert mine[1] == f"{name}: second"
        assert f"{name}: oops" in err_lines
        assert f"{name}: oops" not in out_lines  # stderr stays on stderr
    assert "web-003: exited with status 4" in err_lines
    assert any(line.startswith(f"{stopped}: failed: VM {stopped} is stopped") for line in err_lines)
    assert "exec on 20 VM(s): 18 returned 0, 1 returned non-zero, 1 could not run it" in (
        result.stderr
    )

    as_json = run_golem(golem_env, "vm", "exec", "--all", "--json", "--", command)
    assert as_json.returncode == 3, as_json.stderr
    entries = _by_name(as_json.stdout)
    assert sorted(entries) == sorted(names)
    assert entries[stopped]["result"] == "failed"
    assert entries[stopped]["exit_status"] is None
    assert "is stopped" in entries[stopped]["error"]
    assert entries["web-003"]["exit_status"] == 4
    assert entries["web-003"]["result"] == "nonzero"
    for name in set(names) - {stopped, "web-003"}:
        assert entries[name]["exit_status"] == 0
        assert entries[name]["ok"] is True
        assert entries[name]["stdout"].startswith("hello ")
        assert entries[name]["stdout"].endswith("\nsecond")
        assert entries[name]["stderr"] == "oops\n"


def test_exit_status_is_zero_when_all_returned_zero_and_one_when_none_did(
    golem_env: GolemEnv, fleet: tuple[DevnetThread, list[str]]
) -> None:
    _devnet, names = fleet
    ok = run_golem(golem_env, "vm", "exec", *names[:3], "--", "true")
    assert ok.returncode == 0, ok.stderr
    assert "exec on 3 VM(s): 3 returned 0" in ok.stderr

    none = run_golem(golem_env, "vm", "exec", *names[:3], "--", "exit", "9")
    assert none.returncode == 1, none.stderr
    assert f"{names[0]}: exited with status 9" in none.stderr


def test_provider_filter_and_command_options_stay_the_commands(
    golem_env: GolemEnv, fleet: tuple[DevnetThread, list[str]]
) -> None:
    devnet, names = fleet
    provider = devnet.providers[0].provider_id
    # "-n" after "--" belongs to echo, not to golem.
    result = run_golem(golem_env, "vm", "exec", "--provider", provider, "--", "echo", "-n", "x")
    assert_ok(result)
    rows = result.stdout.splitlines()
    # create_fleet places VMs round-robin: provider 0 holds every fourth.
    assert sorted(line.split(":")[0] for line in rows) == names[::4]
    assert all(line.endswith(": x") for line in rows)


def test_bad_input_changes_nothing_and_says_how(
    golem_env: GolemEnv, fleet: tuple[DevnetThread, list[str]]
) -> None:
    _devnet, names = fleet
    missing = run_golem(golem_env, "vm", "exec", names[0])
    assert missing.returncode == 2
    assert "Error: No command given" in missing.stderr
    assert "Solution: Put the command after '--'" in missing.stderr

    unknown = run_golem(golem_env, "vm", "exec", names[0], "nope", "--", "true")
    assert unknown.returncode != 0
    assert "nope" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert unknown.stdout == ""  # nothing ran: a typo stops the whole command

    nothing = run_golem(golem_env, "vm", "exec", "--", "true")
    assert nothing.returncode == 2
    assert "Solution:" in nothing.stderr


def test_a_closed_pipe_stops_every_vm_quietly(
    golem_env: GolemEnv, fleet: tuple[DevnetThread, list[str]]
) -> None:
    import subprocess

    from tests.conftest import GOLEM

    process = subprocess.Popen(
        [str(GOLEM), "vm", "exec", "--all", "--", "seq", "1", "1000000"],
        env=golem_env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        assert first.startswith(b"web-") and first.endswith(b": 1\n"), first
        process.stdout.close()  # `golem vm exec ... | head -1`
        stderr = process.stderr.read()
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 141, stderr
    assert b"Traceback" not in stderr


def test_output_bytes_pass_through_unchanged_after_the_prefix(
    golem_env: GolemEnv, fleet: tuple[DevnetThread, list[str]]
) -> None:
    import subprocess

    from tests.conftest import GOLEM

    done = subprocess.run(
        [str(GOLEM), "vm", "exec", "web-000", "--", "printf", "'\\000\\377\\r\\n\\033[2J'"],
        env=golem_env.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Not UTF-8, not text: the bytes as the VM wrote them, a newline added at the end.
    assert done.stdout == b"web-000: \x00\xff\r\n" + b"web-000: \x1b[2J\n"
