"""The small pure parts: escapes, cp endpoints, port specs, OpenSSH config text."""

from __future__ import annotations

from pathlib import Path

import pytest

from requestor.errors import InputError
from requestor.ssh.forward import ForwardSpec, parse_spec
from requestor.ssh.interactive import EscapeFilter
from requestor.ssh.sshconfig import Entry, include_line, render_config, render_known_hosts
from requestor.ssh.transfer import Endpoint, parse_endpoint, plan_copy


@pytest.mark.parametrize(
    ("chunks", "sent", "actions"),
    [
        ([b"~."], b"", ["drop"]),  # at the very start
        ([b"ls\r~.rest"], b"ls\r", ["drop"]),
        ([b"ls\n", b"~", b"."], b"ls\n", ["drop"]),  # split across reads
        ([b"a~.b"], b"a~.b", []),  # not after a newline
        ([b"~~x"], b"~x", []),
        ([b"~x"], b"~x", []),
        ([b"~?ok"], b"ok", ["help"]),
    ],
)
def test_escape_filter(chunks: list[bytes], sent: bytes, actions: list[str]) -> None:
    escape = EscapeFilter()
    got, seen = b"", []
    for chunk in chunks:
        data, found = escape.feed(chunk)
        got += data
        seen += found
        if "drop" in found:
            break
    assert (got, seen) == (sent, actions)


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("vm1:logs/a.txt", Endpoint("vm1", "logs/a.txt")),
        ("vm1:", Endpoint("vm1", ".")),
        ("vm1:~/x", Endpoint("vm1", "x")),
        ("vm1:/etc/hosts", Endpoint("vm1", "/etc/hosts")),
        ("./a:b", Endpoint(None, "./a:b")),
        ("/tmp/x:y", Endpoint(None, "/tmp/x:y")),
        ("plain.txt", Endpoint(None, "plain.txt")),
    ],
)
def test_cp_endpoints(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text) == endpoint


def test_cp_plan_refuses_two_vms_or_none() -> None:
    assert plan_copy(["a", "b"], "vm1:dir").upload
    assert not plan_copy(["vm1:a"], ".").upload
    for sources, destination in ((["a"], "b"), (["vm1:a"], "vm2:b"), (["vm1:a", "b"], "c")):
        with pytest.raises(InputError):
            plan_copy(sources, destination)


def test_forward_specs() -> None:
    assert parse_spec("8080:80") == ForwardSpec(8080, 80)
    assert parse_spec("5432") == ForwardSpec(5432, 5432)
    assert parse_spec("0:80") == ForwardSpec(0, 80)
    for bad in ("", "a:80", "80:", "1:2:3", "70000", "0"):
        with pytest.raises(InputError):
            parse_spec(bad)


def test_config_quotes_paths_and_escapes_tokens() -> None:
    entry = Entry(
        "web", "127.0.0.5", 50801, "ubuntu", "/home/me/My Keys/id_%h", "ssh-ed25519 AAAAkey comment"
    )
    text = render_config([entry], Path("/x y/known_hosts"))
    assert '    IdentityFile "/home/me/My Keys/id_%%h"\n' in text
    assert '    UserKnownHostsFile "/x y/known_hosts"\n' in text
    assert "    HostKeyAlias golem-web\n" in text
    assert "    StrictHostKeyChecking yes\n" in text and "    IdentitiesOnly yes\n" in text
    # Pins are keyed by the VM's alias, never by its address and port.
    assert render_known_hosts([entry]) == "golem-web ssh-ed25519 AAAAkey\n"
    assert include_line(Path("/a b/config")) == 'Include "/a b/config"'


def test_known_hosts_keeps_vms_on_one_address_apart() -> None:
    """A provider that reuses a port: two VMs, one address, two pins, two aliases."""
    old = Entry("old", "127.0.0.5", 50801, "ubuntu", "/k", "ssh-ed25519 AAAAold")
    new = Entry("new", "127.0.0.5", 50801, "ubuntu", "/k", "ssh-ed25519 AAAAnew")
    assert render_known_hosts([old, new]) == (
        "golem-new ssh-ed25519 AAAAnew\ngolem-old ssh-ed25519 AAAAold\n"
    )
    text = render_config([old, new], Path("/kh"))
    assert "Host golem-old\n" in text and "    HostKeyAlias golem-old\n" in text
    assert "Host golem-new\n" in text and "    HostKeyAlias golem-new\n" in text
