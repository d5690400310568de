"""Output that cannot be turned against the user: --json is ASCII, a closed pipe ends
quietly (after the work is recorded), a full disk or an unencodable terminal is one
clear line, never an internal error."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import GOLEM, GolemEnv, assert_ok, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread

HOSTILE = "boom \x1b]0;owned\x07 \x85 \u202egnp.exe\u200b ok"


def _add_vm_row(db_path: Path, name: str, last_error: str) -> None:
    """A record as a provider's error text would leave it (the schema exists)."""
    connection = sqlite3.connect(db_path)
    try:
        connection.execute(
            "INSERT INTO vms (name, provider_ip, provider_vm_name, cpu, memory, storage, "
            "status, ssh_user, last_error, created_at, updated_at) VALUES "
            "(?, '127.0.0.1', ?, 1, 1, 10, 'error', 'ubuntu', ?, "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            (name, f"{name}-x", last_error),
        )
        connection.commit()
    finally:
        connection.close()


def _closed_stdout(
    golem_env: GolemEnv, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run golem with a stdout whose reader has gone, as `golem ... | head -0`."""
    process = subprocess.Popen(
        [str(GOLEM), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**golem_env.env, **(env or {})},
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    return process.wait(timeout=60), stderr


def test_json_is_ascii_whatever_the_provider_sent(golem_env: GolemEnv) -> None:
    assert_ok(run_golem(golem_env, "vm", "list"))
    _add_vm_row(golem_env.db_path, "hostile", HOSTILE)
    done = run_golem(golem_env, "vm", "list", "--json")
    assert_ok(done)
    assert done.stdout.isascii()
    assert all(c == "\n" or 0x20 <= ord(c) < 0x7F for c in done.stdout)
    assert json.loads(done.stdout)[0]["last_error"] == HOSTILE  # escaped, not lost


def test_a_closed_pipe_ends_quietly(golem_env: GolemEnv) -> None:
    assert_ok(run_golem(golem_env, "vm", "list"))
    for index in range(50):  # more than one pipe buffer of table and JSON
        _add_vm_row(golem_env.db_path, f"vm-{index}", "x" * 2000)
    for args in (("vm", "list"), ("vm", "list", "--json")):
        code, stderr = _closed_stdout(golem_env, *args)
        assert code == 141, stderr
        assert stderr == ""


def test_bulk_work_is_recorded_before_a_closed_pipe_ends_the_command(
    golem_env: GolemEnv, devnet: DevnetThread
) -> None:
    env = {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    provider = devnet.providers[0].provider_id
    for name in ("piped-1", "piped-2"):
        args = ("vm", "create", name, "--provider-id", provider, *SMALL_VM)
        assert_ok(run_golem(golem_env, *args, extra_env=env), args)
    code, stderr = _closed_stdout(golem_env, "vm", "stop", "--all", "--json", env=env)
    assert code == 141, stderr
    assert "error" not in stderr.lower()
    rows = db_rows(golem_env.db_path)
    assert {rows[name]["status"] for name in ("piped-1", "piped-2")} == {"stopped"}


def test_a_full_disk_is_one_clear_line(golem_env: GolemEnv) -> None:
    assert_ok(run_golem(golem_env, "vm", "list"))
    _add_vm_row(golem_env.db_path, "one", "x")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [str(GOLEM), "vm", "list", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=golem_env.env,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    # With --json the error is the documented JSON object (docs/json.md, "Errors").
    assert json.loads(done.stderr) == {
        "error": {
            "code": "output_full",
            "exit_code": 1,
            "message": "Cannot write: No space left on device",
            "hint": "Free some disk space, or send the output elsewhere, then try again.",
        }
    }
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [str(GOLEM), "vm", "list"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=golem_env.env,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "Error: Cannot write: No space left on device"
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def test_an_unencodable_terminal_is_one_clear_line_and_json_still_works(
    golem_env: GolemEnv,
) -> None:
    assert_ok(run_golem(golem_env, "vm", "list"))
    _add_vm_row(golem_env.db_path, "one", HOSTILE)
    latin = {"PYTHONIOENCODING": "latin-1"}
    done = run_golem(golem_env, "vm", "list", extra_env=latin)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: The output cannot be written in this terminal's encoding (iso8859-1)"]
    assert "LC_ALL=C.UTF-8" in done.stderr
    done = run_golem(golem_env, "vm", "list", "--json", extra_env=latin)
    assert_ok(done)
    assert json.loads(done.stdout)[0]["name"] == "one"
