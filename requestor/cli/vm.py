"""``golem vm ...``: parse, call one service function, render, return the outcome.

Only click is imported at module level: ``golem --help`` loads this module. The
root group (``requestor.cli.main``) turns what a command returns into the exit
code; nothing here exits the process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from requestor.cli import complete
from requestor.cli.context import AppContext
from requestor.cli.lazy import LazyGroup
from requestor.cli.params import (
    Seconds,
    json_option,
    quiet_option,
    vm_selection,
    wait_timeout_option,
)
from requestor.errors import Declined, GolemError, InputError
from requestor.status import VMStatus

if TYPE_CHECKING:
    from requestor.services.actions import BulkReport
    from requestor.services.create import CreateRequest
    from requestor.services.create_many import CreateReport
    from requestor.services.runtime import Network, Services

T = TypeVar("T")

# Commands that live in their own modules (SSH needs asyncssh; keep it out of the rest).
VM_LAZY_COMMANDS: dict[str, str] = {
    "ssh": "requestor.cli.ssh:ssh",
    "cp": "requestor.cli.ssh:cp",
    "forward": "requestor.cli.ssh:forward",
    "ssh-config": "requestor.cli.ssh:ssh_config",
    "exec": "requestor.cli.ssh:exec_command",
    "wait": "requestor.cli.ssh:wait",
    "grant": "requestor.cli.grants:grant",
    "revoke": "requestor.cli.grants:revoke",
}

pass_app = click.make_pass_decorator(AppContext)

# `vm providers --sort` keys: the rankings are services/provider_search.py's SORT_KEYS
# (a test keeps the two equal; naming them here keeps --help free of aiohttp).
PROVIDER_SORT_KEYS = ("price", "cpu", "memory", "storage", "latency", "country")


def run_with_services(
    app: AppContext, work: Callable[[Services], Awaitable[T]], **options: Any
) -> T:
    """The command boundary: one event loop, one set of services, closed in order."""
    from requestor.services.runtime import open_services

    settings = app.settings

    async def main() -> T:
        async with open_services(settings, **options) as services:
            return await work(services)

    return app.run(main())


def run_with_network(app: AppContext, work: Callable[[Network], Awaitable[T]], **options: Any) -> T:
    """``run_with_services`` without local state: no database is opened or loaded."""
    from requestor.services.runtime import open_network

    settings = app.settings

    async def main() -> T:
        async with open_network(settings, **options) as network:
            return await work(network)

    return app.run(main())


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
@click.option(
    "--sort",
    type=click.Choice(PROVIDER_SORT_KEYS),
    help="Order by: price (of the --cpu/--memory/--storage size, else the smallest VM; "
    "unknown prices last), most free cpu/memory/storage, lowest latency, or country A-Z.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N providers.")
@quiet_option("Print provider ids only, one a line.")
@json_option()
@pass_app
def providers(
    app: AppContext,
    cpu: int | None,
    memory: int | None,
    storage: int | None,
    country: str | None,
    reachable_only: bool,
    no_probe: bool,
    sort: str | None,
    limit: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """List providers with free resources, prices, and whether each answers now."""
    from requestor.cli import render
    from requestor.services.provider_search import (
        PROBE_CONCURRENCY,
        ProviderListing,
        list_providers,
    )

    if sort == "latency" and no_probe:
        raise InputError(
            "--sort latency needs the probe that --no-probe turns off",
            "Drop --no-probe, or sort by cpu, memory, storage or country.",
        )

    if country is not None:
        country = country.strip().upper()
        if len(country) != 2 or not country.isalpha() or not country.isascii():
            raise InputError(
                f"Invalid --country {country!r}: use a two-letter code",
                "For example --country SE or --country US.",
            )

    async def work(network: Network) -> ProviderListing:
        return await list_providers(
            network,
            cpu=cpu,
            memory=memory,
            storage=storage,
            country=country,
            probe=not no_probe,
            reachable_only=reachable_only,
            sort=sort,
            limit=limit,
        )

    if as_json or quiet:
        listing = run_with_network(app, work, concurrency=PROBE_CONCURRENCY)
        if as_json:
            render.print_json(render.providers_json(listing))
        else:
            render.names_only(v.advertisement.provider_id for v in listing.providers)
        return
    with render.busy(app.err_console, "Asking the discovery service and probing providers…"):
        listing = run_with_network(app, work, concurrency=PROBE_CONCURRENCY)
    render.providers(app.console, listing)
    render.rejected_ads(app.err_console, listing)


# --- create ----------------------------------------------------------------------


@vm.command()
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option(
    "--count",
    type=click.IntRange(1, 1000),
    help="With one NAME: create NAME-1 ... NAME-N.",
)
@click.option(
    "--provider",
    "--provider-id",
    "provider_id",
    metavar="ID",
    shell_complete=complete.provider_ids,
    help="Provider to use (default: the best one that fits). --provider-id is an alias.",
)
@click.option("--cpu", type=int, required=True, help="CPU cores: 1, 2, 4, 8 or 16.")
@click.option("--memory", type=int, required=True, help="Memory in GB: 1, 2, 4, ... 64.")
@click.option("--storage", type=int, required=True, help="Storage in GB, at least 10.")
@wait_timeout_option
@click.option(
    "--timeout",
    type=Seconds(min=0.5, max=600),
    default=None,
    help="Seconds to wait for each provider call (default: 150 for the create call, "
    "15 for the others).",
)
@json_option()
@pass_app
def create(
    app: AppContext,
    names: tuple[str, ...],
    count: int | None,
    provider_id: str | None,
    cpu: int,
    memory: int,
    storage: int,
    wait_timeout: float,
    timeout: float | None,
    as_json: bool,
) -> CreateReport | None:
    """Create a VM on a provider and wait until it accepts SSH.

    \b
    Several at once: golem vm create web-1 web-2 web-3 ..., or --count N with
    one NAME (NAME-1 ... NAME-N). They are created concurrently, spread over
    the providers that fit unless --provider-id names one.
    """
    from requestor.cli import render
    from requestor.services.create import (
        CreateRequest,
        CreateResult,
        CreateTrace,
        create_vm,
        interrupted_error,
        validate_create,
    )

    if count is not None:
        if len(names) != 1:
            raise InputError(
                "--count takes exactly one NAME", "For example: golem vm create web --count 3 ..."
            )
        from requestor.services.create_many import numbered

        names = tuple(numbered(names[0], count))
    requests = [
        CreateRequest(
            name=name,
            cpu=cpu,
            memory=memory,
            storage=storage,
            provider_id=provider_id,
            ssh_wait=wait_timeout,
        )
        for name in names
    ]
    if count is not None or len(requests) > 1:
        return _create_many(app, requests, as_json)
    request = requests[0]
    validate_create(request)  # before touching anything
    trace = CreateTrace()

    if as_json:
        try:
            result = run_with_services(
                app,
                lambda services: create_vm(services, request, trace=trace),
                call_timeout=timeout,
            )
        except KeyboardInterrupt:
            raise interrupted_error(request, trace) from None
        render.print_json(render.created_json(result))
        return None

    with render.busy(app.err_console, "Creating VM…") as status:

        def progress(step: str) -> None:
            status.update(f"{step}…")

        async def work(services: Services) -> CreateResult:
            return await create_vm(services, request, progress, trace)

        try:
            result = run_with_services(app, work, call_timeout=timeout)
        except KeyboardInterrupt:
            raise interrupted_error(request, trace) from None
    render.provider_choice(app.err_console, result)
    render.deployed(app.console, result)
    return None


def _create_many(app: AppContext, requests: list[CreateRequest], as_json: bool) -> CreateReport:
    """Several VMs at once: live progress on stderr, then a row per VM (or JSON)."""
    import sys

    from requestor.cli import render
    from requestor.services.create_many import CreateOutcome, create_many, validate_many

    validate_many(requests)  # every name before touching anything
    bar = render.BulkProgress(app.err_console, "create")
    # Off a terminal the bar draws nothing: say what happens, one line at a time.
    plain = not as_json and not sys.stderr.isatty()

    def placed(plan: list[tuple[str, str]]) -> None:
        if as_json:
            return
        providers = len({provider for _name, provider in plan})
        if plain:
            click.echo(
                f"Creating {len(plan)} VMs on {providers} provider(s); each is ready when "
                "its SSH answers…",
                err=True,
            )
        else:
            bar.start(len(plan))

    def step(name: str, text: str) -> None:
        # Off a terminal, the steps before the VMs are placed (looking for
        # providers, probing them) say what the command waits for; each VM's own
        # steps would be a dozen lines per VM, so its result line stands for them.
        if plain and not name:
            render.console_line_err(f"{text}…")

    def finished(outcome: CreateOutcome) -> None:
        bar.advance(outcome)
        if plain:
            if outcome.ok:
                render.create_line(outcome.name, f"created on {outcome.provider}")
            else:
                render.create_line(outcome.name, f"failed: {outcome.error}")

    try:
        report = run_with_services(
            app,
            lambda services: create_many(
                services, requests, on_placed=placed, on_step=step, on_outcome=finished
            ),
        )
    finally:
        bar.stop()
    if as_json:
        render.print_json(render.created_many_json(report))
    else:
        render.created_many(app.console, report)
    return report


# --- list and forget -------------------------------------------------------------


@vm.command(name="list")
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...", shell_complete=complete.vm_names)
@click.option(
    "--provider",
    "provider_id",
    metavar="ID",
    shell_complete=complete.provider_ids,
    help="Only VMs on this provider.",
)
@click.option(
    "--status",
    type=click.Choice([s.value for s in VMStatus]),
    help="Only VMs with this status (after --refresh, when given).",
)
@click.option(
    "--mine",
    is_flag=True,
    help="Only VMs you created (GOLEM_REQUESTOR_USER); useful in a shared database.",
)
@click.option("--refresh", is_flag=True, help="Ask each provider for the current status.")
@click.option(
    "--timeout",
    type=Seconds(min=0.5, max=600),
    default=None,
    help="With --refresh: seconds to wait for each provider (default 15).",
)
@click.option(
    "--scan-advertised",
    is_flag=True,
    help="With --refresh: look for orphans on every provider discovery advertises too "
    "(after a lost database).",
)
@quiet_option("Print VM names only, one a line.")
@json_option()
@pass_app
def list_command(
    app: AppContext,
    patterns: tuple[str, ...],
    provider_id: str | None,
    status: str | None,
    mine: bool,
    refresh: bool,
    timeout: float | None,
    scan_advertised: bool,
    quiet: bool,
    as_json: bool,
) -> BulkReport | None:
    """List your VMs from local state (--refresh asks the providers first).

    \b
    PATTERNs are names or shell globs ('web-*'); with filters, a VM is listed
    when it matches every filter given. No match is an empty list, not an error.

    With --refresh, each provider whose answer could not be used is named on
    stderr and its VMs are shown unreachable; the exit code is then 3 (some VMs
    not refreshed) or 1 (none refreshed). VMs this installation created that no
    record names are shown as 'orphan' rows (see 'golem vm adopt').
    """
    if scan_advertised and not refresh:
        raise click.UsageError("--scan-advertised needs --refresh")
    from requestor.services.views import Mine, VMFilter

    chosen = VMFilter(
        patterns=patterns,
        provider_id=provider_id,
        status=None if status is None else VMStatus(status),
        mine=Mine.of(app.settings) if mine else None,
    )
    report = None
    if refresh:
        from requestor.services.actions import list_vms

        listing, report = run_with_services(
            app,
            lambda services: list_vms(
                services, chosen, refresh=True, scan_advertised=scan_advertised
            ),
            call_timeout=timeout,
        )
    else:
        # The common case reads local state only: no HTTP stack is loaded.
        from requestor.services.local import local_vms

        listing = local_vms(app.settings, app.run, chosen)
    from requestor.cli import render

    render.vm_listing(
        app.console,
        app.err_console,
        listing,
        as_json,
        refresh=report,
        quiet=quiet,
        filtered=not chosen.everything,
    )
    return report


@vm.command()
@click.argument("name")
@click.option("--refresh", is_flag=True, help="Ask the VM's provider first.")
@click.option(
    "--timeout",
    type=Seconds(min=0.5, max=600),
    default=None,
    help="With --refresh: seconds to wait for the provider (default 15).",
)
@json_option()
@pass_app
def info(app: AppContext, name: str, refresh: bool, timeout: float | None, as_json: bool) -> None:
    """Everything known about VM NAME: provider, resources, SSH, host key, times, status."""
    from requestor.services.views import VMView

    outcome = None
    view: VMView
    if refresh:
        from requestor.services.actions import refreshed_vm

        view, outcome = run_with_services(
            app, lambda services: refreshed_vm(services, name), call_timeout=timeout
        )
    else:
        from requestor.services.local import local_vm

        view = local_vm(app.settings, name, app.run)
    from requestor.cli import render
    from requestor.services.local import provider_can_start

    can_start = provider_can_start(app.settings, view, app.run)
    if as_json:
        render.print_json(render.vm_info_json(view, can_start))
        return
    if outcome is not None and not outcome.ok:
        render.refresh_failed(app.err_console, outcome)
    render.vm_info(app.console, view, can_start)


@vm.command()
@click.argument("provider_vm_name")
@click.option("--name", "local_name", help="Local name (default: the name it was created with).")
@click.option("--provider-id", help="The provider that holds it, if several hold that name.")
@click.option(
    "--scan-advertised",
    is_flag=True,
    help="Look on every provider discovery advertises too (after a lost database).",
)
@json_option()
@pass_app
def adopt(
    app: AppContext,
    provider_vm_name: str,
    local_name: str | None,
    provider_id: str | None,
    scan_advertised: bool,
    as_json: bool,
) -> None:
    """Record an orphan again: a VM this installation created that no record names
    (see 'golem vm list --refresh'). To remove one at its provider, adopt it, then
    'golem vm destroy NAME'."""
    from requestor.cli import render
    from requestor.services.orphans import adopt_vm

    view = run_with_services(
        app,
        lambda services: adopt_vm(
            services, provider_vm_name, local_name, provider_id, advertised=scan_advertised
        ),
    )
    if as_json:
        render.print_json(render.vm_json(view))
        return
    render.adopted(app.console, view)


# --- start, stop, destroy, forget: one selection grammar ----------------------------

SELECTION_HELP = """
\b
Choose VMs (the same way in start, stop, destroy, forget, exec and wait):
  NAME...            exact names or shell globs ('web-*'); each must match a VM
  --all              every VM in local state (not together with names)
  --provider ID      that provider's VMs; with names or --all, only those on it
