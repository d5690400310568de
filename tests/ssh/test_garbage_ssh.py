"""An SSH port that speaks garbage (a version line that is not ASCII, a cut in the
middle of the key exchange, silence) is the normal SSH error naming the VM, for
every SSH command, and each attempt is bounded in time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ssh.conftest import World

pytestmark = pytest.mark.timeout(240)

# One bounded attempt, not a wait for SSH to come up (180 s by default): ~6 s by
# design, ~14 s for the re-pin (its 10 s handshake, then the 3 s diagnosis). The
# rest is margin for a busy machine, where the golem process waits for a CPU: the
# suite runs on parallel workers, and a re-pin took 27 s at a load of 8.6 on 2 cores.
ONE_ATTEMPT_S = 45

REASONS = {
    "non-ascii": "its SSH port sent a version line that is not ASCII",
    "close": "its SSH port closed the connection during the key exchange",
    "silent": "its SSH port sent nothing within",
}


@pytest.fixture(params=sorted(REASONS))
def garbage(world: World, request: pytest.FixtureRequest) -> Iterator[str]:
    mode: str = request.param
    world.net.set_faults(world.vms["vm2"], garbage_ssh=mode)
    try:
        yield mode
    finally:
        world.net.clear_faults(world.vms["vm2"])


def _commands(tmp_path: Path) -> list[tuple[str, ...]]:
    local = tmp_path / "note.txt"
    local.write_text("hello")
    return [
        ("vm", "ssh", "vm2", "--no-wait", "--", "true"),
        ("vm", "cp", "--no-wait", str(local), "vm2:"),
        ("vm", "forward", "--no-wait", "vm2", "0:22"),
        ("vm", "ssh", "vm2", "--repin", "--yes"),
    ]


def test_every_ssh_command_names_the_vm_and_the_fault(
    world: World, garbage: str, tmp_path: Path
) -> None:
    for args in _commands(tmp_path):
        started = time.monotonic()
        result = world.golem(*args, timeout=60)
        elapsed = time.monotonic() - started
        stderr = result.stderr.decode()
        assert result.returncode == 1, (args, stderr)
        assert "internal error" not in stderr.lower(), (args, stderr)
        lines = stderr.splitlines()
        assert lines[0].startswith(
            f"Error: Unable to establish SSH connection to VM vm2: {REASONS[garbage]}"
        ), (args, stderr)
        assert lines[1].startswith("Solution: "), (args, stderr)
        assert elapsed < ONE_ATTEMPT_S, (args, elapsed)
    # The pin is untouched: the garbage server could not replace it.
    world.net.clear_faults(world.vms["vm2"])
    world.ok("vm", "ssh", "vm2", "--no-wait", "--", "true")
