"""``golem vm ssh NAME -- CMD`` loads only what connecting needs: no output library
(rich) unless it waits or draws, no HTTP client, no SQLAlchemy or Alembic when the
schema is current (``python -X importtime`` shows what a run imports)."""

from __future__ import annotations

import subprocess
import sys

from tests.ssh.conftest import World

NOT_FOR_SSH = {"rich", "aiohttp", "alembic", "sqlalchemy"}


def test_a_command_over_ssh_imports_no_output_http_or_migration_stack(world: World) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "requestor",
            "vm",
            "ssh",
            "vm1",
            "--",
            "echo ok",
        ],
        capture_output=True,
        env=world.env,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, b"ok\n"), done.stderr[-2000:]
    packages = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "asyncssh" in packages  # the parse works
    assert packages & NOT_FOR_SSH == set()


def test_the_collector_resumes_when_the_event_loop_starts() -> None:
    """golem's entry point pauses the collector while modules load; a long session
    (an interactive shell, a big copy, a devnet) must collect again."""
    import gc

    from requestor.cli.context import AppContext

    async def state() -> tuple[bool, int]:
        return gc.isenabled(), gc.get_freeze_count()

    gc.disable()
    try:
        enabled, frozen = AppContext().run(state())
        assert enabled and frozen > 0
    finally:
        gc.unfreeze()
        gc.enable()
