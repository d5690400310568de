"""Team access: a VM trusts the key it was created with and the keys granted on it.

Two "machines" (alice's and bob's: their own home, base dir and SSH key, one
database: PostgreSQL, or a SQLite file both name) drive the real CLI against
devnet VMs, whose sshd reads ~/.ssh/authorized_keys at each login.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from click.testing import Result

from tests.conftest import GolemEnv, assert_ok
from tests.helpers import SMALL_VM, parse_json
from tests.support.threaded import DevnetThread

# The db_backend fixture comes with the PostgreSQL test harness (tests/plugins/postgres.py).
postgres = pytest.importorskip("tests.plugins.postgres", reason="needs the PostgreSQL harness")

pytestmark = pytest.mark.timeout(120)
# Pins and the per-machine ssh config are about machines sharing one database.
SHARED_ONLY = pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)


@dataclass
class Machine:
    user: str
    home: Path
    env: dict[str, str]

    @property
    def key_path(self) -> Path:
        return self.home / ".golem" / "ssh" / "id_ed25519"

    @property
    def public_line(self) -> str:
        return " ".join(self.key_path.with_suffix(".pub").read_text().split()[:2])


@dataclass
class Team:
    alice: Machine
    bob: Machine
    devnet: DevnetThread
    golem: Any
    shared: bool

    def run(self, machine: Machine, *args: str) -> Result:
        result: Result = self.golem(*args, env=machine.env)
        return result


@pytest.fixture
def team(
    golem_env: GolemEnv,
    golem: Any,
    devnet: DevnetThread,
    db_backend: postgres.DbBackend,
    tmp_path: Path,
) -> Team:
    def machine(user: str) -> Machine:
        home = tmp_path / f"home-{user}"
        home.mkdir()
        env = {
            "HOME": str(home),
            "GOLEM_REQUESTOR_BASE_DIR": str(home / ".golem"),
            "GOLEM_REQUESTOR_USER": user,
            "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url,
        }
        if db_backend.url is None:  # one SQLite file for both
            env["GOLEM_REQUESTOR_DB_PATH"] = str(tmp_path / "team.db")
        return Machine(user, home, env)

    return Team(machine("alice"), machine("bob"), devnet, golem, db_backend.url is not None)


def _create(team: Team, name: str) -> dict[str, Any]:
    provider = team.devnet.providers[0].provider_id
    result = team.run(team.alice, "vm", "create", name, "--provider-id", provider, *SMALL_VM)
    assert_ok(result)
    info = team.run(team.alice, "vm", "info", name, "--json")
    assert_ok(info)
    vm: dict[str, Any] = parse_json(info.output)
    return vm


def _state(machine: Machine, name: str) -> tuple[Any, list[Any]]:
    """VM ``name``'s row and its grants, as the database holds them."""
    from requestor.db import repository
    from requestor.db.engine import Database
    from requestor.settings import load_settings

    async def read() -> tuple[Any, list[Any]]:
        settings = load_settings({**os.environ, **machine.env})
        async with Database.for_settings(settings) as db, db.read() as session:
            vm = await repository.get_vm(session, name)
            return vm, (await repository.grants_of(session, [vm.id])).get(vm.id, [])

    return asyncio.run(read())


def _user_keys(machine: Machine) -> dict[str, list[str]]:
    from sqlalchemy import select

    from requestor.db.engine import Database
    from requestor.db.models import UserKey

    async def read() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        async with Database.for_settings(_settings(machine)) as db, db.read() as session:
            for key in (await session.execute(select(UserKey))).scalars():
                found.setdefault(key.user, []).append(key.public_key)
        return found

    return asyncio.run(read())


def _raw_login(vm: dict[str, Any], key_path: Path) -> bool:
    """Whether the VM itself lets ``key_path`` in (no golem involved)."""

    async def attempt() -> bool:
        try:
            conn = await asyncssh.connect(
                vm["ip_address"],
                vm["ssh_port"],
                username="ubuntu",
                client_keys=[str(key_path)],
                known_hosts=None,
                config=None,
                agent_path=None,
                connect_timeout=10,
            )
        except asyncssh.PermissionDenied:
            return False
        conn.close()
        await conn.wait_closed()
        return True

    return asyncio.run(attempt())


