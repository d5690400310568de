"""Shared by every benchmark: markdown tables, and rewriting one section of
docs/benchmarks.md between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``."""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

INTRO = """# Benchmarks

Measured with `make bench` (`python -m bench.run`), on loopback only. Each section
below is rewritten by its benchmark module in `bench/` between its markers; edit
the text outside the markers freely. Numbers are from the machine named in each
section: compare them with each other, not across machines.
"""


def _markers(name: str) -> tuple[str, str]:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise ValueError(f"section name {name!r}: use lowercase letters, digits, _ . -")
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def update_section(name: str, markdown: str, path: Path = DOCS) -> Path:
    """Put ``markdown`` between the section's markers (appended if the section is new;
    the file is created with a short intro if missing). Text outside stays as it is."""
    start, end = _markers(name)
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else INTRO
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _match: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None
) -> str:
    """A markdown table; ``align`` is one letter per column, ``l`` or ``r``."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = [headers, rule, *[[str(cell) for cell in row] for row in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def machine() -> str:
    """One line naming where and when the numbers were taken."""
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()} "
        f"({sys.implementation.name}), {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU(s)"
    )
