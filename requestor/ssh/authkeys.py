"""Edit ``~/.ssh/authorized_keys`` on a VM over SFTP: transport only.

What to change is the caller's (``edit``: the file's bytes in, the new bytes out,
or None for no change); this module reads the file, writes the new text beside
it (mode 0600) and renames it into place with OpenSSH's posix-rename, so sshd
never reads half a file and a failure leaves the old file whole.

SFTP rather than a shell command: the key never passes through a command line
or the VM's shell and tools (no quoting, no awk/grep dialects), and the lines
the caller does not touch are kept byte for byte.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable

from requestor.errors import SSHError
from requestor.ssh._asyncssh import asyncssh

SSH_DIR = ".ssh"  # relative: SFTP starts in the login user's home, as sshd's
AUTHORIZED_KEYS = f"{SSH_DIR}/authorized_keys"
# A VM's user may have written anything there; no real file comes near this.
MAX_SIZE = 1 << 20

Edit = Callable[[bytes], bytes | None]


async def edit_authorized_keys(conn: asyncssh.SSHClientConnection, name: str, edit: Edit) -> bool:
    """Apply ``edit`` to the login user's authorized_keys (missing: empty);
    True when the file changed. ``name`` is the VM's, for messages."""
    try:
        async with conn.start_sftp_client() as sftp:
            current = await _read(sftp, name)
            wanted = edit(current)
            if wanted is None or wanted == current:
                return False
            if not await sftp.isdir(SSH_DIR):
                await sftp.mkdir(SSH_DIR, asyncssh.SFTPAttrs(permissions=0o700))
            partial = f"{AUTHORIZED_KEYS}.golem-{secrets.token_hex(4)}"
            try:
                async with sftp.open(
                    partial, "wb", asyncssh.SFTPAttrs(permissions=0o600)
                ) as handle:
                    await handle.write(wanted)
                # The mode is set again: a server may apply a umask at creation.
                await sftp.chmod(partial, 0o600)
                await sftp.posix_rename(partial, AUTHORIZED_KEYS)
            except BaseException:
                with contextlib.suppress(asyncssh.Error, OSError):
                    await sftp.remove(partial)
                raise
            return True
    except asyncssh.SFTPError as error:
        raise SSHError(
            f"Could not update ~/{AUTHORIZED_KEYS} on VM {name}: {error.reason}",
            hint="Check the VM's disk and the permissions of ~/.ssh there, then try again.",
        ) from None


async def _read(sftp: asyncssh.SFTPClient, name: str) -> bytes:
    try:
        attrs = await sftp.stat(AUTHORIZED_KEYS)
    except asyncssh.SFTPNoSuchFile:
        return b""
    if attrs.size is not None and attrs.size > MAX_SIZE:
        raise SSHError(
            f"~/{AUTHORIZED_KEYS} on VM {name} is larger than {MAX_SIZE >> 20} MiB",
            hint="Trim it by hand on the VM, then try again.",
        )
    async with sftp.open(AUTHORIZED_KEYS, "rb") as handle:
        data: bytes = await handle.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise SSHError(
            f"~/{AUTHORIZED_KEYS} on VM {name} is larger than {MAX_SIZE >> 20} MiB",
            hint="Trim it by hand on the VM, then try again.",
        )
    return data
