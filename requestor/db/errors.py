"""The one translation of database failures about the database itself (locked,
unreachable, refused, not a database) into an error a user can act on. Used
around every transaction and around the schema check, so both say the same thing.

The label names the database as messages may show it: the SQLite file, or the
PostgreSQL URL without its credentials (``Database.label``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DatabaseError, DBAPIError, InterfaceError, OperationalError

from requestor.errors import ConfigError, DatabaseLockedError, GolemError, StateError

URL_VARIABLE = "GOLEM_REQUESTOR_DATABASE_URL"
# PostgreSQL's SQLSTATE codes for what the user must fix in the URL.
_REFUSED_LOGIN = {"28P01", "28000"}  # wrong password; no such role / not allowed
_NO_DATABASE = "3D000"
_LOCK_NOT_AVAILABLE = "55P03"
_TOO_MANY_CONNECTIONS = "53300"


@contextmanager
def translate_errors(label: str, *, shared: bool = False) -> Iterator[None]:
    try:
        yield
    except DBAPIError as error:
        translated = _postgresql_error(label, error) if shared else _sqlite_error(label, error)
        if translated is None:
            raise
        raise translated from error
    except (ConnectionError, socket.gaierror, TimeoutError) as error:
        if not shared:
            raise
        raise _unreachable(label, error) from error


def _sqlite_error(db_path: str, error: DBAPIError) -> GolemError | None:
    # OperationalError (locked, I/O) and the plain DatabaseError that pysqlite raises
    # for "file is not a database" / "malformed"; IntegrityError etc. stay as they are.
    if not (isinstance(error, OperationalError) or type(error) is DatabaseError):
        return None
    text = _text(error)
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


def _postgresql_error(label: str, error: DBAPIError) -> GolemError | None:
    code = _sqlstate(error)
    text = _text(error)
    if code in _REFUSED_LOGIN:
        return ConfigError(
            f"The database server at {label} refused the login ({text})",
            hint=f"Fix the user and password in {URL_VARIABLE}.",
        )
    if code == _NO_DATABASE:
        return ConfigError(
            f"The database named in {label} does not exist on its server",
            hint=f"Create it (e.g. 'createdb NAME' as a PostgreSQL admin), or fix {URL_VARIABLE}.",
        )
    if code == _LOCK_NOT_AVAILABLE:
        return DatabaseLockedError(
            f"The database {label} kept the rows locked by another golem",
            hint="Wait for other golem commands to finish, then try again.",
        )
    if code == _TOO_MANY_CONNECTIONS:
        return StateError(
            f"The database server at {label} has no free connections",
            hint="Wait for other golem commands to finish, or raise max_connections.",
        )
    # No SQLSTATE at all: the driver lost the server (closed socket, shut down).
    lost = code is None and isinstance(error, (OperationalError, InterfaceError))
    if (
        error.connection_invalidated
        or (code or "").startswith("08")
        or lost
        or (code is None and type(error) is DBAPIError)
    ):
        return StateError(
            f"Lost the connection to the database server at {label} ({text})",
            hint="Check that PostgreSQL is running and reachable, then try again.",
        )
    return None


def _unreachable(label: str, error: BaseException) -> StateError:
    reason = "no answer in time" if isinstance(error, TimeoutError) else _os_reason(error)
    return StateError(
        f"Cannot reach the database server at {label}: {reason}",
        hint=f"Check that PostgreSQL runs there and accepts connections, or fix {URL_VARIABLE}.",
    )


def _os_reason(error: BaseException) -> str:
    if isinstance(error, socket.gaierror):
        return "the host name is unknown"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    strerror = getattr(error, "strerror", None)
    return str(strerror or error or type(error).__name__)


def _sqlstate(error: DBAPIError) -> str | None:
    for candidate in (error.orig, getattr(error.orig, "__cause__", None)):
        for attribute in ("pgcode", "sqlstate"):
            value = getattr(candidate, attribute, None)
            if isinstance(value, str):
                return value
    return None


def _text(error: DBAPIError) -> str:
    text = str(error.orig) if error.orig is not None else str(error)
    # asyncpg's messages span lines (DETAIL, HINT): the first says what happened.
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def violates_unique_name(error: DBAPIError) -> bool:
    """Whether an insert failed because another VM holds the name (SQLite and
    PostgreSQL word it differently)."""
    text = str(error.orig)
    return "uq_vms_name" in text or "vms.name" in text
