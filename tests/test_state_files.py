"""Paths and state files: every path problem is one clear exit-2 line, state files are
private whatever the umask, and credentials in the discovery URL never reach output."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from requestor.errors import ConfigError, ExitCode
from requestor.settings import load_settings, redact_url
from tests.conftest import GOLEM, GolemEnv, run_golem

P = "GOLEM_REQUESTOR_"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    return lines[0]


@pytest.mark.parametrize("variable", ["BASE_DIR", "SSH_KEY_DIR", "DB_PATH"])
def test_unknown_tilde_user_is_a_setting_error(variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({f"{P}{variable}": "~golem-no-such-user-x/state"})
    assert f"{P}{variable}" in caught.value.message
    assert "golem-no-such-user-x" in caught.value.message
    assert caught.value.exit_code == ExitCode.USAGE


def test_no_home_folder_at_all_is_a_setting_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    # No $HOME and no password entry: what a service account in a container can have.
    monkeypatch.delenv("HOME", raising=False)

    def no_entry(_uid: int) -> pwd.struct_passwd:
        raise KeyError("no such uid")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(ConfigError) as caught:
        load_settings({})
    assert f"{P}BASE_DIR" in caught.value.message
    assert caught.value.hint and "HOME" in caught.value.hint


def test_a_db_path_that_is_not_a_regular_file_is_refused_and_left_alone(
    golem_env: GolemEnv,
) -> None:
    journal = Path("/dev/null-journal")
    existed = journal.exists()
    done = run_golem(golem_env, "vm", "list", extra_env={f"{P}DB_PATH": "/dev/null"})
    assert done.returncode == ExitCode.USAGE, done.stderr
    line = _one_error_line(done)
    assert f"{P}DB_PATH" in line and "not a regular file" in line
    assert journal.exists() == existed


@pytest.mark.parametrize(
    ("variable", "value", "args"),
    [
        ("SSH_KEY_DIR", "/proc/golem-test-keys", ("vm", "ssh-config", "--write")),
        ("DB_PATH", "/proc/golem-test-db/vms.db", ("vm", "list")),
        ("BASE_DIR", "/proc/golem-test-base", ("vm", "list")),
    ],
)
def test_a_folder_that_cannot_be_created_is_one_clear_line(
    golem_env: GolemEnv, variable: str, value: str, args: tuple[str, ...]
) -> None:
    done = run_golem(golem_env, *args, extra_env={f"{P}{variable}": value})
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    line = _one_error_line(done)
    assert "/proc/golem-test-" in line
    assert f"Solution: Set {P}" in done.stderr


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_state_files_are_private_whatever_the_umask(golem_env: GolemEnv, umask: int) -> None:
    def with_umask() -> None:
        os.umask(umask)

    for args in (("vm", "list"), ("vm", "ssh-config", "--write")):
        done = subprocess.run(
            [str(GOLEM), *args],
            capture_output=True,
            text=True,
            env=golem_env.env,
            timeout=60,
            check=False,
            preexec_fn=with_umask,
        )
        assert done.returncode == 0, done.stderr
    base = golem_env.base_dir
    assert _mode(base) == 0o700
    assert _mode(base / "ssh") == 0o700
    state = [base / "vms.db", base / "ssh" / "config", base / "ssh" / "known_hosts"]
    state += [p for p in base.glob("*") if p.is_file()]  # WAL, SHM, locks if left
    for path in state:
        assert _mode(path) == 0o600, path


def test_parents_created_for_the_database_are_private(golem_env: GolemEnv) -> None:
    db_path = golem_env.home / "deep" / "er" / "vms.db"
    done = run_golem(golem_env, "vm", "list", extra_env={f"{P}DB_PATH": str(db_path)})
    assert done.returncode == 0, done.stderr
    assert _mode(golem_env.home / "deep") == 0o700
    assert _mode(golem_env.home / "deep" / "er") == 0o700
    assert _mode(db_path) == 0o600


def test_an_existing_database_readable_by_others_is_made_private(golem_env: GolemEnv) -> None:
    assert run_golem(golem_env, "vm", "list").returncode == 0
    os.chmod(golem_env.db_path, 0o644)
    assert run_golem(golem_env, "vm", "list").returncode == 0
    assert _mode(golem_env.db_path) == 0o600


def test_redact_url_hides_user_password_and_query_values() -> None:
    assert redact_url("http://alice:s3cret@127.0.0.1:9001/x?token=abc&v") == (
        "http://***@127.0.0.1:9001/x?token=***&***"
    )
    assert redact_url("http://127.0.0.1:9001") == "http://127.0.0.1:9001"


def test_discovery_credentials_never_reach_the_output(golem_env: GolemEnv) -> None:
    url = "http://alice:s3cret-pw@127.0.0.1:9/?token=tok-123"
    for args in (("vm", "providers"), ("vm", "providers", "--json")):
        done = run_golem(golem_env, *args, extra_env={f"{P}DISCOVERY_URL": url})
        assert done.returncode == 1, done.stderr
        output = done.stdout + done.stderr
        assert "unreachable" in output
        for secret in ("alice", "s3cret-pw", "tok-123"):
            assert secret not in output
        assert "http://***@127.0.0.1:9/?token=***" in output


def test_an_empty_discovery_url_fails_before_any_connection(golem_env: GolemEnv) -> None:
    done = run_golem(golem_env, "vm", "providers", extra_env={f"{P}DISCOVERY_URL": ""})
    assert done.returncode == ExitCode.USAGE
    assert _one_error_line(done) == f"Error: {P}DISCOVERY_URL is set but empty"
