"""``golem config show``: parse, call the config service, render."""

from __future__ import annotations

import click

from requestor.cli.context import AppContext
from requestor.cli.lazy import LazyGroup
from requestor.cli.params import json_option

pass_app = click.make_pass_decorator(AppContext)


@click.group(cls=LazyGroup)
def config() -> None:
    """Show golem's effective settings and the files it uses."""


@config.command()
@json_option()
@pass_app
def show(app: AppContext, as_json: bool) -> None:
    """Each setting with its value and where it came from, and the paths in use.

    \b
    golem reads GOLEM_REQUESTOR_* environment variables only, never a .env file:
    what `source .env.dev` sets shows as "environment". Credentials in the
    discovery URL are shown as ***.
    """
    from requestor.cli import render
    from requestor.services.config import show_config

    report = show_config()
    if as_json:
        render.print_json(render.config_json(report))
    else:
        render.config_report(app.console, report)
