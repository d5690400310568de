"""docs/cli.md is what the commands' own help says now (``make cli-docs``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import GolemEnv

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_is_not_stale(golem_env: GolemEnv, tmp_path: Path) -> None:
    """Generated in a fresh process, as `make cli-docs` does, with the test's
    isolated environment: the help text must not depend on where it runs."""
    fresh = tmp_path / "cli.md"
    done = subprocess.run(
        [sys.executable, "-m", "requestor.cli.docs", str(fresh)],
        capture_output=True,
        text=True,
        env={**golem_env.env, "COLUMNS": "40"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert fresh.read_text() == DOCS.read_text(), (
        "docs/cli.md is stale: run 'make cli-docs' and commit it"
    )


def test_the_reference_covers_every_command() -> None:
    text = DOCS.read_text()
    for command in (
        "golem vm list",
        "golem vm ssh-config",
        "golem config show",
        "golem completion",
        "golem devnet status",
    ):
        assert f"## `{command}`" in text
