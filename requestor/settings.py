"""Settings, read from exactly the environment variables the user documentation names.

Each is checked by hand (a bad value becomes a ``ConfigError`` naming the
variable, exit code 2, before anything else happens): every command loads this
module, and pydantic (~40-70 ms to import and build a model) would be the
largest cost of ``golem vm list`` and ``golem vm ssh``, which use no other model.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from requestor.errors import ConfigError
from requestor.text import clean

ENV_PREFIX = "GOLEM_REQUESTOR_"
DEFAULT_DISCOVERY_URL = "http://discovery.golem.network:9001"
PROVIDER_PORT = 7466

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Environment(enum.StrEnum):
    PRODUCTION = "production"
    DEVELOPMENT = "development"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What ``golem`` needs to know about where things are. Immutable once read;
    built by ``load_settings``, which checks every value."""

    discovery_url: str = DEFAULT_DISCOVERY_URL
    base_dir: Path
    ssh_key_dir: Path
    db_path: Path
    environment: Environment = Environment.PRODUCTION
    force_localhost: bool = False
    # Team mode: the state in a shared PostgreSQL database instead of ``db_path``.
    database_url: str | None = None
    # Who this golem acts as in a shared database (owner and last actor of VMs).
    user: str = "golem"
    host: str = "localhost"

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    def provider_api_url(self, ip_address: str) -> str:
        """Where a provider's API lives: the network's rule, or localhost in development."""
        host = "localhost" if self.is_development and self.force_localhost else ip_address
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{PROVIDER_PORT}/api/v1"

    def ssh_host(self, advertised_host: str) -> str:
        return "localhost" if self.is_development and self.force_localhost else advertised_host

    @property
    def shared_database(self) -> bool:
        """Whether the state is in a database other machines may share (team mode)."""
        return self.database_url is not None

    @property
    def database_label(self) -> str:
        """The database as messages name it: the file, or the URL without credentials."""
        return str(self.db_path) if self.database_url is None else redact_url(self.database_url)

    @property
    def actor(self) -> str:
        """``user@host``: what a shared database records as having acted."""
        return f"{self.user}@{self.host}"


def _check_url(name: str, value: str) -> str:
    """An http(s) URL with a host and a valid port, without a trailing slash."""
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[::1": an unclosed IPv6 bracket
        raise ConfigError(
            f"{name} is invalid: it cannot be read as a URL", hint=f"Fix or unset {name}."
        ) from None
    problem = None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "must be an http:// or https:// URL with a host"
    else:
        try:
            parts.port  # noqa: B018 - raises for a port outside 0-65535
        except ValueError:
            problem = "has an invalid port"
    if problem is not None:
        raise ConfigError(f"{name} is invalid: {problem}", hint=f"Fix or unset {name}.")
    return value.rstrip("/")


POSTGRESQL_SCHEMES = {"postgresql+asyncpg", "postgresql", "postgres"}


def postgresql_url(value: str) -> str:
    """A PostgreSQL URL with a host and a database, as SQLAlchemy's asyncpg driver
    takes it (``postgresql://`` and ``postgres://`` are accepted and mean the same).

    Raises ``ValueError`` saying what is wrong ("it has no host"), never quoting
    the value: it may hold a password.
    """
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises for a port outside 0-65535
    except ValueError:
        raise ValueError("it cannot be read as a URL") from None
    problem = None
    if parts.scheme not in POSTGRESQL_SCHEMES:
        problem = "must be a postgresql+asyncpg:// URL (golem shares state only in PostgreSQL)"
    elif not parts.hostname:
        problem = "has no host"
    elif not parts.path.strip("/"):
        problem = "names no database"
    elif "/" in parts.path.strip("/"):
        problem = "has more than a database name in its path"
    if problem is not None:
        raise ValueError(f"it {problem}")
    return parts._replace(scheme="postgresql+asyncpg").geturl()


def _check_database_url(name: str, value: str) -> str:
    try:
        return postgresql_url(value)
    except ValueError as problem:
        raise ConfigError(
            f"{name} is invalid: {problem}",
            hint=f"Set {name}=postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE, or unset it.",
        ) from None


# What may name a user in a shared database: a login name, or an e-mail-like id.
_USER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


def _default_user() -> str:
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no password entry (some containers)
        return f"uid{os.getuid()}"
    return user if _USER_PATTERN.fullmatch(user) else f"uid{os.getuid()}"


def _host_name() -> str:
    import socket

    return socket.gethostname() or "localhost"


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"{name}={raw!r} is not a boolean",
        hint=f"Set {name} to true or false.",
    )


def _path(name: str, raw: str) -> Path:
    try:
        return Path(raw).expanduser()
    except RuntimeError:
        # "~nosuchuser/x", or "~" with neither $HOME nor a password entry.
        user = raw[1:].split("/", 1)[0] if raw.startswith("~") else ""
        whose = f"the home folder of user {user!r}" if user else "your home folder ($HOME)"
        raise ConfigError(
            f"{name}={raw!r} names {whose}, which cannot be found",
            hint=f"Set {name} to an absolute path, or set HOME.",
        ) from None


