"""What shell completion offers: VM names from local state and provider ids from
the last discovery answer, read without any network call and without SQLAlchemy,
aiohttp or asyncssh (a completion runs on every Tab press; see README.md,
"Shell completion").

Both reads are best effort: a missing, older or locked database, or no cache
yet, means nothing to offer, never an error in the middle of the user's line.
"""

from __future__ import annotations

from collections.abc import Sequence

from requestor.errors import GolemError
from requestor.settings import Settings

# Provider ids from the last discovery answer, one a line, in golem's base dir:
# `golem vm providers` (and every search that lists providers) rewrites it.
SEEN_PROVIDERS_FILE = "providers-seen.txt"


def remember_seen(settings: Settings, provider_ids: Sequence[str]) -> None:
    """Record the ids discovery listed. A cache that cannot be written is no
    reason to fail the listing the user asked for."""
    from requestor.statefiles import create_private_file, private_dir

    # Provider-sent: only ids that are one plain printable word are kept, so
    # nothing in the file can break a completion line or reach a terminal raw.
    ids = sorted({pid for pid in provider_ids if pid.isprintable() and pid.split() == [pid]})
    path = settings.base_dir / SEEN_PROVIDERS_FILE
    try:
        private_dir(settings.base_dir, "GOLEM_REQUESTOR_BASE_DIR")
        create_private_file(path)
        path.write_text("".join(f"{pid}\n" for pid in ids), encoding="utf-8")
    except (OSError, GolemError):
        pass


def seen_provider_ids(settings: Settings) -> list[str]:
    try:
        text = (settings.base_dir / SEEN_PROVIDERS_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    return [line for line in text.splitlines() if line]


def vm_names(settings: Settings) -> list[str]:
    """The VM names in local state, oldest first, through the lean sqlite3 read
    (requestor.db.lean); nothing when the database is missing or not at head
    (completion never creates or migrates it)."""
    from requestor.db import lean

    snapshot = lean.snapshot(settings)
    return [] if snapshot is None else [row["name"] for row in snapshot.vms]
