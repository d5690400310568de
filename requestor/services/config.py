"""``golem config show``: the effective settings, where each came from, and the
paths golem uses. golem reads the environment only (no ``.env`` file: the
repository's ``.env.dev`` is sourced by the shell, so what it sets is
"environment" here)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from requestor.settings import ENV_PREFIX, Settings, load_settings, redact_url


@dataclass(frozen=True)
class SettingValue:
    name: str  # the setting, e.g. discovery_url
    variable: str  # the environment variable that sets it
    value: str  # as golem uses it (the discovery URL with credentials redacted)
    source: str  # "environment" or "default"
    # For a default computed from another setting (the database inside the base
    # dir): that setting's variable.
    derived_from: str | None = None


@dataclass(frozen=True)
class PathInUse:
    what: str  # a stable key: database, ssh_key_dir, ssh_config, ...
    path: str
    exists: bool
    note: str = ""


@dataclass(frozen=True)
class ConfigReport:
    settings: list[SettingValue]
    paths: list[PathInUse]


def show_config(environ: Mapping[str, str] | None = None) -> ConfigReport:
    """What ``load_settings`` makes of the environment (a bad value raises its
    ConfigError, as for any command), and where each value came from."""
    env = os.environ if environ is None else environ
    settings = load_settings(env)

    def source(key: str) -> str:
        return "environment" if ENV_PREFIX + key in env else "default"

    def inside_base(key: str) -> str | None:
        base_set = ENV_PREFIX + "BASE_DIR" in env
        return ENV_PREFIX + "BASE_DIR" if source(key) == "default" and base_set else None

    values = [
        SettingValue(
            "discovery_url",
            ENV_PREFIX + "DISCOVERY_URL",
            redact_url(settings.discovery_url),
            source("DISCOVERY_URL"),
        ),
        SettingValue(
            "environment",
            ENV_PREFIX + "ENVIRONMENT",
            settings.environment.value,
            source("ENVIRONMENT"),
        ),
        SettingValue(
            "force_localhost",
            ENV_PREFIX + "FORCE_LOCALHOST",
            "true" if settings.force_localhost else "false",
            source("FORCE_LOCALHOST"),
        ),
        SettingValue(
            "base_dir", ENV_PREFIX + "BASE_DIR", str(settings.base_dir), source("BASE_DIR")
        ),
        SettingValue(
            "ssh_key_dir",
            ENV_PREFIX + "SSH_KEY_DIR",
            str(settings.ssh_key_dir),
            source("SSH_KEY_DIR"),
            inside_base("SSH_KEY_DIR"),
        ),
        SettingValue(
            "db_path",
            ENV_PREFIX + "DB_PATH",
            str(settings.db_path),
            source("DB_PATH"),
            inside_base("DB_PATH"),
        ),
        SettingValue(
            "database_url",
            ENV_PREFIX + "DATABASE_URL",
            # Credentials never shown; "" when unset (the state is in db_path).
            redact_url(settings.database_url) if settings.database_url else "",
            source("DATABASE_URL"),
        ),
        SettingValue("user", ENV_PREFIX + "USER", settings.user, source("USER")),
    ]
    return ConfigReport(values, _paths(settings))


def _paths(settings: Settings) -> list[PathInUse]:
    from requestor.services.completion import SEEN_PROVIDERS_FILE
    from requestor.ssh.keys import GOLEM_KEY_NAMES, SYSTEM_KEY_NAMES
    from requestor.ssh.sshconfig import CONFIG_NAME, KNOWN_HOSTS_NAME

    def entry(what: str, path: Path, note: str = "") -> PathInUse:
        return PathInUse(what, str(path), path.exists(), note)

    key_dir = settings.ssh_key_dir
    # The order golem looks for a key in (requestor.ssh.keys): the first usable
    # one is used; with none, golem generates key_dir/id_ed25519.
    keys = [Path.home() / ".ssh" / name for name in SYSTEM_KEY_NAMES]
    keys += [key_dir / name for name in GOLEM_KEY_NAMES]
    database = entry("database", settings.db_path)
    if settings.database_url is not None:
        database = PathInUse(
            "database", settings.database_label, True, "shared PostgreSQL (team mode); not checked"
        )
    return [
        database,
        entry("ssh_key_dir", key_dir),
        *(entry("ssh_key", key, "looked for in this order") for key in keys),
        entry("ssh_config", key_dir / CONFIG_NAME, "written by 'golem vm ssh-config --write'"),
        entry("known_hosts", key_dir / KNOWN_HOSTS_NAME, "golem's host-key pins for OpenSSH"),
        entry(
            "providers_seen",
            settings.base_dir / SEEN_PROVIDERS_FILE,
            "provider ids for shell completion",
        ),
    ]