def redact_url(url: str) -> str:
    """``url`` with any user, password and query values replaced, for messages:
    a discovery URL may carry credentials (``user:password@``, ``?token=``)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{pair.split('=', 1)[0]}=***" if "=" in pair else "***"
        for pair in parts.query.split("&")
        if pair
    )
    redacted = parts._replace(netloc=netloc, query=query, fragment="").geturl()
    return redacted


def _cannot_be_dir(path: Path) -> bool:
    """True when ``path``, or the nearest of its parents that exists, is not a directory."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return not candidate.is_dir()
    return False


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the ``GOLEM_REQUESTOR_*`` variables; unset ones take the documented defaults."""
    env = os.environ if environ is None else environ

    def get(key: str) -> str | None:
        value = env.get(ENV_PREFIX + key)
        if value is not None and not value.strip():
            # An empty value is usually a mistyped "$VAR" in a script. Taking it as
            # unset would, for the discovery URL, reach the real network.
            name = ENV_PREFIX + key
            raise ConfigError(
                f"{name} is set but empty",
                hint=f"Give {name} a value, or unset it ('unset {name}') for the default.",
            )
        return value

    raw_env = get("ENVIRONMENT")
    environment = Environment.PRODUCTION
    if raw_env is not None:
        try:
            environment = Environment(raw_env.strip().lower())
        except ValueError:
            raise ConfigError(
                f"{ENV_PREFIX}ENVIRONMENT={raw_env!r} is not a known environment",
                hint=f"Set {ENV_PREFIX}ENVIRONMENT to 'production' or 'development'.",
            ) from None

    force_raw = get("FORCE_LOCALHOST")
    force_localhost = (
        _parse_bool(ENV_PREFIX + "FORCE_LOCALHOST", force_raw) if force_raw is not None else False
    )

    base_dir = _path(ENV_PREFIX + "BASE_DIR", get("BASE_DIR") or "~/.golem")
    raw_key_dir, raw_db_path = get("SSH_KEY_DIR"), get("DB_PATH")
    ssh_key_dir = base_dir / "ssh"
    if raw_key_dir:
        ssh_key_dir = _path(ENV_PREFIX + "SSH_KEY_DIR", raw_key_dir)
    db_path = base_dir / "vms.db"
    if raw_db_path:
        db_path = _path(ENV_PREFIX + "DB_PATH", raw_db_path)
    for key, path in (("BASE_DIR", base_dir), ("SSH_KEY_DIR", ssh_key_dir)):
        if _cannot_be_dir(path):
            raise ConfigError(
                f"{ENV_PREFIX}{key}={str(path)!r} is not a directory",
                hint=f"Point {ENV_PREFIX}{key} at a directory (it is created if missing).",
            )
    if db_path.exists() and db_path.is_dir():
        raise ConfigError(
            f"{ENV_PREFIX}DB_PATH={str(db_path)!r} is a directory",
            hint=f"Point {ENV_PREFIX}DB_PATH at a file, e.g. {db_path / 'vms.db'}.",
        )
    if db_path.exists() and not db_path.is_file():
        # e.g. /dev/null: SQLite would "open" it and leave /dev/null-journal behind.
        raise ConfigError(
            f"{ENV_PREFIX}DB_PATH={str(db_path)!r} is not a regular file",
            hint=f"Point {ENV_PREFIX}DB_PATH at a file, e.g. {base_dir / 'vms.db'}.",
        )
    if _cannot_be_dir(db_path.parent):
        raise ConfigError(
            f"{ENV_PREFIX}DB_PATH={str(db_path)!r} is not inside a directory",
            hint=f"Point {ENV_PREFIX}DB_PATH at a file in a directory (created if missing).",
        )

    raw_url = get("DATABASE_URL")
    database_url = (
        None if raw_url is None else _check_database_url(ENV_PREFIX + "DATABASE_URL", raw_url)
    )
    raw_user = get("USER")
    user = _default_user()
    if raw_user is not None:
        user = raw_user.strip()
        if not _USER_PATTERN.fullmatch(user):
            raise ConfigError(
                f"{ENV_PREFIX}USER={clean(raw_user, 40)!r} is not a usable user name",
                hint=f"Set {ENV_PREFIX}USER to 1-64 letters, digits and . _ @ + - (e.g. alice).",
            )

    return Settings(
        database_url=database_url,
        user=user,
        host=_host_name(),
        discovery_url=_check_url(
            ENV_PREFIX + "DISCOVERY_URL", get("DISCOVERY_URL") or DEFAULT_DISCOVERY_URL
        ),
        base_dir=base_dir,
        ssh_key_dir=ssh_key_dir,
        db_path=db_path,
        environment=environment,
        force_localhost=force_localhost,
    )
