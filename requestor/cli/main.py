"""The ``golem`` entry point: the root group and the one place errors become exit codes."""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, NoReturn, Protocol, runtime_checkable

import click

from requestor import __version__
from requestor.cli.context import AppContext
from requestor.cli.lazy import LazyGroup
from requestor.errors import ExitCode, GolemError, GolemWarning, InputError
from requestor.text import clean

ROOT_COMMANDS = {
    "vm": "requestor.cli.vm:vm",
    "completion": "requestor.cli.complete:completion",
    "config": "requestor.cli.config:config",
    "db": "requestor.cli.db:db",
    # The devnet is its own distribution (golem-vm-devnet, devnet/ in the repository):
    # an installed golem may not have it.
    "devnet": "golem_devnet.cli:devnet",
}
# Commands whose module comes from another distribution: that distribution's
# top-level package, and how to install it.
OPTIONAL_COMMANDS = {
    "devnet": (
        "golem_devnet",
        "pip install 'golem-vm-requestor[devnet]' (from the repository: pip install ./devnet)",
    ),
}


def _not_installed(name: str, install: str) -> click.Command:
    """Stands in for a command whose distribution is missing: any arguments, even
    --help, get the one-line answer saying how to install it (exit 2)."""

    def explain(args: tuple[str, ...]) -> None:
        raise InputError(f"'golem {name}' is not installed: {install}")

    return click.Command(
        name,
        callback=explain,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        short_help=f"(not installed: {install})",
    )


_JSON_ASKED = "golem.json_asked"


