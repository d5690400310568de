"""``golem --version`` and ``golem --help`` start fast: the heavy libraries are
imported only by the commands that need them (``python -X importtime`` shows it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import GolemEnv

HEAVY = {"sqlalchemy", "aiohttp", "asyncssh", "alembic", "aiosqlite"}
NOT_FOR_VERSION = HEAVY | {"rich", "pydantic"}


def imported_packages(
    golem_env: GolemEnv, *args: str, extra_env: dict[str, str] | None = None
) -> tuple[set[str], str]:
    """Top-level packages imported by ``python -X importtime -m requestor ARGS``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "requestor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**golem_env.env, **(extra_env or {})},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    packages = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            packages.add(module.split(".")[0])
    assert "click" in packages  # the parse works: click is always there
    return packages, done.stdout


def test_version_imports_nothing_heavy(golem_env: GolemEnv) -> None:
    packages, out = imported_packages(golem_env, "--version")
    assert out.startswith("golem, version ")
    assert packages & NOT_FOR_VERSION == set()


@pytest.mark.parametrize("args", [("--help",), ("vm", "--help")])
def test_help_imports_no_database_network_or_ssh_stack(
    golem_env: GolemEnv, args: tuple[str, ...]
) -> None:
    packages, out = imported_packages(golem_env, *args)
    assert "Usage:" in out
    assert packages & HEAVY == set()


def test_the_check_can_see_heavy_imports(golem_env: GolemEnv) -> None:
    """Control: a command that opens the database through the ORM does import SQLAlchemy."""
    packages, _ = imported_packages(golem_env, "vm", "list", "--refresh")
    assert "sqlalchemy" in packages


@pytest.mark.parametrize(
    "line",
    ["golem vm ssh ", "golem vm stop --provider ", "golem vm cp ./x ", "golem vm list --"],
)
def test_a_completion_call_imports_no_database_network_or_ssh_stack(
    golem_env: GolemEnv, line: str
) -> None:
    """One Tab press: VM names come from the lean sqlite3 read, provider ids from a
    small file; neither loads SQLAlchemy, aiohttp or asyncssh."""
    imported_packages(golem_env, "vm", "list")  # creates the database (ORM), now at head
    words = line.split()
    complete = {
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - (0 if line.endswith(" ") else 1)),
        "_GOLEM_COMPLETE": "bash_complete",
    }
    packages, _ = imported_packages(golem_env, extra_env=complete)
    assert packages & HEAVY == set()
    if line == "golem vm ssh ":
        assert "sqlite3" in packages  # control: VM names were read, the lean way
