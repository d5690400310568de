"""OpenSSH config entries and a known_hosts file made from local state, so plain
``ssh golem-NAME``, scp, rsync and editors' remote plugins reach a VM with the
same key and the same host-key pin that golem itself uses.

Pins are keyed by the VM, as in golem: each Host block sets ``HostKeyAlias
golem-NAME`` and the known_hosts line for that VM names the alias, not the
address. Keyed by ``[host]:port``, two VMs that share an address and port (a
provider reusing the port of a destroyed VM) would each accept the other's key.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from requestor.statefiles import private_dir

if TYPE_CHECKING:
    from requestor.settings import Settings

HOST_PREFIX = "golem-"
CONFIG_NAME = "config"
KNOWN_HOSTS_NAME = "known_hosts"
HEADER = "# Written by golem from its local state; 'golem vm ssh-config --write' rewrites it.\n"
# Which VMs the file was written for, so a refresh keeps the user's choice.
SELECTION = "# golem-entries:"
ALL = "all"
# Characters that would change the meaning of a Host line or a config value.
_UNSAFE_NAME = set(" \t\r\n\"'*?!,#=\\")


class SSHDetails(Protocol):
    """What an entry is made from: a VM as local state records it (the caller's
    type, e.g. ``requestor.services.views.VMView``; this module reads no state)."""

    @property
    def name(self) -> str: ...
    @property
    def ssh_host(self) -> str | None: ...
    @property
    def ssh_port(self) -> int | None: ...
    @property
    def ssh_user(self) -> str: ...
    @property
    def ssh_key_path(self) -> str | None: ...
    @property
    def host_key(self) -> str | None: ...


@dataclass(frozen=True)
class Entry:
    name: str
    host: str
    port: int
    user: str
    key_path: str
    host_key: str


def entries(vms: Iterable[SSHDetails]) -> tuple[list[Entry], list[tuple[str, str]]]:
    """The VMs that can have an entry, and (name, reason) for each that cannot."""
    usable: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    for vm in vms:
        if vm.ssh_host is None or vm.ssh_port is None:
            skipped.append((vm.name, "no SSH address yet (its create did not finish)"))
        elif vm.ssh_key_path is None:
            skipped.append((vm.name, "no SSH key recorded"))
        elif vm.host_key is None:
            skipped.append(
                (vm.name, f"no pinned host key yet (connect once with 'golem vm ssh {vm.name}')")
            )
        elif (
            _UNSAFE_NAME & set(vm.name)
            or _UNSAFE_NAME & set(vm.ssh_host)
            or any(c in vm.ssh_key_path for c in '"\r\n')
        ):
            skipped.append(
                (vm.name, "its name, address or key path cannot be written into an OpenSSH config")
            )
        else:
            usable.append(
                Entry(vm.name, vm.ssh_host, vm.ssh_port, vm.ssh_user, vm.ssh_key_path, vm.host_key)
            )
    return usable, skipped


def quote(value: str, tokens: bool = True) -> str:
    """A config value: ``%`` doubled where OpenSSH expands tokens, quoted if it has spaces."""
    if tokens:
        value = value.replace("%", "%%")
    return f'"{value}"' if any(c.isspace() for c in value) else value


def host_alias(name: str) -> str:
    return HOST_PREFIX + name


def render_known_hosts(pinned: Iterable[Entry]) -> str:
    """One line per VM, keyed by its HostKeyAlias: ``golem-NAME ssh-ed25519 AAAA...``."""
    lines = [f"{host_alias(e.name)} {' '.join(e.host_key.split()[:2])}\n" for e in pinned]
    return "".join(sorted(set(lines)))


def render_config(
    chosen: Iterable[Entry], known_hosts_path: Path, selection: Sequence[str] | None = None
) -> str:
    """Host blocks for ``chosen``; ``selection`` is the names asked for (None: every VM)."""
    blocks = [HEADER, f"{SELECTION} {' '.join(selection) if selection else ALL}\n"]
    for e in chosen:
        blocks.append(
            f"\nHost {host_alias(e.name)}\n"
            f"    HostName {e.host}\n"
            f"    Port {e.port}\n"
            f"    User {quote(e.user)}\n"
            f"    IdentityFile {quote(e.key_path)}\n"
            "    IdentitiesOnly yes\n"
            f"    HostKeyAlias {host_alias(e.name)}\n"
            f"    UserKnownHostsFile {quote(str(known_hosts_path))}\n"
            "    StrictHostKeyChecking yes\n"
            "    CheckHostIP no\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    UpdateHostKeys no\n"
            "    ForwardAgent no\n"
            "    ForwardX11 no\n"
            "    ProxyCommand none\n"
            "    ProxyJump none\n"
            "    ControlMaster no\n"
            "    ServerAliveInterval 15\n"
            "    ServerAliveCountMax 3\n"
        )
    return "".join(blocks)


def include_line(config_path: Path) -> str:
    return f"Include {quote(str(config_path), tokens=False)}"


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` at once (readers never see half a file), mode 0600."""
    private_dir(path.parent, "GOLEM_REQUESTOR_SSH_KEY_DIR")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not outrun the data on a crash
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def lock(key_dir: Path) -> int:
    """Hold golem's ssh-config lock (blocking) and return its descriptor to close."""
    private_dir(key_dir, "GOLEM_REQUESTOR_SSH_KEY_DIR")
    fd = os.open(key_dir / ".ssh-config.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _selection(config: Path) -> list[str] | None:
    """The names a written config was made for; None for every VM."""
    try:
        with config.open() as handle:
            for line in handle:
                if line.startswith(SELECTION):
                    words = line[len(SELECTION) :].split()
                    return None if words in ([], [ALL]) else words
    except OSError:
        pass
    return None


def written(settings: Settings) -> bool:
    """Whether the user has golem's ssh config or known_hosts: a cheap stat, no imports."""
    key_dir = settings.ssh_key_dir
    return (key_dir / CONFIG_NAME).exists() or (key_dir / KNOWN_HOSTS_NAME).exists()


def refresh_written(settings: Settings, vms: Iterable[SSHDetails]) -> None:
    """Rewrite the ssh config and known_hosts from ``vms`` (all of local state), but
    only those files 'golem vm ssh-config' wrote before; a no-op when there are none.

    ``requestor.services.access.sync_ssh_config`` calls it whenever a VM's
    existence, SSH address or host key changes.
    """
    key_dir = settings.ssh_key_dir
    config = key_dir / CONFIG_NAME
    known_hosts = key_dir / KNOWN_HOSTS_NAME
    has_config = config.exists()
    if not has_config and not known_hosts.exists():
        return
    usable, _ = entries(vms)
    # Every pin goes in, as 'ssh-config' writes it: printed entries stay valid.
    write_private(known_hosts, render_known_hosts(usable))
    if has_config:
        selection = _selection(config)
        chosen = [e for e in usable if selection is None or e.name in selection]
        write_private(config, render_config(chosen, known_hosts, selection))
