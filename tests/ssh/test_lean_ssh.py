"""The SSH commands read the VM's connection details through sqlite3 (no ORM)
when the schema is at head; local state is opened through SQLAlchemy only to
write (a first-use pin, a status the provider reported)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.ssh.conftest import World

ORM = {"sqlalchemy", "alembic", "aiosqlite"}


def _packages(world: World, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "requestor", *args],
        capture_output=True,
        env=world.env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_ssh_and_cp_import_no_orm(world: World, tmp_path: Path) -> None:
    packages = _packages(world, "vm", "ssh", "vm1", "--", "true")
    assert "asyncssh" in packages
    assert packages & (ORM | {"pydantic"}) == set()

    source = tmp_path / "lean.txt"
    source.write_text("lean\n")
    packages = _packages(world, "vm", "cp", str(source), "vm1:lean.txt")
    assert "asyncssh" in packages
    assert packages & ORM == set()
    assert (world.vm_home("vm1") / "lean.txt").read_text() == "lean\n"
