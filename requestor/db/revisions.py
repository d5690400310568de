"""The schema revisions this package ships, oldest first: standard library only,
so the lean read (``lean.py``) can tell whether a database is at head without
loading SQLAlchemy or Alembic. A test keeps this equal to the migration scripts."""

from __future__ import annotations

KNOWN_REVISIONS = ("0001", "0002", "0003", "0004")
HEAD_REVISION = KNOWN_REVISIONS[-1]
