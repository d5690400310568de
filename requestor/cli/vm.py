"""``golem vm ...``: parse, call one service function, render. Nothing else here.

Only click is imported at module level: ``golem --help`` loads this module.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from requestor.cli.context import AppContext
from requestor.cli.lazy import LazyGroup
from requestor.cli.params import Seconds, wait_timeout_option
from requestor.errors import ExitCode, GolemError, InputError

if TYPE_CHECKING:
    from requestor.services.actions import Action, BulkReport
    from requestor.services.runtime import Services

T = TypeVar("T")

# Commands that live in their own modules (SSH needs asyncssh; keep it out of the rest).
VM_LAZY_COMMANDS: dict[str, str] = {
    "ssh": "requestor.cli.ssh:ssh",
    "cp": "requestor.cli.ssh:cp",
    "forward": "requestor.cli.ssh:forward",
    "ssh-config": "requestor.cli.ssh:ssh_config",
}

pass_app = click.make_pass_decorator(AppContext)


def run_with_services(
    app: AppContext,
    work: Callable[[Services], Awaitable[T]],
    *,
    refresh_ssh: bool = False,
    **options: Any,
) -> T:
    """The command boundary: one event loop, one set of services, closed in order.

    ``refresh_ssh``: the command changes which VMs exist, so rewrite the ssh
    config and known_hosts 'golem vm ssh-config' wrote, if it did.
    """
    from requestor.services.runtime import open_services

    settings = app.settings

    async def main() -> T:
        async with open_services(settings, **options) as services:
            result = await work(services)
            if refresh_ssh:
                from requestor.ssh.sshconfig import refresh_from_db

                await refresh_from_db(settings, services.db)
            return result

    return app.run(main())


def _echo_json(data: Any) -> None:
    from requestor.cli.render import dump_json

    click.echo(dump_json(data))


@click.group(cls=LazyGroup, lazy_subcommands=VM_LAZY_COMMANDS)
def vm() -> None:
    """Find providers, create VMs, and manage them."""


# --- providers ---------------------------------------------------------------------


@vm.command()
@click.option("--cpu", type=click.IntRange(min=1), help="Minimum free CPU cores.")
@click.option("--memory", type=click.IntRange(min=1), help="Minimum free memory (GB).")
@click.option("--storage", type=click.IntRange(min=1), help="Minimum free storage (GB).")
@click.option("--country", help="Two-letter country code (ISO 3166-1 alpha-2), e.g. SE.")
@click.option("--reachable-only", is_flag=True, help="Hide providers that do not answer.")
@click.option("--no-probe", is_flag=True, help="Do not check whether providers answer.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output only.")
@pass_app
def providers(
    app: AppContext,
    cpu: int | None,
    memory: int | None,
    storage: int | None,
    country: str | None,
    reachable_only: bool,
    no_probe: bool,
    as_json: bool,
) -> None:
    """List providers with free resources, and whether each answers now."""
    from requestor.services.provider_search import (
        PROBE_CONCURRENCY,
        ProviderListing,
        list_providers,
    )

    if country is not None:
        country = country.strip().upper()
        if len(country) != 2 or not country.isalpha() or not country.isascii():
            raise InputError(
                f"Invalid --country {country!r}: use a two-letter code",
                "For example --country SE or --country US.",
            )

    async def work(services: Services) -> ProviderListing:
        return await list_providers(
            services, cpu=cpu, memory=memory, storage=storage, country=country, probe=not no_probe
        )

    if as_json:
        listing = run_with_services(app, work, concurrency=PROBE_CONCURRENCY)
    else:
        with app.err_console.status("Asking the discovery service and probing providers…"):
            listing = run_with_services(app, work, concurrency=PROBE_CONCURRENCY)
    if reachable_only:
        listing.providers[:] = [p for p in listing.providers if p.reachable]
    if as_json:
        from requestor.cli.render import providers_json

        _echo_json(providers_json(listing))
        return
    from requestor.cli.render import providers as render_providers

    render_providers(app.console, listing)
    if listing.rejected:
        app.err_console.print(
            f"[yellow]Skipped {len(listing.rejected)} advertisement(s) that do not fit "
            "the contract.[/]"
        )


# --- create ----------------------------------------------------------------------


@vm.command()
@click.argument("name")
@click.option("--provider-id", help="Provider to use (default: the best one that fits).")
@click.option("--cpu", type=int, required=True, help="CPU cores: 1, 2, 4, 8 or 16.")
@click.option("--memory", type=int, required=True, help="Memory in GB: 1, 2, 4, ... 64.")
@click.option("--storage", type=int, required=True, help="Storage in GB, at least 10.")
@wait_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output only.")
@pass_app
def create(
    app: AppContext,
    name: str,
    provider_id: str | None,
    cpu: int,
    memory: int,
    storage: int,
    wait_timeout: float,
    as_json: bool,
) -> None:
    """Create a VM on a provider and wait until it accepts SSH."""
    from requestor.services.create import CreateRequest, CreateResult, create_vm, validate_create

    request = CreateRequest(
        name=name,
        cpu=cpu,
        memory=memory,
        storage=storage,
        provider_id=provider_id,
        ssh_wait=wait_timeout,
    )
    validate_create(request)  # before touching anything

    if as_json:
        result = run_with_services(
            app, lambda services: create_vm(services, request), refresh_ssh=True
        )
        from requestor.cli.render import vm_json

        _echo_json({**vm_json(result.vm), "choice_reason": result.choice_reason})
        return

    with app.err_console.status("Creating VM…") as status:

        def progress(step: str) -> None:
            status.update(f"{step}…")

        async def work(services: Services) -> CreateResult:
            return await create_vm(services, request, progress)

        result = run_with_services(app, work, refresh_ssh=True)
    from requestor.cli.render import deployed

    if result.choice_reason:
        from rich.text import Text

        from requestor.text import clean

        app.err_console.print(
            Text(
                f"Picked provider {clean(result.provider.provider_id, 66)}: {result.choice_reason}."
            )
        )
    deployed(app.console, result)


# --- list and forget -------------------------------------------------------------


@vm.command(name="list")
@click.option("--refresh", is_flag=True, help="Ask each provider for the current status.")
@click.option(
    "--timeout",
    type=Seconds(min=0.5, max=600),
    default=None,
    help="With --refresh: seconds to wait for each provider (default 15).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output only.")
@pass_app
def list_command(app: AppContext, refresh: bool, timeout: float | None, as_json: bool) -> None:
    """List your VMs from local state (--refresh asks the providers first)."""
    from requestor.cli.render import vm_json, vm_list

    settings = app.settings
    if refresh:
        from requestor.services.actions import list_vms

        work = run_with_services(
            app, lambda services: list_vms(services, refresh=True), call_timeout=timeout
        )
        vms = work[0]
    else:
        # The common case reads local state only: no HTTP stack is loaded.
        from requestor.db.engine import Database
        from requestor.db.repository import count_rejected_legacy
        from requestor.db.repository import list_vms as read_vms

        async def local() -> tuple[list[Any], int]:
            async with Database(settings.db_path) as db, db.read() as session:
                return await read_vms(session), await count_rejected_legacy(session)

        vms, rejected = app.run(local())
        if rejected and not as_json:
            app.err_console.print(
                f"[yellow]{rejected} VM record(s) from the earlier golem could not be read; "
                f"they are kept in the table legacy_rejected_vms of {settings.db_path}.[/]"
            )
    if as_json:
        _echo_json([vm_json(vm) for vm in vms])
    else:
        vm_list(app.console, vms)


@vm.command()
@click.argument("names", nargs=-1, required=True)
@pass_app
def forget(app: AppContext, names: tuple[str, ...]) -> None:
    """Remove VMs from local state only (e.g. ones the provider no longer knows)."""
    from requestor.services.actions import forget_vms
    from requestor.text import clean

    removed = run_with_services(app, lambda services: forget_vms(services, names), refresh_ssh=True)
    for name in removed:
        click.echo(f"Forgot {clean(name, 80)}")


# --- start, stop, destroy: one, several, globs, --all --------------------------------


def _selection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("names", nargs=-1),
        click.option("--all", "all_vms", is_flag=True, help="Every VM in local state."),
        click.option("--provider", "provider_id", help="Only VMs on this provider."),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 500),
            default=100,
            show_default=True,
            help="VMs handled at once.",
        ),
        click.option(
            "--timeout",
            type=Seconds(min=0.5, max=600),
            default=None,
            help="Seconds to wait for each provider call (default 15).",
        ),
        click.option("--json", "as_json", is_flag=True, help="One JSON object per VM."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _act(
    app: AppContext,
    action_name: str,
    names: tuple[str, ...],
    all_vms: bool,
    provider_id: str | None,
    concurrency: int,
    timeout: float | None,
    as_json: bool,
    confirm: Callable[[int, list[str]], None] | None = None,
) -> None:
    from requestor.services.actions import Action, run_action, select_vms

    action = Action(action_name)
    console = app.err_console

    async def work(services: Services) -> BulkReport | None:
        vms = await select_vms(services, names, all_vms=all_vms, provider_id=provider_id)
        if not vms:
            return None
        if confirm is not None:
            confirm(len(vms), [vm.name for vm in vms])
        if as_json or len(vms) == 1:
            return await run_action(services, action, vms, concurrency=concurrency)
        return await _with_progress(console, action, services, vms, concurrency)

    report = run_with_services(
        app,
        work,
        refresh_ssh=action is Action.DESTROY,
        concurrency=concurrency,
        call_timeout=timeout,
    )
    _finish(app, action, report, as_json)


_ING = {"start": "Starting", "stop": "Stopping", "destroy": "Destroying", "refresh": "Refreshing"}


async def _with_progress(
    console: Any, action: Action, services: Services, vms: list[Any], concurrency: int
) -> BulkReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from requestor.services.actions import Outcome, run_action

    failed = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(_ING[action.value], total=len(vms), failed=0)

        def advance(outcome: Outcome) -> None:
            nonlocal failed
            failed += 0 if outcome.ok else 1
            progress.update(task, advance=1, failed=failed)

        return await run_action(services, action, vms, concurrency=concurrency, on_outcome=advance)


def _finish(app: AppContext, action: Action, report: BulkReport | None, as_json: bool) -> None:
    from requestor.cli import render

    if report is None:
        if as_json:
            _echo_json([])
        else:
            app.err_console.print("No VMs selected.")
        return
    if as_json:
        _echo_json([render.outcome_json(o) for o in report.outcomes])
    elif len(report.outcomes) == 1 and not report.interrupted:
        outcome = report.outcomes[0]
        if not outcome.ok:
            raise GolemError(outcome.error or f"{action.value} failed", outcome.hint)
        render.single_outcome(app.console, outcome, action.value)
    else:
        render.bulk(app.console, report)
    if report.interrupted:
        sys.exit(ExitCode.INTERRUPTED)
    if report.failed:
        sys.exit(ExitCode.FAILED if report.succeeded == 0 else ExitCode.PARTIAL)


@vm.command()
@_selection_options
@pass_app
def start(app: AppContext, /, **selection: Any) -> None:
    """Start stopped VMs: NAME..., shell globs ('web-*'), --all or --provider."""
    _act(app, "start", **selection)


@vm.command()
@_selection_options
@pass_app
def stop(app: AppContext, /, **selection: Any) -> None:
    """Stop VMs: NAME..., shell globs ('web-*'), --all or --provider."""
    _act(app, "stop", **selection)


@vm.command()
@_selection_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def destroy(app: AppContext, /, yes: bool, **selection: Any) -> None:
    """Destroy VMs for good: NAME..., shell globs ('web-*'), --all or --provider."""

    def confirm(count: int, names: list[str]) -> None:
        if yes:
            return
        shown = ", ".join(names[:5]) + (", …" if count > 5 else "")
        if not sys.stdin.isatty():
            raise InputError(
                f"Refusing to destroy {count} VM(s) ({shown}) without confirmation",
                "Pass --yes to confirm when not at a terminal.",
            )
        if not click.confirm(
            f"Destroy {count} VM(s) ({shown})? This cannot be undone", default=False, err=True
        ):
            raise GolemError("Nothing destroyed.")

    _act(app, "destroy", confirm=confirm, **selection)
