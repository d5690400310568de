"""One devnet and two VMs for every test in tests/ssh, created with the real CLI.

``vm1`` is shared and left as it was by every test; ``vm2`` (on another
provider) is for tests that stop it, change its host key or break its login,
and each of those puts it back.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from golem_devnet.network import Devnet
from golem_devnet.provider import DevnetVM
from tests.conftest import GOLEM, NETGUARD_DIR, REPO
from tests.helpers import SMALL_VM
from tests.support.threaded import DevnetThread


@dataclass
class World:
    net: DevnetThread
    home: Path
    env: dict[str, str]
    vms: dict[str, str] = field(default_factory=dict)  # name -> provider id

    @property
    def base_dir(self) -> Path:
        return self.home / ".golem"

    @property
    def db_path(self) -> Path:
        return self.base_dir / "vms.db"

    def golem(
        self, *args: str, input: bytes | None = None, timeout: float = 60, stdin: int | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """The installed ``golem`` as a user runs it; bytes in and out."""
        return subprocess.run(
            [str(GOLEM), *args],
            input=input,
            stdin=stdin,
            capture_output=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        result = self.golem(*args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, (
            f"golem {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
        )
        return result

    def row(self, name: str) -> dict[str, object]:
        connection = sqlite3.connect(self.db_path)
        connection.row_factory = sqlite3.Row
        try:
            found = connection.execute("SELECT * FROM vms WHERE name = ?", (name,)).fetchone()
        finally:
            connection.close()
        assert found is not None, name
        return dict(found)

    def set_column(self, name: str, column: str, value: object) -> None:
        """Edit local state as another tool (or a hand) would."""
        assert column in {"ssh_key_path", "status", "host_key", "ssh_host", "ssh_port"}
        connection = sqlite3.connect(self.db_path)
        try:
            with connection:
                connection.execute(f"UPDATE vms SET {column} = ? WHERE name = ?", (value, name))
        finally:
            connection.close()

    # --- the devnet side of a VM ------------------------------------------------

    def _devnet_vm(self, devnet: Devnet, name: str) -> tuple[DevnetVM, object]:
        row = self.row(name)
        node = devnet.node(str(row["provider_id"]))
        for vm in node.vms.values():
            if vm.ssh_port == row["ssh_port"]:
                return vm, node
        raise AssertionError(f"the devnet has no VM behind {name}")

    def vm_home(self, name: str) -> Path:
        async def find(devnet: Devnet) -> Path:
            vm, _ = self._devnet_vm(devnet, name)
            return vm.server.home

        return self.net.run(find)

    def devnet_stop(self, name: str) -> None:
        """The VM goes down behind golem's back (local state still says running)."""

        async def stop(devnet: Devnet) -> None:
            vm, node = self._devnet_vm(devnet, name)
            await node.stop_vm(vm)  # type: ignore[attr-defined]

        self.net.run(stop)

    def devnet_start(self, name: str) -> None:
        async def start(devnet: Devnet) -> None:
            vm, node = self._devnet_vm(devnet, name)
            await node.start_vm(vm)  # type: ignore[attr-defined]

        self.net.run(start)

    def devnet_booting(self, name: str) -> None:
        """SSH goes down while the provider says the VM is still being created."""

        async def boot(devnet: Devnet) -> None:
            vm, node = self._devnet_vm(devnet, name)
            await node.stop_vm(vm)  # type: ignore[attr-defined]
            vm.set_status("creating")

        self.net.run(boot)

    def devnet_booted(self, name: str) -> None:
        """The end of ``devnet_booting``: the VM is up again."""

        async def up(devnet: Devnet) -> None:
            vm, node = self._devnet_vm(devnet, name)
            vm.set_status("stopped")
            await node.start_vm(vm)  # type: ignore[attr-defined]

        self.net.run(up)

    def devnet_delete(self, name: str) -> None:
        """The provider deletes the VM behind golem's back."""

        async def delete(devnet: Devnet) -> None:
            vm, node = self._devnet_vm(devnet, name)
            await node.delete_vm(vm)  # type: ignore[attr-defined]

        self.net.run(delete)


def _client_env(home: Path, discovery_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GOLEM_REQUESTOR_") and key not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")
    }
    env.update(
        {
            "HOME": str(home),
            "GOLEM_REQUESTOR_BASE_DIR": str(home / ".golem"),
            "GOLEM_REQUESTOR_DISCOVERY_URL": discovery_url,
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "TERM": "dumb",
            "GOLEM_TEST_NETGUARD": "1",
            "PYTHONPATH": os.pathsep.join([str(NETGUARD_DIR), str(REPO)]),
        }
    )
    return env


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("ssh")
    home = root / "home"
    home.mkdir()
    with DevnetThread(root / "devnet", providers=2) as net:
        world = World(net, home, _client_env(home, net.discovery_url))
        for name, provider in (("vm1", net.providers[0]), ("vm2", net.providers[1])):
            world.ok(
                "vm",
                "create",
                name,
                "--provider-id",
                provider.provider_id,
                *SMALL_VM,
                "--wait-timeout",
                "30",
            )
            world.vms[name] = provider.provider_id
        yield world
