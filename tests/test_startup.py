"""``golem --version`` and ``golem --help`` start fast: the heavy libraries are
imported only by the commands that need them (``python -X importtime`` shows it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import GolemEnv

HEAVY = {"sqlalchemy", "aiohttp", "asyncssh", "alembic", "aiosqlite"}
NOT_FOR_VERSION = HEAVY | {"rich", "pydantic"}


def imported_packages(golem_env: GolemEnv, *args: str) -> tuple[set[str], str]:
    """Top-level packages imported by ``python -X importtime -m requestor ARGS``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "requestor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=golem_env.env,
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
