"""Settings come from exactly the documented GOLEM_REQUESTOR_* variables; a bad value
is a one-line ConfigError naming the variable (exit code 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from requestor.errors import ConfigError, ExitCode
from requestor.settings import DEFAULT_DISCOVERY_URL, Environment, load_settings
from tests.conftest import REPO, GolemEnv

P = "GOLEM_REQUESTOR_"


def test_defaults_follow_home(golem_env: GolemEnv) -> None:
    settings = load_settings({})
    home = Path.home()
    assert home == golem_env.home
    assert settings.discovery_url == DEFAULT_DISCOVERY_URL == "http://discovery.golem.network:9001"
    assert settings.base_dir == home / ".golem"
    assert settings.ssh_key_dir == home / ".golem" / "ssh"
    assert settings.db_path == home / ".golem" / "vms.db"
    assert settings.environment is Environment.PRODUCTION
    assert settings.force_localhost is False
    assert settings.is_development is False


def test_base_dir_moves_the_derived_paths(tmp_path: Path) -> None:
    settings = load_settings({f"{P}BASE_DIR": str(tmp_path / "g")})
    assert settings.base_dir == tmp_path / "g"
    assert settings.ssh_key_dir == tmp_path / "g" / "ssh"
    assert settings.db_path == tmp_path / "g" / "vms.db"


def test_individual_paths_override_the_base_dir(tmp_path: Path) -> None:
    settings = load_settings(
        {
            f"{P}BASE_DIR": str(tmp_path / "g"),
            f"{P}SSH_KEY_DIR": str(tmp_path / "keys"),
            f"{P}DB_PATH": str(tmp_path / "db" / "state.db"),
        }
    )
    assert settings.base_dir == tmp_path / "g"
    assert settings.ssh_key_dir == tmp_path / "keys"
    assert settings.db_path == tmp_path / "db" / "state.db"


def test_tilde_is_expanded(golem_env: GolemEnv) -> None:
    settings = load_settings({f"{P}DB_PATH": "~/elsewhere/vms.db"})
    assert settings.db_path == golem_env.home / "elsewhere" / "vms.db"


@pytest.mark.parametrize(
    "key",
    ["DISCOVERY_URL", "BASE_DIR", "SSH_KEY_DIR", "DB_PATH", "ENVIRONMENT", "FORCE_LOCALHOST"],
)
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_value_is_an_error_never_unset(key: str, value: str) -> None:
    # A mistyped "$VAR" in a script must not fall back to a default: for the
    # discovery URL that default is the real network.
    with pytest.raises(ConfigError) as caught:
        load_settings({f"{P}{key}": value})
    assert caught.value.message == f"{P}{key} is set but empty"
    assert caught.value.hint and f"unset {P}{key}" in caught.value.hint
    assert caught.value.exit_code == ExitCode.USAGE


def test_development_with_forced_localhost() -> None:
    settings = load_settings(
        {
            f"{P}ENVIRONMENT": "Development",
            f"{P}FORCE_LOCALHOST": "true",
            f"{P}DISCOVERY_URL": "http://127.0.0.10:9001/",
        }
    )
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.force_localhost is True
    assert settings.discovery_url == "http://127.0.0.10:9001"
    assert settings.provider_api_url("127.0.0.77") == "http://localhost:7466/api/v1"
    assert settings.ssh_host("127.0.0.77") == "localhost"


def test_force_localhost_only_applies_in_development() -> None:
    settings = load_settings({f"{P}FORCE_LOCALHOST": "true"})
    assert settings.force_localhost is True
    assert settings.provider_api_url("127.0.0.77") == "http://127.0.0.77:7466/api/v1"
    assert settings.provider_api_url("2001:db8::1") == "http://[2001:db8::1]:7466/api/v1"
    assert settings.ssh_host("127.0.0.77") == "127.0.0.77"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
        (" False ", False),
    ],
)
def test_force_localhost_booleans(raw: str, expected: bool) -> None:
    assert load_settings({f"{P}FORCE_LOCALHOST": raw}).force_localhost is expected


def test_only_the_exact_variable_names_are_read() -> None:
    settings = load_settings(
        {
            "golem_requestor_environment": "bogus",
            "GOLEM_ENVIRONMENT": "bogus",
            "GOLEM_REQUESTOR_ENV": "bogus",
            "DISCOVERY_URL": "http://127.0.0.1:1",
            "GOLEM_REQUESTOR_DISCOVERY": "http://127.0.0.1:2",
        }
    )
    assert settings.environment is Environment.PRODUCTION
    assert settings.discovery_url == DEFAULT_DISCOVERY_URL


def test_load_settings_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{P}ENVIRONMENT", "development")
    assert load_settings().environment is Environment.DEVELOPMENT


# {file} is an existing regular file, {dir} an existing folder.
BAD_VALUES = [
    ("ENVIRONMENT", "bogus"),
    ("ENVIRONMENT", "prod"),
    ("FORCE_LOCALHOST", "maybe"),
    ("FORCE_LOCALHOST", "2"),
    ("DISCOVERY_URL", "127.0.0.1:9001"),
    ("DISCOVERY_URL", "ftp://127.0.0.1/"),
    ("DISCOVERY_URL", "http://"),
    ("DISCOVERY_URL", "http://[::1"),
    ("DISCOVERY_URL", "http://127.0.0.1:99999"),
    ("BASE_DIR", "{file}"),
    ("BASE_DIR", "{file}/below"),
    ("SSH_KEY_DIR", "{file}"),
    ("SSH_KEY_DIR", "{file}/deeper/ssh"),
    ("DB_PATH", "{dir}"),
    ("DB_PATH", "{file}/vms.db"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-dir").mkdir()
    value = value.format(file=tmp_path / "a-file", dir=tmp_path / "a-dir")
    with pytest.raises(ConfigError) as caught:
        load_settings({f"{P}{variable}": value})
    error = caught.value
    assert f"{P}{variable}" in error.message
    assert "\n" not in error.message
    assert error.hint and f"{P}{variable}" in error.hint
    assert error.exit_code == ExitCode.USAGE == 2


def test_env_dev_file_selects_the_local_devnet(golem_env: GolemEnv) -> None:
    env_file = REPO / ".env.dev"
    assert env_file.is_file()
    script = (
        "from requestor.settings import load_settings; s = load_settings(); "
        "print(s.environment.value, s.force_localhost, s.discovery_url)"
    )
    done = subprocess.run(
        ["bash", "-c", 'source .env.dev && "$0" -c "$1"', sys.executable, script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=golem_env.env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["development", "True", "http://127.0.0.10:9001"]
