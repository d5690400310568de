"""The one translation of SQLite failures about the database file itself (locked,
not a database, unreadable) into a ``StateError`` a user can act on. Used around
every transaction and around the schema check, so both say the same thing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import DatabaseError, OperationalError

from requestor.errors import DatabaseLockedError, StateError


@contextmanager
def translate_errors(db_path: Path) -> Iterator[None]:
    try:
        yield
    except DatabaseError as error:
        # OperationalError (locked, I/O) and the plain DatabaseError that pysqlite raises
        # for "file is not a database" / "malformed"; IntegrityError etc. stay as they are.
        if not _is_file_error(error):
            raise
        raise _database_error(db_path, error) from error


def _is_file_error(error: DatabaseError) -> bool:
    """True when the error is about the database file itself, not about one statement."""
    return isinstance(error, OperationalError) or type(error) is DatabaseError


def _database_error(db_path: Path, error: DatabaseError) -> StateError:
    text = str(error.orig) if error.orig is not None else str(error)
    if "locked" in text or "busy" in text:
        return DatabaseLockedError(
            f"The database {db_path} stayed locked by another golem process",
            hint="Wait for other golem commands to finish, then try again.",
        )
    if "not a database" in text or "malformed" in text:
        return StateError(
            f"The database {db_path} is not a readable SQLite file ({text})",
            hint="Move the file aside (keep it as a backup) and run the command again.",
        )
    return StateError(
        f"The database {db_path} cannot be used: {text}",
        hint="Check the file and its folder, or set GOLEM_REQUESTOR_DB_PATH.",
    )