def test_teammate_refused_granted_then_revoked(team: Team) -> None:
    vm = _create(team, "web")
    alice, bob = team.alice, team.bob

    # Bob's golem holds no key web trusts: refused before connecting, with who can grant.
    refused = team.run(bob, "vm", "ssh", "web", "--", "echo", "in")
    assert refused.exit_code == 1, refused.output
    assert "VM web does not trust this machine's SSH key" in refused.output
    assert "created by alice@" in refused.output
    if team.shared:
        # Each machine's golem recorded its user's key: alice's at create, bob's
        # at his refused attempt; so alice can grant bob's by his name.
        assert _user_keys(alice) == {"alice": [alice.public_line], "bob": [bob.public_line]}
        assert "golem vm grant web --user bob" in refused.output
        whose: list[str] = ["--user", "bob"]
    else:
        assert f"golem vm grant web --key '{bob.public_line}'" in refused.output
        whose = ["--key", str(bob.key_path.with_suffix(".pub"))]
    assert not _raw_login(vm, bob.key_path)

    granted = team.run(alice, "vm", "grant", "web", *whose, "--json")
    assert_ok(granted)
    [entry] = parse_json(granted.output)
    assert (entry["name"], entry["result"], entry["ok"]) == ("web", "done", True)
    again = team.run(alice, "vm", "grant", "web", *whose)
    assert_ok(again)
    assert "(already)" in again.output

    # The remote exit status becomes golem's: the command ran on the VM.
    inside = team.run(bob, "vm", "ssh", "web", "--", "exit", "7")
    assert inside.exit_code == 7, inside.output
    row, grants = _state(alice, "web")
    assert (row.last_action, row.last_actor.split("@")[0]) == ("grant", "alice")
    assert [(g.public_key, g.granted_by.split("@")[0]) for g in grants] == [
        (bob.public_line, "alice")
    ]

    revoked = team.run(alice, "vm", "revoke", "web", *whose)
    assert_ok(revoked)
    assert "Revoked web" in revoked.output
    # The VM itself no longer lets bob in, and bob's golem refuses before trying.
    assert not _raw_login(vm, bob.key_path)
    assert _raw_login(vm, alice.key_path)
    refused_again = team.run(bob, "vm", "ssh", "web", "--", "true")
    assert refused_again.exit_code == 1
    assert "does not trust this machine's SSH key" in refused_again.output
    row, grants = _state(alice, "web")
    assert (row.last_action, grants) == ("revoke", [])

    # A key that is not granted (any more): a no-op, said so.
    noop = team.run(alice, "vm", "revoke", "web", *whose)
    assert_ok(noop)
    assert "was not granted on it: nothing to do" in noop.output


def test_creation_key_cannot_be_revoked(team: Team) -> None:
    vm = _create(team, "base")
    key_line = team.alice.public_line
    result = team.run(team.alice, "vm", "revoke", "base", "--key", key_line)
    assert result.exit_code == 1
    assert "is the key base was created with: it cannot be revoked" in result.output
    assert _raw_login(vm, team.alice.key_path)


def _settings(machine: Machine) -> Any:
    from requestor.settings import load_settings

    return load_settings({**os.environ, **machine.env})


def _grant_bob(team: Team, name: str) -> None:
    # Bob's refused attempt records his key in a shared database; on SQLite the
    # key itself is granted.
    team.run(team.bob, "vm", "ssh", name, "--", "true")
    whose = ["--user", "bob"] if team.shared else ["--key", team.bob.public_line]
    assert_ok(team.run(team.alice, "vm", "grant", name, *whose))


@SHARED_ONLY
def test_pin_made_by_one_machine_protects_the_other(team: Team) -> None:
    vm = _create(team, "shop")  # alice's create pinned the host key
    _grant_bob(team, "shop")
    team.devnet.rotate_host_key(team.devnet.providers[0].provider_id, vm["provider_vm_name"])
    # Bob never connected to shop: his very first connection is checked against
    # alice's pin, and refused.
    result = team.run(team.bob, "vm", "ssh", "shop", "--", "true")
    assert result.exit_code == 1, result.output
    assert "Host key of VM shop has changed" in result.output
    assert vm["host_key_fingerprint"] in result.output  # the pin alice's machine made
    # The pin is kept: the other machine's refusal did not replace it.
    info = parse_json(team.run(team.alice, "vm", "info", "shop", "--json").output)
    assert info["host_key_fingerprint"] == vm["host_key_fingerprint"]


@SHARED_ONLY
def test_first_use_pin_is_conditional(team: Team) -> None:
    """Two machines pinning at once keep one pin; the loser re-checks against it."""
    from requestor.db import repository
    from requestor.db.engine import Database
    from requestor.errors import HostKeyChangedError
    from requestor.services.access import open_access

    vm = _create(team, "race")
    _grant_bob(team, "race")
    alice_pin = _state(team.alice, "race")[0].host_key

    async def race() -> None:
        async def set_pin(value: str | None) -> None:
            async with Database.for_settings(_settings(team.alice)) as db, db.write() as session:
                found = await repository.get_vm(session, "race")
                found.host_key = value

        await set_pin(None)  # as a record made before its first connection
        async with open_access(_settings(team.bob), "race") as access:
            assert access.target.endpoint.host_key is None  # bob read: nothing pinned
            # Meanwhile the VM shows a new key, and another machine pinned the old one.
            team.devnet.rotate_host_key(
                team.devnet.providers[0].provider_id, vm["provider_vm_name"]
            )
            await set_pin(alice_pin)
            with pytest.raises(HostKeyChangedError):
                await access.connect()

    asyncio.run(race())
    assert _state(team.alice, "race")[0].host_key == alice_pin  # one pin, kept


