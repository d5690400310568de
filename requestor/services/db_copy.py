"""``golem db copy --to URL``: the state golem uses now (the local SQLite file, or
the shared PostgreSQL database) copied into another database, PostgreSQL or a
SQLite file, to move a fleet into team mode or back (docs/team.md).

The source is only read. The target is brought to head with the same migrations
as any command, then everything goes in ONE transaction: VMs that are there
already (same name, or the same VM at its provider) refuse the whole copy, and a
failure leaves the target as it was (a SQLite file the copy created is removed).
Providers, their capabilities and user keys that are there already are merged.
URLs are only ever shown without their credentials (``redact_url``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from requestor.db.engine import Database
from requestor.db.revisions import HEAD_REVISION
from requestor.db.transfer import (
    Inspection,
    Present,
    Snapshot,
    database_identity,
    inspect_database,
    legacy_key,
    read_present,
    read_snapshot,
    write_snapshot,
)
from requestor.errors import GolemError, InputError
from requestor.settings import (
    ENV_PREFIX,
    POSTGRESQL_SCHEMES,
    Settings,
    postgresql_url,
    redact_url,
)
from requestor.statefiles import private_dir

SQLITE_PREFIXES = ("sqlite+aiosqlite:///", "sqlite:///")
# Conflicting VMs named in the error; --dry-run lists them all.
CONFLICTS_SHOWN = 5
_TARGET_HINT = (
    "Give --to postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE,"
    " or sqlite:///PATH (or a plain path) for a SQLite file."
)


class CopyConflictError(GolemError):
    """VMs of the source are in the target already: nothing was copied."""

    default_hint = (
        "Nothing was copied. If they are the same VMs (copied before), forget them on one"
        " side ('golem vm forget NAME --force' with that database's setting); else rename"
        " them, or copy into another database. --dry-run lists every conflict."
    )


@dataclass(frozen=True)
class Conflict:
    name: str  # the VM in the source
    # "name": the target has a VM of that name; "provider_vm_name": the target
    # records the same VM at its provider (under the name ``existing``).
    reason: Literal["name", "provider_vm_name"]
    existing: str


@dataclass(frozen=True)
class CopyCounts:
    """Rows of each table copied (or, in a dry run, that would be)."""

    vms: int
    providers: int
    provider_capabilities: int
    user_keys: int
    vm_grants: int
    legacy_rejected_vms: int


@dataclass(frozen=True)
class AlreadyThere:
    """Of those, the rows the target had already: merged, not duplicated (the
    fresher provider record and capabilities are kept; a user key or a legacy
    row is the same row)."""

    providers: int
    provider_capabilities: int
    user_keys: int
    legacy_rejected_vms: int


@dataclass(frozen=True)
class CopyReport:
    source: str  # the database's label: a path, or the URL without credentials
    target: str
    target_backend: Literal["postgresql", "sqlite"]
    dry_run: bool
    counts: CopyCounts
    already_there: AlreadyThere
    # VMs recorded before golem kept owners: the copy makes them ``owner``'s.
    owner: str
    owner_assigned: tuple[str, ...]
    conflicts: tuple[Conflict, ...]
    # What happens to the target's schema: created, upgraded from an older golem, or
    # already current.
    schema: Literal["created", "upgraded", "current"]
    next_step: str

    @property
    def refused(self) -> bool:
        """The copy is (or would be) refused: VMs are there already."""
        return bool(self.conflicts)


def parse_target(raw: str) -> Path | str:
    """``--to``: a PostgreSQL URL (normalised to postgresql+asyncpg://), or a SQLite
    file as ``sqlite:///PATH`` (SQLAlchemy's form: ``sqlite:////abs/path``) or a plain
    path. Never quotes a URL back: it may hold a password."""
    value = raw.strip()
    if not value:
        raise InputError("--to is empty", hint=_TARGET_HINT)
    lowered = value.lower()
    for prefix in SQLITE_PREFIXES:
        if lowered.startswith(prefix):
            path = value[len(prefix) :].split("?", 1)[0]
            if not path or path == ":memory:":
                raise InputError("--to names no SQLite file", hint=_TARGET_HINT)
            return Path(path).expanduser().absolute()
    if "://" in value:
        scheme = lowered.split("://", 1)[0]
        if scheme not in POSTGRESQL_SCHEMES:
            raise InputError(
                "--to must name PostgreSQL or a SQLite file (golem shares state only in"
                " PostgreSQL)",
                hint=_TARGET_HINT,
            )
        try:
            return postgresql_url(value)
        except ValueError as problem:
            raise InputError(f"--to is invalid: {problem}", hint=_TARGET_HINT) from None
    return Path(value).expanduser().absolute()


def _label(location: Path | str) -> str:
    return redact_url(location) if isinstance(location, str) else str(location)


def _same_place(source: Path | str, target: Path | str) -> bool:
    """Whether both name the same database, as far as their names tell; two URLs
    that reach one PostgreSQL database by other names are found once connected
    (``database_identity``)."""
    if isinstance(source, Path) and isinstance(target, Path):
        if source.exists() and target.exists():
            return os.path.samefile(source, target)
        return source.resolve() == target.resolve()
    if isinstance(source, str) and isinstance(target, str):
        return _server_and_database(source) == _server_and_database(target)
    return False


def _server_and_database(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    return ((parts.hostname or "").lower(), parts.port or 5432, parts.path.strip("/"))


def _same_database_error(label: str) -> InputError:
    return InputError(
        f"--to names the database golem uses now ({label}): it would copy onto itself",
        hint=f"Give --to another database. golem copies from the one it uses:"
        f" {ENV_PREFIX}DATABASE_URL when set, else the SQLite file ({ENV_PREFIX}DB_PATH).",
    )


def _check_target_file(path: Path) -> None:
    """A SQLite target must be a file golem can create or write: refused here,
    before anything is opened, as a bad --to (exit 2)."""
    if path.is_dir():
        raise InputError(
            f"--to names a folder ({path}), not a database file",
            hint="Give a file path inside it, e.g. --to sqlite:///PATH/vms.db.",
        )
    private_dir(path.parent, "--to")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise InputError(
            f"The file {path} is not readable and writable by you",
            hint="Fix its permissions, or give --to another file.",
        )


@dataclass(frozen=True)
class _Plan:
    snapshot: Snapshot  # as it will be written (owners filled in)
    counts: CopyCounts
    already_there: AlreadyThere
    owner_assigned: tuple[str, ...]
    conflicts: tuple[Conflict, ...]
    skip_legacy: frozenset[tuple[object, ...]]


def _plan(snapshot: Snapshot, present: Present, settings: Settings) -> _Plan:
    """What copying ``snapshot`` into a database that holds ``present`` does: the
    same for a dry run (from a look at the target) and for the copy (inside its
    transaction)."""
    by_name = {vm.name: vm for vm in present.vms}
    by_address = {(vm.provider_ip, vm.provider_vm_name): vm for vm in present.vms}
    by_provider = {
        (vm.provider_id, vm.provider_vm_name): vm for vm in present.vms if vm.provider_id
    }
    conflicts: list[Conflict] = []
    for row in snapshot.vms:
        if row["name"] in by_name:
            conflicts.append(Conflict(row["name"], "name", row["name"]))
            continue
        same = by_address.get((row["provider_ip"], row["provider_vm_name"]))
        if same is None and row["provider_id"]:
            same = by_provider.get((row["provider_id"], row["provider_vm_name"]))
        if same is not None:
            conflicts.append(Conflict(row["name"], "provider_vm_name", same.name))

    # Recorded before golem kept owners: in the target they are the copying user's,
    # since in a shared database a VM without an owner would be nobody's.
    ownerless = tuple(row["name"] for row in snapshot.vms if row["created_by_user"] is None)
    vms = [
        row
        if row["created_by_user"] is not None
        else {**row, "created_by_user": settings.user, "created_by_host": settings.host}
        for row in snapshot.vms
    ]
    legacy_there = sum(
        legacy_key(row) in present.legacy_rejected for row in snapshot.legacy_rejected
    )
    return _Plan(
        snapshot=replace(snapshot, vms=vms),
        counts=CopyCounts(
            vms=len(snapshot.vms),
            providers=len(snapshot.providers),
            provider_capabilities=len(snapshot.capabilities),
            user_keys=len(snapshot.user_keys),
            vm_grants=len(snapshot.grants),
            legacy_rejected_vms=len(snapshot.legacy_rejected) - legacy_there,
        ),
        already_there=AlreadyThere(
            providers=sum(r["provider_id"] in present.provider_ids for r in snapshot.providers),
            provider_capabilities=sum(
                r["ip_address"] in present.capability_addresses for r in snapshot.capabilities
            ),
            user_keys=sum(
                (r["user"], r["fingerprint"]) in present.user_keys for r in snapshot.user_keys
            ),
            legacy_rejected_vms=legacy_there,
        ),
        owner_assigned=ownerless,
        conflicts=tuple(sorted(conflicts, key=lambda conflict: conflict.name)),
        skip_legacy=present.legacy_rejected,
    )


def conflict_error(conflicts: Sequence[Conflict], label: str) -> CopyConflictError:
    shown = ", ".join(
        c.name if c.reason == "name" else f"{c.name} (there as {c.existing})"
        for c in conflicts[:CONFLICTS_SHOWN]
    )
    more = len(conflicts) - CONFLICTS_SHOWN
    if more > 0:
        shown += f" and {more} more"
    count = f"{len(conflicts)} VM{'s' if len(conflicts) != 1 else ''}"
    return CopyConflictError(f"{count} of this database already in {label}: {shown}")


def _next_step(settings: Settings, target: Path | str, label: str) -> str:
    if isinstance(target, str):
        step = (
            f"Set {ENV_PREFIX}DATABASE_URL to that URL (with its credentials) on every"
            " machine; 'golem config show' shows what a machine uses."
        )
        if settings.database_url is None:
            step += f" {settings.db_path} stays as it was: keep it as a backup."
        return step
    if target == settings.db_path:
        return f"To use it: unset {ENV_PREFIX}DATABASE_URL."
    return f"To use it: unset {ENV_PREFIX}DATABASE_URL and set {ENV_PREFIX}DB_PATH={label}."


def _schema(revision: str | None) -> Literal["created", "upgraded", "current"]:
    if revision is None:
        return "created"
    return "current" if revision == HEAD_REVISION else "upgraded"


async def copy_state(settings: Settings, raw_target: str, *, dry_run: bool = False) -> CopyReport:
    """Copy (or, with ``dry_run``, say what a copy would do, changing nothing).

    Raises ``InputError`` for a bad or same target, ``CopyConflictError`` when VMs
    are there already (not in a dry run: its report lists them), and what
    ``Database`` raises for a database that cannot be used.
    """
    target = parse_target(raw_target)
    source_location: Path | str = settings.database_url or settings.db_path
    label = _label(target)
    if _same_place(source_location, target):
        raise _same_database_error(label)
    target_exists = isinstance(target, str) or target.exists()
    if isinstance(target, Path):
        _check_target_file(target)

    async with Database.for_settings(settings) as source, source.read() as session:
        snapshot = await read_snapshot(session)
        source_identity = await database_identity(session)
    inspection = (
        await inspect_database(target, label)
        if target_exists
        else Inspection(revision=None, present=Present(), foreign=False, identity=None)
    )
    if source_identity is not None and source_identity == inspection.identity:
        raise _same_database_error(label)
    if inspection.foreign:
        raise InputError(
            f"{label} holds tables that are not golem's (no golem schema)",
            hint="Copy into an empty database or a new file.",
        )
    plan = _plan(snapshot, inspection.present, settings)
    if not dry_run:
        plan = await _write(target, label, snapshot, settings, created=not target_exists)
    return CopyReport(
        source=source.label,
        target=label,
        target_backend="postgresql" if isinstance(target, str) else "sqlite",
        dry_run=dry_run,
        counts=plan.counts,
        already_there=plan.already_there,
        owner=settings.user,
        owner_assigned=plan.owner_assigned,
        conflicts=plan.conflicts,
        schema=_schema(inspection.revision),
        next_step=_next_step(settings, target, label),
    )


async def _write(
    target: Path | str, label: str, snapshot: Snapshot, settings: Settings, *, created: bool
) -> _Plan:
    """The copy itself: in one transaction, after looking again at what the target
    holds inside it (another golem may have written since the look before)."""
    from sqlalchemy.exc import IntegrityError

    try:
        async with Database(target) as db, db.write() as session:
            plan = _plan(snapshot, await read_present(session), settings)
            if plan.conflicts:
                raise conflict_error(plan.conflicts, label)
            await write_snapshot(session, plan.snapshot, skip_legacy=plan.skip_legacy)
    except IntegrityError:
        # A VM recorded there by another golem between the look and the insert.
        if created and isinstance(target, Path):
            _remove_sqlite_file(target)
        raise CopyConflictError(
            f"A VM of this database was recorded in {label} meanwhile, by another golem"
        ) from None
    except BaseException:
        if created and isinstance(target, Path):
            _remove_sqlite_file(target)
        raise
    return plan


def _remove_sqlite_file(path: Path) -> None:
    """A file this copy created, and left empty of data: removed, so that a failed
    copy leaves nothing behind (with SQLite's side files and the migration lock)."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}.migrate.lock"):
        try:
            (path.parent / name).unlink()
        except FileNotFoundError:
            continue
        except OSError:
            break
