"""What a user sees when something is wrong: one ``Error:`` line, a ``Solution:``
line, the documented exit code, and never a traceback unless ``--debug``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import GolemEnv, run_golem
from tests.db import snapshot

P = "GOLEM_REQUESTOR_"


def assert_user_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """Exit ``code``, stderr exactly ``Error: ...`` + ``Solution: ...``, no traceback."""
    lines = done.stderr.splitlines()
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 2, lines
    assert lines[0].startswith("Error: ")
    assert lines[1].startswith("Solution: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert done.stdout == ""
    return lines[0]


BAD_SETTINGS = [
    ("ENVIRONMENT", "bogus"),
    ("FORCE_LOCALHOST", "maybe"),
    ("DISCOVERY_URL", "ftp://127.0.0.1:9001"),
    ("BASE_DIR", "{file}"),
    ("DB_PATH", "{dir}"),
    ("DB_PATH", "{file}/vms.db"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_SETTINGS)
def test_a_bad_setting_is_exit_2_naming_the_variable(
    golem_env: GolemEnv, tmp_path: Path, variable: str, value: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    value = value.format(file=tmp_path / "a-file", dir=tmp_path / "a-dir")
    done = run_golem(golem_env, "vm", "list", extra_env={f"{P}{variable}": value})
    assert_user_error(done, 2, f"{P}{variable}")
    assert f"{P}{variable}" in done.stderr.splitlines()[1]
    assert not golem_env.db_path.exists()


def test_debug_shows_the_cause_of_an_expected_error_not_a_traceback(golem_env: GolemEnv) -> None:
    """An expected error's message and hint say what to do; --debug adds what caused
    it, one line each. Tracebacks are for unexpected errors (the test below)."""
    done = run_golem(golem_env, "--debug", "vm", "list", extra_env={f"{P}ENVIRONMENT": "bogus"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "Debug: caused by ValueError: 'bogus' is not a valid Environment"
    assert lines[1].startswith(f"Error: {P}ENVIRONMENT='bogus'")
    assert lines[2].startswith("Solution: ")


def test_version_does_not_read_settings(golem_env: GolemEnv) -> None:
    done = run_golem(golem_env, "--version", extra_env={f"{P}ENVIRONMENT": "bogus"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("golem, version ")


def test_a_corrupt_database_is_refused_and_left_alone(golem_env: GolemEnv) -> None:
    golem_env.base_dir.mkdir()
    golem_env.db_path.write_bytes(b"\x00garbage" + os.urandom(8192))
    before = snapshot(golem_env.db_path)
    done = run_golem(golem_env, "vm", "list")
    assert_user_error(done, 1, str(golem_env.db_path), "not a readable SQLite file")
    assert snapshot(golem_env.db_path) == before


def test_a_newer_schema_is_refused_and_left_alone(golem_env: GolemEnv) -> None:
    assert run_golem(golem_env, "vm", "list").returncode == 0  # creates the DB at head
    with sqlite3.connect(golem_env.db_path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    connection.close()
    before = snapshot(golem_env.db_path)
    done = run_golem(golem_env, "vm", "list")
    assert_user_error(done, 1, "newer golem", "9999_from_the_future")
    assert "not changed" in done.stderr.splitlines()[1]
    assert snapshot(golem_env.db_path) == before


def test_an_unexpected_error_has_no_traceback_without_debug(golem_env: GolemEnv) -> None:
    """A hand-edited row the models cannot load is a bug-like failure: one line, exit 1."""
    assert run_golem(golem_env, "vm", "list").returncode == 0
    with sqlite3.connect(golem_env.db_path) as connection:
        connection.execute("PRAGMA ignore_check_constraints = ON")
        connection.execute(
            "INSERT INTO vms (name, provider_ip, provider_vm_name, cpu, memory, storage, status,"
            " ssh_user, created_at, updated_at) VALUES ('x', '127.0.0.1', 'x', 1, 1, 1,"
            " 'hand-edited', 'ubuntu', '2024-01-01 00:00:00', '2024-01-01 00:00:00')"
        )
    connection.close()
    done = run_golem(golem_env, "vm", "list")
    line = assert_user_error(done, 1, "Unexpected internal error")
    assert "--debug" in done.stderr.splitlines()[1]
    assert "hand-edited" in line

    debug = run_golem(golem_env, "--debug", "vm", "list")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
