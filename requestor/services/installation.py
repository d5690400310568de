"""This installation's id: a short random mark in every provider-side VM name it
creates, so a VM it lost track of (a crash, ``forget --force``, a lost database)
can be told apart from other requestors' VMs on the same provider.

It lives beside golem's SSH key (``GOLEM_REQUESTOR_SSH_KEY_DIR``), not in the
database, so it survives the database's loss, as the key that reaches the VMs does.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from requestor.errors import StateError
from requestor.statefiles import PRIVATE_FILE_MODE, private_dir

INSTALLATION_ID_FILE = "installation-id"
INSTALLATION_ID = re.compile(r"[0-9a-f]{8}")


def installation_id(key_dir: Path) -> str:
    """The id, made once (0600, written whole before it is visible) and read after."""
    path = key_dir / INSTALLATION_ID_FILE
    if not path.exists():
        private_dir(key_dir, "GOLEM_REQUESTOR_SSH_KEY_DIR")
        fresh = key_dir / f".{INSTALLATION_ID_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            os.write(fd, (secrets.token_hex(4) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # A link, not a rename: of two golem processes making it at once, the
            # first one's id wins and the other reads it.
            os.link(fresh, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(fresh)
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError as error:
        raise StateError(
            f"Cannot read this installation's id in {path}: {error.strerror}",
            hint="Make the file readable by you (it is golem's, beside its SSH key).",
        ) from None
    if not INSTALLATION_ID.fullmatch(text):
        raise StateError(
            f"This installation's id in {path} is damaged",
            hint="Restore it from a backup; if it is lost, remove the file and golem makes a "
            "new one (VMs created under the old id are then not found as orphans).",
        )
    return text
