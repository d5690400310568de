"""Shared test set-up: the loopback-only network guard, an isolated home and base
dir for every test, and ways to run the real ``golem`` in-process and as a
subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.netguard.guard import install as install_network_guard

pytest_plugins = ["tests.plugins.devnet", "tests.plugins.postgres"]

REPO = Path(__file__).resolve().parents[1]
GOLEM = Path(sys.executable).with_name("golem")
NETGUARD_DIR = Path(__file__).resolve().parent / "netguard"

install_network_guard()

# Started in the background by a non-interactive shell (`make test &`, some CI
# runners), pytest inherits SIGINT ignored, and so would every golem it starts:
# the Ctrl-C tests would then see golem ignore Ctrl-C. A Python handler here
# becomes the default disposition again in each child after exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class GolemEnv:
    """Where one test's golem keeps its state; ``env`` is for subprocesses."""

    home: Path
    base_dir: Path
    env: dict[str, str]

    @property
    def db_path(self) -> Path:
        return self.base_dir / "vms.db"

    @property
    def ssh_dir(self) -> Path:
        return self.base_dir / "ssh"


@pytest.fixture
def golem_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GolemEnv]:
    home = tmp_path / "home"
    home.mkdir()
    base_dir = home / ".golem"
    for key in list(os.environ):
        if key.startswith("GOLEM_REQUESTOR_"):
            monkeypatch.delenv(key)
    settings = {
        "HOME": str(home),
        "GOLEM_REQUESTOR_BASE_DIR": str(base_dir),
        # Never the public discovery service: an address on loopback with nothing there.
        "GOLEM_REQUESTOR_DISCOVERY_URL": "http://127.0.0.1:9",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "TERM": "dumb",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    env = {
        **os.environ,
        "GOLEM_TEST_NETGUARD": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(NETGUARD_DIR), str(REPO)])),
    }
    yield GolemEnv(home=home, base_dir=base_dir, env=env)


def run_golem(
    golem_env: GolemEnv,
    *args: str,
    input: str | bytes | None = None,
    timeout: float = 60,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``golem`` console script as a user would."""
    env = {**golem_env.env, **(extra_env or {})}
    return subprocess.run(
        [str(GOLEM), *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def golem(golem_env: GolemEnv):  # type: ignore[no-untyped-def]
    """``golem(*args)`` runs the CLI in-process with click's CliRunner."""
    from requestor.cli.main import cli

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


def assert_ok(result: Result | subprocess.CompletedProcess[str], args: Sequence[str] = ()) -> None:
    code = result.exit_code if isinstance(result, Result) else result.returncode
    out = result.output if isinstance(result, Result) else result.stdout + result.stderr
    assert code == 0, f"golem {' '.join(args)} exited {code}:\n{out}"
