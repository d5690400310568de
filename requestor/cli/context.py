"""The one object in ``ctx.obj``: settings, consoles and output mode, built lazily."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

    from requestor.settings import Settings


T = TypeVar("T")


@dataclass
class AppContext:
    debug: bool = False
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
            self._console = _console_class()(highlight=False, soft_wrap=True)
        return self._console

    @property
    def err_console(self) -> Console:
        """stderr: spinners, progress and warnings, so stdout stays clean for pipes."""
        if self._err_console is None:
            self._err_console = _console_class()(stderr=True, highlight=False, soft_wrap=True)
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


def _console_class() -> type[Console]:
    from rich.console import Console

    class GolemConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1 on its own; the root group ends every closed
            # pipe the same way (quietly, exit 141).
            raise BrokenPipeError

    return GolemConsole
