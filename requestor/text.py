"""Make untrusted text (anything a provider or discovery sent) safe for a terminal.

Escaping rich markup is not enough: escape sequences (OSC 8 links, window
titles, screen clears) pass through markup escaping untouched. ``clean`` turns
every control and format character into U+FFFD and caps the length; render the
result with ``rich.text.Text`` (never as markup).
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

REPLACEMENT = "\ufffd"
DEFAULT_LIMIT = 200


def _is_unsafe(char: str, keep_newlines: bool) -> bool:
    if keep_newlines and char in "\n\t":
        return False
    code = ord(char)
    if code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
        return True
    # Cf: bidi overrides, zero-width joiners and the like; Cs: lone surrogates.
    return unicodedata.category(char) in ("Cf", "Cs", "Co", "Cn") and code > 0x7F


def clean(value: object, limit: int = DEFAULT_LIMIT, keep_newlines: bool = False) -> str:
    """Return ``value`` as text that cannot drive the terminal, at most ``limit`` chars."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if text.isascii() and text.isprintable():
        return text
    return "".join(REPLACEMENT if _is_unsafe(c, keep_newlines) else c for c in text)


def first_error(error: ValidationError, *, limit: int = 160) -> tuple[str, str]:
    """(where, what) of a pydantic validation error's first problem: ``where`` is
    the dotted location (``""`` for the whole value); both cleaned for a terminal,
    since the input may be provider-sent. The one formatter of pydantic errors."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return clean(where, 60), clean(first["msg"], limit)


def first_error_text(error: ValidationError, *, limit: int = 160, whole: str = "answer") -> str:
    """``where: what`` of the first problem; ``whole`` names a top-level problem."""
    where, what = first_error(error, limit=limit)
    return f"{where or whole}: {what}"
