"""``golem devnet up --localhost`` + ``source .env.dev``: development mode end to end.

With ``GOLEM_REQUESTOR_FORCE_LOCALHOST`` the requestor reaches every provider at
``localhost:7466`` and its VMs at ``localhost:<port>``, so this devnet has one
provider on 127.0.0.1:7466 (fixed by the contract's port). Discovery runs on a port
the devnet picks itself (``--discovery-port 0``), read back from the export lines it
prints, so a developer's own ``golem devnet up`` does not get in the way; that
``.env.dev`` names the devnet's default discovery address is checked separately.

127.0.0.1:7466 cannot move. If something else holds it, the test fails and says so
(no skipping: a skipped end-to-end test is a test nobody runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.conftest import GOLEM, REPO, GolemEnv, run_golem
from tests.helpers import SMALL_VM

pytestmark = pytest.mark.timeout(90)


def _dev_env_file_variables() -> dict[str, str]:
    """What ``source .env.dev`` sets, read by bash itself (so the file is what is tested)."""
    done = subprocess.run(
        ["bash", "-c", "source .env.dev && env -0"],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        timeout=10,
        check=True,
    )
    variables = dict(
        entry.split("=", 1) for entry in done.stdout.decode().split("\0") if "=" in entry
    )
    return {name: value for name, value in variables.items() if name.startswith("GOLEM_")}


LOCALHOST_API = "127.0.0.1:7466"
# Taken by each test that needs 127.0.0.1:7466 for itself: the suite runs on several
# pytest-xdist workers, and other checkouts' suites may run on this machine too.
LOCALHOST_API_LOCK = Path(tempfile.gettempdir()) / "golem-tests-127.0.0.1-7466.lock"


@pytest.fixture
def localhost_api() -> Iterator[None]:
    """127.0.0.1:7466 for this test alone among the test runs that take this lock."""
    with LOCALHOST_API_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _start_localhost_devnet(
    golem_env: GolemEnv, state_dir: Path
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``golem devnet up --localhost`` on a free discovery port; the process and its exports."""
    process = subprocess.Popen(
        [
            str(GOLEM),
            "devnet",
            "up",
            "--localhost",
            "--state-dir",
            str(state_dir),
            "--discovery-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=golem_env.env,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    exports: dict[str, str] = {}
    while len(exports) < 2:  # printed once discovery and the provider are up
        line = lines.get(timeout=30)
        if line is None:
            assert process.stderr is not None
            error = process.stderr.read()
            process.wait(timeout=10)
            if f"{LOCALHOST_API} is in use" in error:
                pytest.fail(
                    f"{LOCALHOST_API} is taken by another process (a 'golem devnet up "
                    "--localhost' of yours, or a local provider?), and this test needs it: "
                    f"stop that process and run the test again.\n{error}",
                    pytrace=False,
                )
            raise AssertionError(f"golem devnet up --localhost exited:\n{error}")
        words = shlex.split(line)
        assert len(words) == 2 and words[0] == "export", line
        name, _, value = words[1].partition("=")
        exports[name] = value
    return process, exports


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.usefixtures("localhost_api")
def test_dev_env_file_talks_to_a_localhost_devnet(golem_env: GolemEnv, tmp_path: Path) -> None:
    dev = _dev_env_file_variables()
    assert dev["GOLEM_REQUESTOR_ENVIRONMENT"] == "development"
    assert dev["GOLEM_REQUESTOR_FORCE_LOCALHOST"] == "true"
    assert dev["GOLEM_REQUESTOR_DISCOVERY_URL"] == "http://127.0.0.10:9001"  # devnet default

    process, exports = _start_localhost_devnet(golem_env, tmp_path / "devnet")
    try:
        discovery_url = exports["GOLEM_REQUESTOR_DISCOVERY_URL"]
        assert discovery_url.startswith("http://127.0.0.10:")
        assert not discovery_url.endswith(":0")
        env_file = (tmp_path / "devnet" / "env").read_text()
        assert f"export GOLEM_REQUESTOR_DISCOVERY_URL={discovery_url}\n" in env_file
        # .env.dev plus an isolated home and base dir; discovery where this devnet is.
        extra_env = {
            **dev,
            "GOLEM_REQUESTOR_DISCOVERY_URL": discovery_url,
            "HOME": str(golem_env.home),
            "GOLEM_REQUESTOR_BASE_DIR": str(golem_env.base_dir),
        }

        def golem(*args: str) -> subprocess.CompletedProcess[str]:
            result = run_golem(golem_env, *args, extra_env=extra_env)
            assert result.returncode == 0, (
                f"golem {' '.join(args)}:\n{result.stdout}{result.stderr}"
            )
            return result

        listed = json.loads(golem("vm", "providers", "--json").stdout)
        assert [(p["provider_id"], p["ip_address"], p["reachable"]) for p in listed] == [
            ("devnet-provider-01", "127.0.0.1", True)
        ]
        golem("vm", "create", "dev-vm", *SMALL_VM)
        assert golem("vm", "ssh", "dev-vm", "--", "echo ok").stdout == "ok\n"
        golem("vm", "destroy", "dev-vm", "--yes")
        assert "dev-vm" not in golem("vm", "list").stdout
    finally:
        _stop(process)
    assert process.returncode == 0


@pytest.mark.usefixtures("localhost_api")
def test_a_taken_localhost_port_fails_the_test_clearly(golem_env: GolemEnv, tmp_path: Path) -> None:
    # Hold 127.0.0.1:7466 (if something else already does, that is the same case).
    with socket.socket() as holder:
        with contextlib.suppress(OSError):
            holder.bind(("127.0.0.1", 7466))
            holder.listen()
        with pytest.raises(pytest.fail.Exception, match=re.escape(f"{LOCALHOST_API} is taken")):
            process, _ = _start_localhost_devnet(golem_env, tmp_path / "devnet")
            _stop(process)


def test_localhost_means_one_provider(golem: Any) -> None:
    result: Result = golem("devnet", "up", "--localhost", "--providers", "3")
    assert result.exit_code == 2
    assert "Error: --localhost runs exactly one provider, not 3" in result.output
    assert "--providers 1" in result.output