@SHARED_ONLY
def test_written_ssh_config_lists_what_this_machine_reaches(team: Team) -> None:
    _create(team, "web")
    _create(team, "api")
    _grant_bob(team, "web")
    result = team.run(team.bob, "vm", "ssh-config", "--write", "--json")
    assert_ok(result)
    written = parse_json(result.output)
    assert written["entries"] == 1
    assert "Host golem-web\n" in written["config"]
    assert "golem-api" not in written["config"]
    assert f"IdentityFile {team.bob.key_path}\n" in written["config"]
    assert {
        "name": "api",
        "reason": "this machine's SSH key is not granted on it (see 'golem vm grant')",
    } in written["skipped"]
    known_hosts = (team.bob.home / ".golem" / "ssh" / "known_hosts").read_text()
    web_pin = _state(team.alice, "web")[0].host_key
    assert known_hosts == f"golem-web {' '.join(web_pin.split()[:2])}\n"

    # Alice's machine reaches both, with her own key.
    mine = parse_json(team.run(team.alice, "vm", "ssh-config", "--json").output)
    assert mine["entries"] == 2
    assert f"IdentityFile {team.alice.key_path}\n" in mine["config"]
    assert str(team.bob.key_path) not in mine["config"]


def test_grant_with_a_key_line_and_bad_keys(team: Team, tmp_path: Path) -> None:
    vm = _create(team, "box")
    friend = asyncssh.generate_private_key("ssh-ed25519")
    friend_path = tmp_path / "friend"
    friend_path.write_bytes(friend.export_private_key())
    friend_path.chmod(0o600)
    line = friend.export_public_key().decode().strip() + " friend@laptop"
    assert not _raw_login(vm, friend_path)

    bad = {
        "garbage": "is not an OpenSSH public key",
        "ssh-ed25519 AAAAnotbase64!": "is not an OpenSSH public key",
        str(tmp_path / "missing.pub"): "No such key file",
        str(friend_path): "is a private key",
    }
    two = tmp_path / "two.pub"
    two.write_text(f"{line}\n{line}\n")
    bad[str(two)] = "holds 2 lines, not one OpenSSH public key"
    for value, message in bad.items():
        result = team.run(team.alice, "vm", "grant", "box", "--key", value)
        assert result.exit_code == 2, (value, result.output)
        assert message in result.output and "Solution:" in result.output, result.output
    for whose in ([], ["--key", line, "--user", "bob"]):
        result = team.run(team.alice, "vm", "grant", "box", *whose)
        assert result.exit_code == 2
        assert "Give exactly one of --key and --user" in result.output
    unknown = team.run(team.alice, "vm", "grant", "box", "--user", "carol")
    assert unknown.exit_code == 2
    assert "No SSH key is recorded for user carol" in unknown.output
    assert not _state(team.alice, "box")[1]  # nothing was granted by any of these
    assert not _raw_login(vm, friend_path)

    assert_ok(team.run(team.alice, "vm", "grant", "box", "--key", line))
    assert _raw_login(vm, friend_path)
    [grant] = _state(team.alice, "box")[1]
    assert (grant.public_key, grant.user) == (" ".join(line.split()[:2]), None)


@SHARED_ONLY
def test_a_grant_waits_for_another_golem_acting_on_the_vm(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two edits of one VM's authorized_keys at once would lose one: a grant takes
    the VM's claim (as stop and destroy do), waiting a bounded time for it."""
    from requestor.db.engine import Database
    from requestor.services import grants

    vm = _create(team, "busy")
    vm_id = _state(team.alice, "busy")[0].id
    assert team.run(team.bob, "vm", "ssh", "busy", "--", "true").exit_code == 1  # makes his key
    bob_key = ["--key", team.bob.public_line]
    monkeypatch.setattr(grants, "EDIT_CLAIM_WAIT_S", 0.5)

    async def grant_while_claimed() -> Result:
        # Another golem (its own connection and claim) holds the VM meanwhile.
        async with (
            Database.for_settings(_settings(team.bob)) as other,
            other.claim(vm_id) as claimed,
        ):
            assert claimed
            return await asyncio.to_thread(team.run, team.alice, "vm", "grant", "busy", *bob_key)

    blocked = asyncio.run(grant_while_claimed())
    assert blocked.exit_code == 1, blocked.output
    assert "Another golem kept busy busy for 0.5 s: its keys were not changed" in blocked.output
    _row, grants_now = _state(team.alice, "busy")
    assert grants_now == []
    assert not _raw_login(vm, team.bob.key_path)

    assert_ok(team.run(team.alice, "vm", "grant", "busy", *bob_key))  # free again
    assert _raw_login(vm, team.bob.key_path)
