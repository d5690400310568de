"""``golem db``: golem's state moved between databases (team mode: docs/team.md)."""

from __future__ import annotations

import click

from requestor.cli.context import AppContext
from requestor.cli.lazy import LazyGroup
from requestor.cli.params import json_option
from requestor.errors import ExitCode

pass_app = click.make_pass_decorator(AppContext)


@click.group(cls=LazyGroup)
def db() -> None:
    """Move golem's state between databases (local SQLite, shared PostgreSQL)."""


@db.command()
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="The database to copy into: postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE,"
    " or sqlite:///PATH (or a plain path) for a SQLite file.",
)
@click.option(
    "--dry-run", is_flag=True, help="Say what would be copied and what conflicts; change nothing."
)
@json_option()
@pass_app
def copy(app: AppContext, target: str, dry_run: bool, as_json: bool) -> int | None:
    """Copy the state golem uses now into another database.

    \b
    The source is the database golem uses now (GOLEM_REQUESTOR_DATABASE_URL when
    set, else the local SQLite file) and is only read. The target gets golem's
    schema if it has none. Everything is copied in one transaction: VMs with
    their host-key pins, owners, keys and grants; providers, their capabilities
    and user keys (merged where the target has them). VMs the target already
    records (same name, or the same VM at its provider) refuse the whole copy;
    --dry-run lists them. Credentials in URLs are never shown.

    \b
    Move a fleet into team mode, then switch each machine:
      golem db copy --to postgresql+asyncpg://alice:PASSWORD@db.example:5432/golem
      export GOLEM_REQUESTOR_DATABASE_URL=postgresql+asyncpg://...
    """
    from requestor.cli import render
    from requestor.services.db_copy import copy_state

    report = app.run(copy_state(app.settings, target, dry_run=dry_run))
    if as_json:
        render.print_json(render.copy_json(report))
    else:
        render.copy_report(app.console, report)
    # A dry run that finds conflicts says the copy would fail, as the copy would.
    return ExitCode.FAILED if report.refused else None
