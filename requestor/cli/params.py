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
