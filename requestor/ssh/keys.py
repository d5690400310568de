"""The SSH key golem gives providers: the user's own if there is a usable one,
else one golem generates once and reuses for every VM.

Private keys are created 0600 (in a 0700 folder) by ourselves with O_EXCL, not by
the key library, whose writer follows the umask.
"""

from __future__ import annotations

import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from requestor.errors import GolemError, InputError
from requestor.statefiles import private_dir

# Looked for in ~/.ssh, in this order.
SYSTEM_KEY_NAMES = ("id_ed25519", "id_rsa")
# In GOLEM_REQUESTOR_SSH_KEY_DIR: the earlier requestor's id_rsa is reused if present.
GOLEM_KEY_NAMES = ("id_ed25519", "id_rsa")
GOLEM_NEW_KEY = "id_ed25519"


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_key: str  # one OpenSSH line: "ssh-ed25519 AAAA... comment"
    origin: str  # "system" or "golem"


def _too_open(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def _read_pair(private_path: Path, origin: str) -> KeyPair | None:
    """The pair at ``private_path`` if it is usable without a passphrase."""
    from requestor.ssh._asyncssh import asyncssh

    public_path = private_path.with_name(private_path.name + ".pub")
    if not private_path.is_file():
        return None
    if _too_open(private_path):
        if origin == "system":
            return None  # OpenSSH would refuse it too; fall back to a golem key
        raise GolemError(
            f"The private key {private_path} is readable by other users",
            hint=f"Run: chmod 600 {private_path}",
        )
    try:
        key = asyncssh.read_private_key(str(private_path))
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, OSError, ValueError):
        if origin == "system":
            return None  # encrypted or unreadable: not usable non-interactively
        raise GolemError(
            f"The key {private_path} cannot be read (corrupt or passphrase-protected)",
            hint="Move it aside; golem then generates a new key.",
        ) from None
    algorithm = key.get_algorithm()
    if algorithm not in ("ssh-ed25519", "ssh-rsa"):
        return None  # providers accept only these two
    public_line = key.export_public_key("openssh").decode().strip()
    if public_path.is_file():
        # Keep the user's comment; the key material must match the private key.
        existing = public_path.read_text(errors="replace").strip()
        if existing.split()[:2] == public_line.split()[:2]:
            public_line = existing
    return KeyPair(private_path=private_path, public_key=public_line, origin=origin)


def _generate(key_dir: Path) -> KeyPair:
    from requestor.ssh._asyncssh import asyncssh

    private_path = key_dir / GOLEM_NEW_KEY
    public_path = key_dir / f"{GOLEM_NEW_KEY}.pub"
    key = asyncssh.generate_private_key("ssh-ed25519", comment="golem-vm-requestor")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as private_file:
        private_file.write(key.export_private_key("openssh"))
    public_line = key.export_public_key("openssh").decode().strip()
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as public_file:
        public_file.write(public_line + "\n")
    os.chmod(public_path, 0o644)
    return KeyPair(private_path=private_path, public_key=public_line, origin="golem")


def _prepare_key_dir(key_dir: Path) -> None:
    private_dir(key_dir, "GOLEM_REQUESTOR_SSH_KEY_DIR")
    try:
        # As OpenSSH insists for ~/.ssh: the folder of private keys is ours alone.
        if stat.S_IMODE(key_dir.stat().st_mode) != 0o700:
            os.chmod(key_dir, 0o700)
    except OSError as error:
        raise InputError(
            f"Cannot use the SSH key folder {key_dir}: {error.strerror}",
            hint="Set GOLEM_REQUESTOR_SSH_KEY_DIR to a folder you can write.",
        ) from None


def ensure_key_pair(key_dir: Path, home: Path | None = None) -> KeyPair:
    """The key for a new VM: the user's ``~/.ssh`` key, else golem's own (made once)."""
    ssh_home = (home or Path.home()) / ".ssh"
    for name in SYSTEM_KEY_NAMES:
        pair = _read_pair(ssh_home / name, "system")
        if pair is not None:
            return pair
    _prepare_key_dir(key_dir)
    # Two golem processes creating their first VM at once must end with one key.
    lock_fd = os.open(key_dir / ".keygen.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        for name in GOLEM_KEY_NAMES:
            pair = _read_pair(key_dir / name, "golem")
            if pair is not None:
                return pair
        return _generate(key_dir)
    finally:
        os.close(lock_fd)


def load_client_key(private_path: Path) -> object:
    """The private key for a connection, checked as OpenSSH would check it."""
    from requestor.ssh._asyncssh import asyncssh

    if not private_path.is_file():
        raise GolemError(
            f"The SSH key {private_path} that created this VM is missing",
            hint="Restore the key file; without it the VM cannot be reached.",
        )
    if _too_open(private_path):
        raise GolemError(
            f"The private key {private_path} is readable by other users",
            hint=f"Run: chmod 600 {private_path}",
        )
    try:
        return asyncssh.read_private_key(str(private_path))
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as error:
        raise GolemError(
            f"The SSH key {private_path} cannot be read: {error}",
            hint="Restore the key the VM was created with.",
        ) from None


def key_id(public_key_line: str) -> str:
    """``type base64`` of an OpenSSH public key line: the key itself, its comment
    dropped (what local state stores and compares)."""
    return " ".join(public_key_line.split()[:2])


# In the armour line of every PEM or OpenSSH private key file.
_PRIVATE_KEY_MARK = "PRIVATE KEY"


def parse_public_key(text: str, source: str) -> str:
    """The ``type base64`` of the one OpenSSH public key in ``text`` (a line as in a
    ``.pub`` file or ``authorized_keys``, comment allowed); ``InputError`` for
    anything else. ``source`` names where the text came from, for the message."""
    from requestor.ssh._asyncssh import asyncssh

    hint = (
        "Give one OpenSSH public key line (as in a .pub file: 'ssh-ed25519 AAAA... comment')"
        " or the path of a .pub file."
    )
    if _PRIVATE_KEY_MARK in text:
        raise InputError(
            f"{source} is a private key: never hand out a private key",
            hint="Give the public key instead (the .pub file beside it).",
        )
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        what = "no key" if not lines else f"{len(lines)} lines"
        raise InputError(f"{source} holds {what}, not one OpenSSH public key", hint=hint)
    words = lines[0].split()
    try:
        key = asyncssh.import_public_key(" ".join(words[:2]))
    except (asyncssh.KeyImportError, ValueError, IndexError):
        raise InputError(f"{source} is not an OpenSSH public key", hint=hint) from None
    return key_id(key.export_public_key("openssh").decode())
