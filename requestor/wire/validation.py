"""The one way a pydantic validation error becomes text for a user: its first
problem, as ``location: message``, cleaned (the input may be provider-sent)."""

from __future__ import annotations

from pydantic import ValidationError

from requestor.text import clean


def first_error(error: ValidationError, *, limit: int = 160) -> tuple[str, str]:
    """(where, what) of the first problem: ``where`` is the dotted location
    (``""`` for the whole value), both cleaned for a terminal."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return clean(where, 60), clean(first["msg"], limit)


def first_error_text(error: ValidationError, *, limit: int = 160, whole: str = "answer") -> str:
    """``where: what`` of the first problem; ``whole`` names a top-level problem."""
    where, what = first_error(error, limit=limit)
    return f"{where or whole}: {what}"