A selection that matches nothing is an error (exit 2), and nothing is done.
"""


def _selection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
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
        json_option("One JSON object per VM (docs/json.md)."),
    ]
    for option in reversed(options):
        func = option(func)
    return vm_selection(func)


def _act(
    app: AppContext,
    action_name: str,
    names: tuple[str, ...],
    all_vms: bool,
    provider_id: str | None,
    concurrency: int,
    timeout: float | None,
    as_json: bool,
    confirm: Callable[[list[str]], None] | None = None,
    force: bool = False,
    confirm_final_stop: Callable[[list[str], int], None] | None = None,
) -> BulkReport | None:
    """Run one bulk action and render its report; the root group maps the report
    to the exit code (0, 1 all failed, 3 partly failed, 130 interrupted)."""
    from requestor.cli import render
    from requestor.services.actions import Action, BulkReport, act, check_selection

    check_selection(names, all_vms=all_vms, provider_id=provider_id)  # before anything
    action = Action(action_name)
    report = BulkReport(action)
    bar = render.BulkProgress(app.err_console, action.value)

    def selected(chosen: list[str], note: str | None) -> None:
        if note is not None:
            render.selection_note(app.err_console, note)
        if confirm is not None:
            confirm(chosen)
        if not as_json and len(chosen) > 1:
            bar.start(len(chosen))

    try:
        done = run_with_services(
            app,
            lambda services: act(
                services,
                action,
                names,
                report,
                all_vms=all_vms,
                provider_id=provider_id,
                concurrency=concurrency,
                force=force,
                on_selected=selected,
                on_outcome=bar.advance,
                on_final_stop=confirm_final_stop,
            ),
            concurrency=concurrency,
            call_timeout=timeout,
        )
    except Declined:
        # 'n' at the prompt: nothing was touched, as the user chose; not an error.
        if as_json:
            render.print_json([])
        else:
            render.declined(app.err_console, action.value)
        return None
    except KeyboardInterrupt:
        # Ctrl-C: the service stopped, finished its writes and filled the report;
        # show what was done. Before any VM was selected there is nothing to show.
        if not report.interrupted:
            raise
        done = report
    finally:
        bar.stop()
    if done is None:
        render.nothing_selected(app.err_console, as_json)
        return None
    if len(done.outcomes) == 1 and not done.interrupted and not as_json:
        outcome = done.outcomes[0]
        if not outcome.ok:
            raise GolemError(outcome.error or f"{action.value} failed", outcome.hint)
    render.report(app.console, done, as_json)
    return done


@vm.command(help="Start stopped VMs.\n" + SELECTION_HELP)
@_selection_options
@pass_app
def start(app: AppContext, /, **selection: Any) -> BulkReport | None:
    return _act(app, "start", **selection)


@vm.command(
    help="Stop VMs (asks first where the provider cannot start them again; --yes to skip).\n"
    + SELECTION_HELP
)
@_selection_options
@click.option(
    "--yes", "-y", is_flag=True, help="Do not ask before a stop its provider cannot undo."
)
@pass_app
def stop(app: AppContext, /, yes: bool, **selection: Any) -> BulkReport | None:
    # Some providers cannot start a stopped VM again: golem asks first (--yes to skip).
    from requestor.cli.render import confirm_final_stop

    def confirm(final: list[str], selected: int) -> None:
        if not yes:
            confirm_final_stop(final, selected)

    return _act(app, "stop", confirm_final_stop=confirm, **selection)


@vm.command(help="Destroy VMs for good (asks first; --yes to skip).\n" + SELECTION_HELP)
@_selection_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def destroy(app: AppContext, /, yes: bool, **selection: Any) -> BulkReport | None:
    from requestor.cli.render import confirm

    def ask(names: list[str]) -> None:
        if not yes:
            confirm("destroy", names, "This cannot be undone")

    return _act(app, "destroy", confirm=ask, **selection)


@vm.command(
    help="Remove VMs from local state only, once their provider no longer holds them.\n"
    "\n"
    "Each VM's provider is asked first: a VM it still holds, or a provider that does\n"
    "not answer, is refused (destroy it, or --force). Several VMs, a glob, --all or\n"
    "--provider ask for confirmation (--yes to skip).\n" + SELECTION_HELP
)
@_selection_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force",
    is_flag=True,
    help="Forget without asking the providers (each may keep the VM running and billing).",
)
@pass_app
def forget(app: AppContext, /, yes: bool, force: bool, **selection: Any) -> BulkReport | None:
    from requestor.cli.render import confirm
    from requestor.services.actions import is_glob

    # Only one VM named exactly goes without a question.
    wide = bool(
        selection["all_vms"]
        or selection["provider_id"] is not None
        or any(is_glob(name) for name in selection["names"])
    )

    def ask(names: list[str]) -> None:
        if (wide or len(names) > 1) and not yes:
            confirm("forget", names, "golem will no longer track them")

    return _act(app, "forget", confirm=ask, force=force, **selection)
