"""asyncssh, imported once with a quicker shared-library lookup.

On import asyncssh looks for two optional C libraries (liboqs for post-quantum
key exchange, nettle for UMAC) with ``ctypes.util.find_library``. For a library
that is not installed, that tries ``ldconfig -p``, then compiles a probe with
gcc, then runs ld: five lookups and a dozen subprocesses, measured at ~0.25 s
of every ``golem vm ssh`` on this machine. Only the loader's cache can supply a
library that ``dlopen`` will then find by its soname, so we answer from one
``ldconfig -p`` run and skip the compiler and linker fallbacks. Where a library
is in that cache the answer is the same as the stdlib's.

Every module of golem imports asyncssh through here (``from
requestor.ssh._asyncssh import asyncssh``) so the first import is this one.
"""

from __future__ import annotations

import ctypes.util
import functools
import subprocess
from collections.abc import Callable

LDCONFIG_TIMEOUT_S = 5.0


@functools.cache
def _loader_cache() -> tuple[str, ...]:
    """The sonames ``ldconfig -p`` lists; empty when it cannot be run."""
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            done = subprocess.run(
                [ldconfig, "-p"],
                capture_output=True,
                text=True,
                timeout=LDCONFIG_TIMEOUT_S,
                check=False,
                env={"LC_ALL": "C", "LANG": "C"},
            )
        except (OSError, subprocess.SubprocessError):
            continue
        return tuple(line.split()[0] for line in done.stdout.splitlines()[1:] if " => " in line)
    return ()


_stdlib_find_library = ctypes.util.find_library


def _find_in_loader_cache(name: str) -> str | None:
    sonames = _loader_cache()
    if not sonames:  # no ldconfig (macOS, musl): the stdlib's own ways
        return _stdlib_find_library(name)
    prefix = f"lib{name}.so"
    return next((soname for soname in sonames if soname.startswith(prefix)), None)


def _import_with(find_library: Callable[[str], str | None]) -> None:
    original = ctypes.util.find_library
    setattr(ctypes.util, "find_library", find_library)  # noqa: B010 - for this import only
    try:
        import asyncssh  # noqa: F401 - loaded for the modules that use it
    finally:
        setattr(ctypes.util, "find_library", original)  # noqa: B010


_import_with(_find_in_loader_cache)

import asyncssh  # noqa: E402 - after the import above, this is the loaded module

__all__ = ["asyncssh"]
