"""Trust on first use: the pin from create is checked, a changed key is refused,
``--repin`` is the one way to accept a new one, and a VM without a pin is pinned
at its first connection."""

from __future__ import annotations

from requestor.ssh.hostkeys import fingerprint
from tests.ssh.conftest import World


def test_create_pinned_the_key_the_vm_shows(world: World) -> None:
    pinned = str(world.row("vm1")["host_key"])
    home = world.vm_home("vm1")
    shown = (home.parents[1] / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
    assert pinned.split()[:2] == shown.split()[:2]


def test_changed_host_key_is_refused_and_repin_accepts_it(world: World) -> None:
    old = str(world.row("vm2")["host_key"])
    # What a re-created VM (or someone in the path) looks like: same address, another key.
    row = world.row("vm2")
    rotated = world.net.rotate_host_key(str(row["provider_id"]), str(row["provider_vm_name"]))
    new_file = world.vm_home("vm2").parents[1] / "etc/ssh/ssh_host_ed25519_key.pub"
    new = new_file.read_text().strip()
    assert new == rotated
    assert old.split()[1] != new.split()[1]

    refused = world.golem("vm", "ssh", "vm2", "--", "echo should-not-run")
    assert refused.returncode == 1
    assert refused.stdout == b""
    assert refused.stderr.decode() == (
        f"Error: Host key of VM vm2 has changed: pinned {fingerprint(old)}, now "
        f"{fingerprint(new)}. Someone may be intercepting the connection, or the provider "
        "re-created the VM\n"
        "Solution: If you know why it changed (e.g. you re-created the VM), re-pin with "
        "'golem vm ssh vm2 --repin'; otherwise do not connect.\n"
    )
    # cp and forward go through the same check.
    assert world.golem("vm", "cp", "vm2:.profile", "/dev/null").returncode == 1
    assert str(world.row("vm2")["host_key"]) == old

    # Without --yes and without a terminal to ask on, nothing changes.
    unconfirmed = world.golem("vm", "ssh", "vm2", "--repin")
    assert unconfirmed.returncode == 2
    assert str(world.row("vm2")["host_key"]) == old

    repinned = world.ok("vm", "ssh", "vm2", "--repin", "--yes")
    err = repinned.stderr.decode()
    assert fingerprint(old) in err and fingerprint(new) in err
    assert f"Pinned host key {fingerprint(new)} for vm2." in err
    assert str(world.row("vm2")["host_key"]).split()[:2] == new.split()[:2]
    assert world.ok("vm", "ssh", "vm2", "--", "echo ok").stdout == b"ok\n"

    again = world.ok("vm", "ssh", "vm2", "--repin", "--yes")
    assert b"unchanged" in again.stderr


def test_a_vm_without_a_pin_is_pinned_at_first_connection(world: World) -> None:
    pinned = world.row("vm2")["host_key"]
    world.set_column("vm2", "host_key", None)
    try:
        world.ok("vm", "ssh", "vm2", "--", "true")
        assert world.row("vm2")["host_key"] == pinned
    finally:
        world.set_column("vm2", "host_key", pinned)
