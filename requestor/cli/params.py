"""Parameter types shared by the commands."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click


class Seconds(click.FloatRange):
    """A finite number of seconds in a range (``nan`` and ``inf`` pass FloatRange)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


# How long create, ssh, cp and forward wait for a VM's SSH to answer: one default
# for all of them. A fresh VM on a real provider can take minutes to boot, and a
# command that gives up earlier than create would fail on a VM create still
# waits for.
DEFAULT_WAIT_TIMEOUT = 180.0


def wait_timeout_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--wait-timeout SECONDS (0 to 3600, default 180), shared by every command that waits."""
    return click.option(
        "--wait-timeout",
        type=Seconds(min=0, max=3600),
        default=DEFAULT_WAIT_TIMEOUT,
        show_default=True,
        help="Seconds to wait for the VM's SSH to answer.",
    )(command)


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    from requestor.cli.context import AppContext

    app = ctx.find_object(AppContext)
    if value and app is not None:
        app.json_output = True
    return value


def json_option(help: str = "Machine-readable output only (docs/json.md).") -> Callable[..., Any]:
    """--json, the same on every command: besides the command's own output, it
    makes an error one JSON object on stderr (the root group renders it).

    Eager, so it is known before the other parameters are checked and their
    usage errors come out as JSON too.
    """
    return click.option(
        "--json", "as_json", is_flag=True, is_eager=True, callback=_remember_json, help=help
    )


def quiet_option(help: str) -> Callable[..., Any]:
    """-q/--quiet on the listing commands: names only, one a line, for a pipe."""
    return click.option("-q", "--quiet", is_flag=True, help=help)


def vm_selection(func: Callable[..., Any]) -> Callable[..., Any]:
    """NAME... plus --all and --provider ID: the one selection grammar of every
    command that acts on VMs (services/actions.py select_vms)."""
    from requestor.cli import complete

    options = [
        click.argument("names", nargs=-1, shell_complete=complete.vm_names),
        click.option(
            "--all", "all_vms", is_flag=True, help="Every VM in local state (not with names)."
        ),
        click.option(
            "--provider",
            "provider_id",
            metavar="ID",
            shell_complete=complete.provider_ids,
            help="Only VMs on this provider (narrows names too).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
