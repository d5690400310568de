"""The ssh config and known_hosts that 'golem vm ssh-config --write' wrote follow
every change of a VM's existence, SSH address or host key, whichever path makes
it: create, destroy, forget, a provider found at a new address (relocation),
``list --refresh`` completing a crashed create, the first-use pin and --repin.
After each, real OpenSSH (``ssh -F <written config> golem-NAME true``) connects.

Everything runs the real ``golem`` against a devnet on loopback; the order of
events is the order of the commands (no sleeps).
"""

from __future__ import annotations

import ipaddress
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import GolemEnv, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread


@pytest.fixture
def env(devnet: DevnetThread, golem_env: GolemEnv) -> dict[str, str]:
    """The devnet's discovery for golem run as a subprocess."""
    return {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}


def golem_ok(golem_env: GolemEnv, env: dict[str, str], *args: str) -> str:
    result = run_golem(golem_env, *args, extra_env=env)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def config_path(golem_env: GolemEnv) -> Path:
    return golem_env.ssh_dir / "config"


def known_hosts(golem_env: GolemEnv) -> str:
    return (golem_env.ssh_dir / "known_hosts").read_text()


def openssh(golem_env: GolemEnv, name: str) -> subprocess.CompletedProcess[str]:
    """Plain OpenSSH through the written config only: nothing from ~/.ssh, no agent."""
    return subprocess.run(
        [
            "ssh",
            "-F",
            str(config_path(golem_env)),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            f"golem-{name}",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"HOME": str(golem_env.home), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def assert_reaches(golem_env: GolemEnv, name: str) -> None:
    done = openssh(golem_env, name)
    assert done.returncode == 0, done.stderr


def create(golem_env: GolemEnv, env: dict[str, str], devnet: DevnetThread, name: str) -> None:
    provider = devnet.providers[0].provider_id
    golem_ok(golem_env, env, "vm", "create", name, "--provider-id", provider, *SMALL_VM)


def set_columns(golem_env: GolemEnv, name: str, **values: object) -> None:
    """Edit local state as a crash, a move or another tool leaves it."""
    connection = sqlite3.connect(golem_env.db_path)
    try:
        with connection:
            for column, value in values.items():
                assert column in {"ssh_host", "ssh_port", "host_key", "status", "provider_ip"}
                connection.execute(f"UPDATE vms SET {column} = ? WHERE name = ?", (value, name))
    finally:
        connection.close()


def entry_host(golem_env: GolemEnv, name: str) -> str | None:
    """The HostName of golem-NAME in the written config; None without an entry."""
    lines = config_path(golem_env).read_text().splitlines()
    for index, line in enumerate(lines):
        if line == f"Host golem-{name}":
            return lines[index + 1].split()[1]
    return None


def test_create_adds_the_entry(
    golem_env: GolemEnv, env: dict[str, str], devnet: DevnetThread
) -> None:
    golem_ok(golem_env, env, "vm", "ssh-config", "--write")  # written while empty
    assert entry_host(golem_env, "fresh") is None
    create(golem_env, env, devnet, "fresh")
    assert entry_host(golem_env, "fresh") == db_rows(golem_env.db_path)["fresh"]["ssh_host"]
    assert "golem-fresh ssh-ed25519 " in known_hosts(golem_env)
    assert_reaches(golem_env, "fresh")


@pytest.mark.parametrize("verb", ["destroy", "forget"])
def test_destroy_and_forget_drop_the_entry(
    golem_env: GolemEnv, env: dict[str, str], devnet: DevnetThread, verb: str
) -> None:
    create(golem_env, env, devnet, "keep")
    create(golem_env, env, devnet, "drop")
    golem_ok(golem_env, env, "vm", "ssh-config", "--write")
    assert_reaches(golem_env, "drop")
    args = (
        ("vm", "destroy", "drop", "--yes")
        if verb == "destroy"
        else ("vm", "forget", "drop", "--force")
    )
    golem_ok(golem_env, env, *args)
    assert entry_host(golem_env, "drop") is None
    assert "golem-drop " not in known_hosts(golem_env)
    assert openssh(golem_env, "drop").returncode != 0  # no such host any more
    assert_reaches(golem_env, "keep")


def test_relocation_moves_the_entry(
    golem_env: GolemEnv, env: dict[str, str], devnet: DevnetThread
) -> None:
    """A provider that stopped answering at the recorded address is found at its
    new one through discovery; the entry follows the VM there."""
    create(golem_env, env, devnet, "mover")
    real = db_rows(golem_env.db_path)["mover"]["ssh_host"]
    stale = str(ipaddress.ip_address(devnet.providers[0].ip_address) + 150)
    set_columns(golem_env, "mover", provider_ip=stale, ssh_host=stale)
    golem_ok(golem_env, env, "vm", "ssh-config", "--write")
    assert entry_host(golem_env, "mover") == stale
    assert openssh(golem_env, "mover").returncode != 0  # nothing listens there

    golem_ok(golem_env, env, "vm", "list", "--refresh")
    assert entry_host(golem_env, "mover") == real
    assert_reaches(golem_env, "mover")


def test_refresh_completing_a_crashed_create_adds_the_entry(
    golem_env: GolemEnv, env: dict[str, str], devnet: DevnetThread
) -> None:
    """The record a create leaves when killed after its POST: no address, no pin."""
    create(golem_env, env, devnet, "crashy")
    set_columns(golem_env, "crashy", ssh_host=None, ssh_port=None, host_key=None, status="creating")
    golem_ok(golem_env, env, "vm", "ssh-config", "--write")
    assert entry_host(golem_env, "crashy") is None

    golem_ok(golem_env, env, "vm", "list", "--refresh")
    row = db_rows(golem_env.db_path)["crashy"]
    assert row["status"] == "running" and row["ssh_port"] is not None
    assert row["host_key"] is not None  # pinned as the create would have
    assert entry_host(golem_env, "crashy") == row["ssh_host"]
    assert_reaches(golem_env, "crashy")


def test_first_use_pin_adds_the_entry(
    golem_env: GolemEnv, env: dict[str, str], devnet: DevnetThread
) -> None:
    create(golem_env, env, devnet, "unpinned")
    set_columns(golem_env, "unpinned", host_key=None)
    golem_ok(golem_env, env, "vm", "ssh-config", "--write")
    assert entry_host(golem_env, "unpinned") is None  # skipped: nothing pinned yet

    golem_ok(golem_env, env, "vm", "ssh", "unpinned", "--", "true")
    assert db_rows(golem_env.db_path)["unpinned"]["host_key"] is not None
    assert entry_host(golem_env, "unpinned") is not None
    assert_reaches(golem_env, "unpinned")


def test_repin_replaces_the_known_hosts_line(
    golem_env: GolemEnv, env: dict[str, str], devnet: DevnetThread
) -> None:
    create(golem_env, env, devnet, "rekey")
    golem_ok(golem_env, env, "vm", "ssh-config", "--write")
    assert_reaches(golem_env, "rekey")
    row = db_rows(golem_env.db_path)["rekey"]
    rotated = devnet.rotate_host_key(str(row["provider_id"]), str(row["provider_vm_name"]))
    refused = openssh(golem_env, "rekey")
    assert refused.returncode != 0 and "IDENTIFICATION HAS CHANGED" in refused.stderr

    golem_ok(golem_env, env, "vm", "ssh", "rekey", "--repin", "--yes")
    assert f"golem-rekey {' '.join(rotated.split()[:2])}" in known_hosts(golem_env)
    assert_reaches(golem_env, "rekey")
