"""The one object in ``ctx.obj``: settings, consoles and output mode, built lazily."""

from __future__ import annotations

import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

    from requestor.settings import Settings


T = TypeVar("T")


@dataclass
class AppContext:
    debug: bool = False
    # Set by --json (requestor.cli.params.json_option) before the command runs, so
    # the root group renders an error as one JSON object on stderr.
    json_output: bool = False
    _settings: Settings | None = field(default=None, repr=False)
    _console: Console | None = field(default=None, repr=False)
    _err_console: Console | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from requestor.settings import load_settings

            self._settings = load_settings()
        return self._settings

    @property
    def console(self) -> Console:
        """stdout: tables, panels, JSON."""
        if self._console is None:
            # soft_wrap: a command line or path must never be folded mid-way.
            self._console = _console_class()(
                highlight=False, soft_wrap=True, width=console_width(sys.stdout)
            )
        return self._console

    @property
    def err_console(self) -> Console:
        """stderr: spinners, progress and warnings, so stdout stays clean for pipes."""
        if self._err_console is None:
            self._err_console = _console_class()(
                stderr=True, highlight=False, soft_wrap=True, width=console_width(sys.stderr)
            )
        return self._err_console

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """The command boundary: the one event loop of this command.

        ``golem``'s entry point pauses the garbage collector while modules load
        (see ``requestor.cli.main.main``); here the start-up objects are frozen
        and collection resumes, so a long session (a shell, a devnet, a big copy)
        collects what it allocates.
        """
        import asyncio
        import gc

        if not gc.isenabled():
            gc.freeze()
            gc.enable()
        return asyncio.run(main)


# Off a terminal nothing limits a line's length, and a table cut to rich's default
# of 80 columns would elide names, ids and addresses ("● …", "127.…") in what a
# script reads; wide enough for any row golem prints.
PIPE_WIDTH = 1000


def console_width(stream: TextIO) -> int | None:
    """The width for a console on ``stream``: rich's own choice at a terminal (or
    when COLUMNS is set), PIPE_WIDTH otherwise."""
    import os

    try:
        at_terminal = stream.isatty()
    except (AttributeError, ValueError):
        at_terminal = False
    if at_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return None
    return PIPE_WIDTH


def _console_class() -> type[Console]:
    from rich.console import Console

    class GolemConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1 on its own; the root group ends every closed
            # pipe the same way (quietly, exit 141).
            raise BrokenPipeError

    return GolemConsole
