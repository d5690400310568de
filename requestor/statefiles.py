"""golem's state on disk (database, keys, ssh config, locks): private whatever the umask.

Folders golem creates are 0700 (each one, not only the last: ``Path.mkdir(parents=True)``
gives the parents the umask's mode), files 0600. The database holds addresses,
ports and host keys; SQLite gives its WAL and shared-memory files the mode of the
database file, so creating that file 0600 covers them too.
"""

from __future__ import annotations

import os
from pathlib import Path

from requestor.errors import ConfigError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path, setting: str) -> None:
    """Make sure ``path`` is a folder golem can write, creating missing parts 0700.

    ``setting`` names the variable that chose the folder, for the error: an
    unusable folder is a bad setting (exit 2), never an internal error.
    """
    missing: list[Path] = []
    candidate = path
    while not candidate.exists() and candidate != candidate.parent:
        missing.append(candidate)
        candidate = candidate.parent
    try:
        for folder in reversed(missing):
            try:
                os.mkdir(folder, PRIVATE_DIR_MODE)
            except FileExistsError:
                continue  # another golem process made it meanwhile
            os.chmod(folder, PRIVATE_DIR_MODE)  # the umask may have taken bits away
    except OSError as error:
        raise _unusable(path, setting, error.strerror or str(error)) from None
    if not path.is_dir():
        raise _unusable(path, setting, "not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise _unusable(path, setting, "not writable by you")


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist yet; an existing
    file of ours that others can read (an earlier golem followed the umask) is
    made 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        make_private(path)
        return
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def make_private(path: Path) -> None:
    """An existing file of ours that others can read (an earlier golem followed the
    umask) becomes 0600; someone else's file is left alone."""
    try:
        info = path.stat()
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            os.chmod(path, PRIVATE_FILE_MODE)
    except OSError:
        pass  # the command that opens it says what is wrong


def _unusable(path: Path, setting: str, reason: str) -> ConfigError:
    return ConfigError(
        f"Cannot use the folder {path} ({setting}): {reason}",
        hint=f"Set {setting} to a folder you can write.",
    )