class RootGroup(LazyGroup):
    """Maps every outcome and every error to an exit code, in one place.

    A command returns None (success), an int (the status it ended with: the
    remote exit status of ``ssh -- CMD``) or a bulk report; it never exits the
    process itself.
    """

    def _load(self, cmd_name: str) -> click.Command:
        try:
            return super()._load(cmd_name)
        except ModuleNotFoundError as error:
            package, install = OPTIONAL_COMMANDS.get(cmd_name, (None, ""))
            if package is None or (error.name or "").split(".")[0] != package:
                raise  # a bug, or a dependency missing inside an installed one
            return _not_installed(cmd_name, install)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # A usage error found while parsing (an unknown option) comes before the
        # command's --json is processed: remember whether it was asked for.
        before_end = args[: args.index("--")] if "--" in args else args
        ctx.meta[_JSON_ASKED] = "--json" in before_end
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        import warnings

        with warnings.catch_warnings():
            # Services report side problems with GolemWarning; they are shown as
            # "Warning:" lines, every time, and never end the command.
            warnings.simplefilter("always", GolemWarning)
            shown = warnings.showwarning

            def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
                if isinstance(message, GolemWarning):
                    click.echo(f"Warning: {clean(message.message, limit=2000)}", err=True)
                    if message.hint:
                        click.echo(f"Solution: {clean(message.hint, limit=2000)}", err=True)
                else:
                    shown(message, category, *args, **kwargs)

            warnings.showwarning = show
            return self._invoke_mapping_errors(ctx)

    def _invoke_mapping_errors(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            # Output problems (a closed pipe, a full disk) surface here rather
            # than at interpreter exit, where they could only be a traceback.
            sys.stdout.flush()
            code = exit_code(result)
            if code != ExitCode.OK:
                ctx.exit(code)
            return result
        except GolemError as error:
            _fail(ctx, error.message, error.hint, error.exit_code, error)
        except KeyboardInterrupt as error:
            _fail(ctx, "Interrupted.", None, ExitCode.INTERRUPTED, error, "interrupted")
        except click.ClickException as error:
            app = ctx.find_object(AppContext)
            if app is None or not (app.json_output or ctx.meta.get(_JSON_ASKED)):
                raise  # click's own usage message
            app.json_output = True
            _fail(ctx, error.format_message(), _usage_hint(error), error.exit_code, error, "usage")
        except (click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # `golem vm list | head -1`: the reader has gone; end quietly, as other
            # Unix tools do. Every VM's result was recorded before it was printed.
            _silence_stdout()
            ctx.exit(ExitCode.BROKEN_PIPE)
        except UnicodeEncodeError as error:
            encoding = getattr(sys.stdout, "encoding", None) or "unknown"
            _fail(
                ctx,
                f"The output cannot be written in this terminal's encoding ({encoding})",
                "Use a UTF-8 locale (e.g. export LC_ALL=C.UTF-8), or --json (ASCII only).",
                ExitCode.FAILED,
                error,
                "output_encoding",
            )
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                _fail(ctx, *_internal(error))
            _silence_stdout()  # what was left in the buffer cannot be written either
            _fail(
                ctx,
                f"Cannot write: {error.strerror}",
                "Free some disk space, or send the output elsewhere, then try again.",
                ExitCode.FAILED,
                error,
                "output_full",
            )
        except Exception as error:  # a bug: never show a traceback unless asked
            _fail(ctx, *_internal(error))


def _internal(error: BaseException) -> tuple[str, str, ExitCode, BaseException, str]:
    return (
        f"Unexpected internal error: {type(error).__name__}: {error}",
        "Run again with 'golem --debug ...' for the traceback, and report it.",
        ExitCode.FAILED,
        error,
        "internal",
    )


def _usage_hint(error: click.ClickException) -> str:
    usage_ctx = getattr(error, "ctx", None)
    if usage_ctx is not None:
        return f"See '{usage_ctx.command_path} --help'."
    return "See 'golem --help'."


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of what is still
    buffered cannot fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


@runtime_checkable
class ManyVMs(Protocol):
    """What a command on many VMs returns (``BulkReport``, ``ExecReport``): the
    exit code follows from the counts, without importing the services."""

    interrupted: bool

    @property
    def succeeded(self) -> int: ...

    @property
    def failed(self) -> int: ...


def exit_code(result: object) -> int:
    """The exit code for what a command returned (README.md, "Exit codes")."""
    if result is None:
        return ExitCode.OK
    if isinstance(result, int):
        return result
    if isinstance(result, ManyVMs):
        if result.interrupted:
            return ExitCode.INTERRUPTED
        if result.failed:
            return ExitCode.FAILED if result.succeeded == 0 else ExitCode.PARTIAL
        return ExitCode.OK
    raise TypeError(f"a command returned {type(result).__name__}, not an outcome")


def _fail(
    ctx: click.Context,
    message: str,
    hint: str | None,
    code: int,
    error: BaseException,
    name: str | None = None,
) -> NoReturn:
    """Show one error (text, or one JSON object with --json) on stderr and exit.

    ``name`` is the stable code a script matches on (docs/json.md, "Errors"):
    a GolemError's own, else what the caller says the failure is.
    """
    app = ctx.find_object(AppContext)
    debug = app is not None and app.debug
    if debug:
        _debug_detail(error)
    if app is not None and app.json_output:
        import json

        body = {
            "code": name or (error.code if isinstance(error, GolemError) else "failed"),
            "exit_code": int(code),
            "message": clean(message, limit=2000),
            "hint": clean(hint, limit=2000) if hint else None,
        }
        click.echo(json.dumps({"error": body}, ensure_ascii=True), err=True)
        ctx.exit(code)
    click.echo(f"Error: {clean(message, limit=2000)}", err=True)
    if hint:
        click.echo(f"Solution: {clean(hint, limit=2000)}", err=True)
    ctx.exit(code)


def _debug_detail(error: BaseException) -> None:
    """--debug: the traceback of an unexpected error (a bug to report); for an
    expected one (a GolemError, Ctrl-C) its message and hint say it all, so only
    what caused it, one line each (the refused connection, the timeout...)."""
    if not isinstance(error, GolemError | KeyboardInterrupt):
        import traceback

        traceback.print_exception(error, file=sys.stderr)
        return
    cause = error.__cause__ or error.__context__
    while cause is not None:
        click.echo(f"Debug: caused by {type(cause).__name__}: {clean(str(cause), 500)}", err=True)
        cause = cause.__cause__ or cause.__context__


@click.group(
    cls=RootGroup,
    lazy_subcommands=ROOT_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", "-V", prog_name="golem")
@click.option(
    "--debug", is_flag=True, help="Tracebacks of unexpected errors; the causes of expected ones."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """golem: rent virtual machines on the Golem Network and get a shell on them.

    \b
    Try it locally, without any network:
      golem devnet up                       # in one shell
      eval "$(cat ~/.golem/devnet/env)"     # in another (or paste the export lines)
      golem vm providers
      golem vm create my-vm --cpu 1 --memory 1 --storage 10
      golem vm ssh my-vm
    """
    ctx.obj = AppContext(debug=debug)


def main() -> None:
    import gc

    # Start-up allocates ~100,000 long-lived objects (modules, classes, functions)
    # that the cyclic collector would walk again and again, and once more at exit:
    # measured ~110 ms of a ~400 ms `golem vm list`, ~140 ms of `golem vm ssh`.
    # The collector stays off until the command's event loop starts (see
    # AppContext.run); what is left at exit is frozen so the final collection
    # skips it.
    gc.disable()
    try:
        cli(prog_name="golem")
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
