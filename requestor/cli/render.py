"""How results look: the spec's tables and panels (rich), and ``--json`` output.

Anything a provider or discovery sent goes through ``requestor.text.clean`` and
into ``rich.text.Text``, never into markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from requestor.status import VMStatus
from requestor.text import clean

if TYPE_CHECKING:
    from datetime import datetime

    from rich.status import Status

    from requestor.services.actions import BulkReport, Outcome
    from requestor.services.capabilities import Capabilities
    from requestor.services.config import ConfigReport
    from requestor.services.create import CreateResult
    from requestor.services.create_many import CreateReport
    from requestor.services.db_copy import CopyReport
    from requestor.services.provider_search import ProviderListing
    from requestor.services.views import OrphanView, VMListing, VMView
    from requestor.wire.models import MonthlyPrice, Pricing

RULE_WIDTH = 48
_STATUS_STYLE = {
    VMStatus.RUNNING: "green",
    VMStatus.CREATING: "cyan",
    VMStatus.STOPPING: "yellow",
    VMStatus.STOPPED: "yellow",
    VMStatus.ERROR: "red",
    VMStatus.DELETED: "dim",
    VMStatus.UNREACHABLE: "magenta",
    VMStatus.GONE: "dim red",
}


def safe(value: object, limit: int = 120) -> Text:
    return Text(clean(value, limit))


def _framed(console: Console, title: str, body: RenderableType | None) -> None:
    width = RULE_WIDTH
    if isinstance(body, Table):
        width = max(width, console.measure(body).maximum)
    width = min(width, console.width)
    console.print("─" * width, style="dim")
    console.print(Text(f"  {title}", style="bold"))
    console.print("─" * width, style="dim")
    if body is not None:
        console.print(body)
        console.print("─" * width, style="dim")


def _plain_table(*columns: str, whole: Sequence[str] = ()) -> Table:
    """A borderless table; the ``whole`` columns (names, ids, addresses) are never
    elided: on a terminal too narrow they fold onto a second line instead."""
    table = Table(
        box=None, show_edge=False, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0)
    )
    for column in columns:
        if column in whole:
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, no_wrap=True)
    return table


def resources_text(cpu: int, memory: int, storage: int | None = None) -> str:
    text = f"{cpu} CPU, {memory}GB RAM"
    return text if storage is None else f"{text}, {storage}GB Storage"


def status_text(status: VMStatus) -> Text:
    return Text(f"● {status.value}", style=_STATUS_STYLE.get(status, ""))


# --- providers -------------------------------------------------------------------


UNKNOWN = "unknown"


def _amount(value: float) -> str:
    return f"{value:.2f}" if value >= 0.01 or value == 0 else f"{value:.4f}"


def price_text(price: MonthlyPrice | None, separator: str = " / ") -> str:
    """``12.50 USD / 50.00 GLM``; ``unknown`` when the provider gives no price (never 0)."""
    if price is None:
        return UNKNOWN
    parts = [
        f"{_amount(v)} {unit}"
        for v, unit in ((price.usd, "USD"), (price.glm, "GLM"))
        if v is not None
    ]
    return separator.join(parts) or UNKNOWN


def unit_prices_text(pricing: Pricing | None) -> str:
    """Per core, GB of memory and GB of storage per month, one line per currency given."""
    if pricing is None:
        return UNKNOWN
    parts = []
    for unit in ("usd", "glm"):
        values = [
            getattr(pricing, f"{unit}_per_{what}_month")
            for what in ("core", "gb_ram", "gb_storage")
        ]
        if any(v is not None for v in values):
            shown = "/".join(UNKNOWN if v is None else _amount(v) for v in values)
            parts.append(f"{shown} {unit.upper()}")
    return "\n".join(parts) or UNKNOWN


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _payment_text(capabilities: Capabilities | None) -> Text:
    if capabilities is None:
        return Text("?", style="dim")
    if capabilities.requires_payment:
        return Text("required", style="yellow")
    return Text("no")


def providers(console: Console, listing: ProviderListing) -> None:
    views = listing.providers
    base = ["Provider ID", "Country", "CPU", "Memory", "Storage"]
    extra = ["Price/month", *(["Size/month"] if listing.size is not None else []), "Payment"]
    extra.append("Restart")
    rows: list[tuple[list[Text], list[Text], Text]] = []
    for view in views:
        ad = view.advertisement
        if view.reachable is None:
            state = Text("? not probed", style="dim")
        elif view.reachable:
            state = Text(f"● online {view.latency_ms or 0:.0f} ms", style="green")
        else:
            state = Text("○ offline", style="red")
        resources = [
            safe(ad.provider_id, 200),
            Text(f"🌍 {clean(ad.country or '??', 8)}"),
            Text(f"💻 {ad.resources.cpu}"),
            Text(f"🧠 {ad.resources.memory}GB"),
            Text(f"💾 {ad.resources.storage}GB"),
        ]
        offer = [Text(unit_prices_text(ad.pricing))]
        if listing.size is not None:
            offer.append(Text(price_text(view.size_price(listing.size), "\n")))
        capabilities = view.capabilities
        offer += [
            _payment_text(capabilities),
            Text(_yes_no(None if capabilities is None else capabilities.can_start)),
        ]
        rows.append((resources, offer, state))

    table = _plain_table(*base, *extra, "Status", whole=("Provider ID",))
    for resources, offer, state in rows:
        table.add_row(*resources, *offer, state)
    second: Table | None = None
    natural = console.measure(table, options=console.options.update_width(100_000))
    if natural.maximum > console.width:
        # Too wide for this terminal: the spec's table, then prices and support.
        table = _plain_table(*base, "Status", whole=("Provider ID",))
        second = _plain_table("Provider ID", *extra)
        for resources, offer, state in rows:
            table.add_row(*resources, state)
            second.add_row(resources[0], *offer)
    shown = (
        f"{len(views)} total" if listing.total <= len(views) else f"{len(views)} of {listing.total}"
    )
    _framed(console, f"🌍 Available Providers ({shown})", table)
    if second is not None:
        console.print(second)
        console.print("─" * min(console.measure(second).maximum, console.width), style="dim")
    if not views:
        console.print(
            "No provider matches these filters. Ask for less (fewer CPU, memory or storage, "
            "another --country, no --reachable-only), or try again later."
            if listing.filtered
            else "No provider advertises right now. Try again later, or check "
            "GOLEM_REQUESTOR_DISCOVERY_URL ('golem config show').",
            style="dim",
        )
    if views:
        size = "" if listing.size is None else f" Size/month: {resources_text(*listing.size)}."
        console.print(
            Text(
                f"Price/month: per core/GB RAM/GB storage.{size} Payment: required means "
                "golem cannot use it yet. Restart: whether a stopped VM can run again.",
                style="dim",
            )
        )
    for view in views:
        if view.reachable is False:
            console.print(
                Text(f"{clean(view.advertisement.provider_id, 66)}: ", style="dim")
                + Text(clean(view.error or "no answer", 120), style="dim")
            )


def price_json(price: MonthlyPrice | None) -> dict[str, float | None] | None:
    return None if price is None else {"usd": price.usd, "glm": price.glm}


def providers_json(listing: ProviderListing) -> list[dict[str, Any]]:
    rows = []
    for v in listing.providers:
        capabilities = v.capabilities
        rows.append(
            {
                "provider_id": v.advertisement.provider_id,
                "ip_address": v.advertisement.ip_address,
                "country": v.advertisement.country,
                "resources": v.advertisement.resources.model_dump(),
                "reachable": v.reachable,
                "latency_ms": None if v.latency_ms is None else round(v.latency_ms, 1),
                "error": v.error,
                "updated_at": _iso(v.advertisement.updated_at),
                "pricing": (
                    None
                    if v.advertisement.pricing is None
                    else v.advertisement.pricing.model_dump()
                ),
                "size_price": (
                    None if listing.size is None else price_json(v.size_price(listing.size))
                ),
                "generation": None if capabilities is None else capabilities.generation,
                "requires_payment": None if capabilities is None else capabilities.requires_payment,
                "can_start_stopped": None if capabilities is None else capabilities.can_start,
            }
        )
    return rows


# --- VMs -------------------------------------------------------------------------


def rejected_ads(err_console: Console, listing: ProviderListing) -> None:
    if listing.rejected:
        err_console.print(
            f"[yellow]Skipped {len(listing.rejected)} advertisement(s) that do not fit "
            "the contract.[/]"
        )


def names_only(names: Iterable[str]) -> None:
    """-q: one name a line, nothing else (for `xargs`, `while read`)."""
    for name in names:
        console_line(clean(name, 200))


def owner_text(vm: VMView) -> str:
    """``user@host`` of the VM's creator; "-" when golem did not record one."""
    if vm.created_by_user is None:
        return "-"
    return f"{vm.created_by_user}@{vm.created_by_host or '?'}"


def vm_list(
    console: Console,
    vms: Sequence[VMView],
    orphans: Sequence[OrphanView] = (),
    filtered: bool = False,
    *,
    owners: bool = False,
) -> None:
    """The VMs' table; ``owners`` (team mode) adds whose each one is."""
    columns = ["Name", "Status", "IP Address", "Resources"] + (["Owner"] if owners else [])
    table = _plain_table(*columns, whole=("Name", "IP Address"))
    for vm in vms:
        table.add_row(
            safe(vm.name, 200),
            status_text(vm.status),
            safe(vm.ssh_host or vm.provider_ip, 200),
            Text(resources_text(vm.cpu, vm.memory)),
            *([safe(owner_text(vm), 330)] if owners else []),
        )
    for orphan in orphans:
        # No local name: the provider and its name for the VM are how to find it.
        table.add_row(
            safe(f"{orphan.provider_id or orphan.provider_ip}:{orphan.provider_vm_name}", 120),
            Text("● orphan", style="bold red"),
            safe(orphan.provider_ip, 64),
            Text(resources_text(orphan.cpu or 0, orphan.memory or 0)),
            *([Text("-")] if owners else []),
        )
    _framed(console, f"📋 Your VMs ({len(vms)} total)", table)
    if not vms and not orphans and filtered:
        console.print("No VM matches these filters; 'golem vm list' shows them all.", style="dim")
    elif not vms and not orphans:
        console.print(
            "No VMs yet. Create one with 'golem vm create NAME --cpu 1 --memory 1 --storage 10'.",
            style="dim",
        )


def vm_listing(
    console: Console,
    err_console: Console,
    listing: VMListing,
    as_json: bool,
    refresh: BulkReport | None = None,
    *,
    quiet: bool = False,
    filtered: bool = False,
) -> None:
    """``golem vm list``: the table (and notes on unreadable legacy rows and on
    orphans), JSON (orphans after the VMs), or (-q) the names alone; with
    ``refresh``, each provider whose answer could not be used first, on stderr."""
    if refresh is not None:
        refresh_failures(err_console, refresh)
    if as_json:
        print_json(vm_list_json(listing.vms, refresh) + [orphan_json(o) for o in listing.orphans])
        return
    if quiet:
        names_only(vm.name for vm in listing.vms)
        return
    legacy_rejected(err_console, listing)
    vm_list(console, listing.vms, listing.orphans, filtered=filtered, owners=listing.shared)
    orphans_note(err_console, listing)


def orphans_note(err_console: Console, listing: VMListing) -> None:
    """How to resolve the orphan rows, and the providers whose VMs could not be listed."""
    if listing.orphans:
        first = listing.orphans[0].provider_vm_name
        err_console.print(
            Text(
                f"{len(listing.orphans)} orphan VM(s): created by this installation, held by "
                "their provider, with no local record. Record one again with "
                f"'golem vm adopt {first}', then keep it or 'golem vm destroy' it.",
                style="yellow",
            )
        )
    for provider, reason in listing.orphan_scan_failed:
        err_console.print(
            Text(f"Could not look for orphans on provider {clean(provider, 80)}: ", style="yellow")
            + Text(clean(reason, 200))
        )


def orphan_json(orphan: OrphanView) -> dict[str, Any]:
    """An orphan row in ``list --refresh --json`` (keys in docs/json.md)."""
    return {
        "name": None,
        "status": "orphan",
        "provider_id": orphan.provider_id,
        "provider_ip": orphan.provider_ip,
        "provider_vm_name": orphan.provider_vm_name,
        "provider_status": orphan.status,
        "suggested_name": orphan.suggested_name,
        "ssh_port": orphan.ssh_port,
        "resources": {"cpu": orphan.cpu, "memory": orphan.memory, "storage": orphan.storage},
    }


def adopted(console: Console, vm: VMView) -> None:
    console.print(
        Text(f"Adopted {vm.provider_vm_name} as {vm.name} ({vm.status.value}). ")
        + Text(
            f"Connect with 'golem vm ssh {vm.name}', or remove it with "
            f"'golem vm destroy {vm.name}'."
        )
    )


def legacy_rejected(err_console: Console, listing: VMListing) -> None:
    """A note on stderr when rows of the earlier golem could not be adopted."""
    if listing.rejected_legacy:
        err_console.print(
            Text(
                f"{listing.rejected_legacy} VM record(s) from the earlier golem could not be "
                f"read; they are kept in the table legacy_rejected_vms of {listing.db_path}.",
                style="yellow",
            )
        )


def vm_json(vm: VMView) -> dict[str, Any]:
    """One VM as ``--json`` shows it; the keys are documented in docs/json.md."""
    from requestor.ssh.hostkeys import fingerprint

    return {
        "name": vm.name,
        "status": vm.status.value,
        "provider_id": vm.provider_id,
        "provider_ip": vm.provider_ip,
        "provider_vm_name": vm.provider_vm_name,
        "ip_address": vm.ssh_host or vm.provider_ip,
        "ssh_port": vm.ssh_port,
        "ssh_user": vm.ssh_user,
        "ssh_key_path": vm.ssh_key_path,
        "host_key_fingerprint": fingerprint(vm.host_key) if vm.host_key else None,
        "resources": {"cpu": vm.cpu, "memory": vm.memory, "storage": vm.storage},
        "last_error": vm.last_error,
        "created_at": _iso(vm.created_at),
        "updated_at": _iso(vm.updated_at),
        "owner": (
            None
            if vm.created_by_user is None
            else {"user": vm.created_by_user, "host": vm.created_by_host}
        ),
        "last_actor": vm.last_actor,
        "last_action": vm.last_action,
        "last_action_at": _iso(vm.last_action_at),
    }


def vm_list_json(vms: Sequence[VMView], refresh: BulkReport | None) -> list[dict[str, Any]]:
    """``vm list --json``: each VM, and whether this command's --refresh got an answer
    for it (``refreshed``) or why not (``refresh_error``)."""
    outcomes = {o.name: o for o in refresh.outcomes} if refresh is not None else {}
    listed = []
    for vm in vms:
        outcome = outcomes.get(vm.name)
        listed.append(
            {
                **vm_json(vm),
                # A VM another golem was acting on was not asked about.
                "refreshed": outcome is not None
                and outcome.ok
                and outcome.result.value != "handled_elsewhere",
                "refresh_error": None if outcome is None or outcome.ok else outcome.error,
            }
        )
    return listed


def refresh_failures(err_console: Console, refresh: BulkReport) -> None:
    """Each provider whose answer could not be used, with the reason, on stderr."""
    failed: dict[str, list[Outcome]] = {}
    for outcome in refresh.outcomes:
        if not outcome.ok:
            failed.setdefault(outcome.provider, []).append(outcome)
    for provider, outcomes in sorted(failed.items()):
        names = ", ".join(clean(o.name, 64) for o in outcomes[:5])
        if len(outcomes) > 5:
            names += ", …"
        err_console.print(
            Text(
                f"Not refreshed: provider {clean(provider, 80)} ({len(outcomes)} VM(s): {names}):"
                f" {clean(outcomes[0].error or outcomes[0].result.value, 300)}",
                style="yellow",
            )
        )
    if failed:
        err_console.print(
            Text(
                "Their VMs are shown as unreachable: golem does not know their current status."
                " Run 'golem vm list --refresh' again later.",
                style="yellow",
            )
        )


def _section(console: Console, title: str, rows: Iterable[tuple[str, str]]) -> None:
    console.print()
    console.print(Text(f"  {title}", style="bold"))
    console.print(Text("  " + "┈" * 27, style="dim"))
    for label, value in rows:
        console.print(Text(f"  {label}: ") + Text(value))


def created_json(result: CreateResult) -> dict[str, Any]:
    return {
        **vm_json(result.vm),
        "choice_reason": result.choice_reason,
        "price_per_month": price_json(result.price),
    }


def provider_choice(err_console: Console, result: CreateResult) -> None:
    """Why golem picked the provider (only when the user did not name one)."""
    if result.choice_reason:
        err_console.print(
            Text(
                f"Picked provider {clean(result.provider.provider_id, 66)}: {result.choice_reason}."
            )
        )


def deployed(console: Console, result: CreateResult) -> None:
    vm = result.vm
    host, port = vm.ssh_host or vm.provider_ip, vm.ssh_port
    key = _home_relative(vm.ssh_key_path or "~/.golem/ssh/id_ed25519")
    console.print("─" * RULE_WIDTH, style="dim")
    console.print(Text("  🎉 VM Deployed Successfully!", style="bold green"))
    console.print("─" * RULE_WIDTH, style="dim")
    _section(
        console,
        "VM Details",
        [
            ("🏷️  Name     ", clean(vm.name, 64)),
            ("💻 Resources ", resources_text(vm.cpu, vm.memory, vm.storage)),
            ("💰 Price     ", f"{price_text(result.price)} per month"),
            ("🟢 Status    ", vm.status.value),
        ],
    )
    _section(
        console,
        "Connection Details",
        [
            ("🌐 IP Address", clean(host, 64)),
            ("🔌 Port      ", str(port)),
        ],
    )
    _section(
        console,
        "Quick Connect",
        [
            ("🔑 SSH Command ", f"ssh -i {key} -p {port} {vm.ssh_user}@{clean(host, 64)}"),
            ("💡 Or simply   ", f"golem vm ssh {vm.name}"),
        ],
    )
    console.print("─" * RULE_WIDTH, style="dim")


def _home_relative(path: str) -> str:
    from pathlib import Path

    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + "/") else path


# --- actions on several VMs --------------------------------------------------------

_PAST = {
    "start": "Started",
    "stop": "Stopped",
    "destroy": "Destroyed",
    "refresh": "Refreshed",
    "forget": "Forgot",
    "grant": "Granted",
    "revoke": "Revoked",
}


def console_line(text: str) -> None:
    """A plain line on stdout (no markup, no wrapping)."""
    import click

    click.echo(text)


class Busy:
    """While a long call runs: a spinner on stderr at a terminal (``update(text)``
    changes its line); elsewhere (a log, a CI job, a pipe) each step is one plain
    line on stderr, so what the command waited for is still said."""

    def __init__(self, err_console: Console, text: str) -> None:
        import sys

        self._console = err_console
        self._text = text
        self._status: Status | None = None
        self._plain = not sys.stderr.isatty()

    def __enter__(self) -> Busy:
        if self._plain:
            self._say(self._text)
        else:
            self._status = self._console.status(self._text)
            self._status.start()
        return self

    def update(self, text: str) -> None:
        if self._status is not None:
            self._status.update(text)
        elif text != self._text:
            self._say(text)
        self._text = text

    def __exit__(self, *_exc: object) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    @staticmethod
    def _say(text: str) -> None:
        console_line_err(text)


def console_line_err(text: str) -> None:
    """A plain line on stderr; ``text`` is cleaned (it may name a provider)."""
    import click

    click.echo(clean(text, 300), err=True)


def busy(err_console: Console, text: str) -> Busy:
    """See ``Busy``."""
    return Busy(err_console, text)


def confirm(action: str, names: Sequence[str], consequence: str) -> None:
    """Ask before destroying or forgetting (stderr), or refuse when stdin is not a
    terminal."""
    import sys

    import click

    from requestor.errors import Declined, InputError

    count = len(names)
    shown = ", ".join(clean(n, 64) for n in names[:5]) + (", …" if count > 5 else "")
    if not sys.stdin.isatty():
        raise InputError(
            f"Refusing to {action} {count} VM(s) ({shown}) without confirmation",
            "Pass --yes to confirm when not at a terminal.",
        )
    if not click.confirm(
        f"{action.capitalize()} {count} VM(s) ({shown})? {consequence}", default=False, err=True
    ):
        raise Declined


# "Nothing destroyed.", "Nothing forgotten." (not "forgot"): the participle.
_DONE = {**{action: past.lower() for action, past in _PAST.items()}, "forget": "forgotten"}


def declined(err_console: Console, action: str) -> None:
    err_console.print(f"Nothing {_DONE[action]}.")


def confirm_final_stop(final: Sequence[str], selected: int) -> None:
    """Ask before a stop that cannot be undone (stderr), or refuse when stdin is
    not a terminal: the provider of each VM in ``final`` cannot start it again."""
    import sys

    import click

    from requestor.errors import GolemError, InputError

    count = len(final)
    shown = ", ".join(clean(n, 64) for n in final[:5]) + (", …" if count > 5 else "")
    what = (
        f"{count} of the {selected} selected VMs ({shown}) are" if selected > 1 else f"{shown} is"
    )
    warning = (
        f"{what} on a provider that cannot start a stopped VM: once stopped, "
        f"{'they' if count > 1 else 'it'} can never run again"
    )
    if not sys.stdin.isatty():
        raise InputError(
            f"Refusing to stop without confirmation: {warning}",
            "Pass --yes to confirm when not at a terminal, or destroy the VM when done with it.",
        )
    if not click.confirm(f"{warning}. Stop anyway?", default=False, err=True):
        raise GolemError("Nothing stopped.")


def nothing_selected(err_console: Console, as_json: bool) -> None:
    if as_json:
        print_json([])
    else:
        err_console.print("No VMs selected.")


def selection_note(err_console: Console, note: str) -> None:
    err_console.print(Text(note))


_ING = {
    "start": "Starting",
    "stop": "Stopping",
    "destroy": "Destroying",
    "refresh": "Refreshing",
    "create": "Creating",
    "wait": "Waiting",
    "forget": "Forgetting",
}


class _Finished(Protocol):
    """One VM's outcome, as far as progress counts it."""

    @property
    def ok(self) -> bool: ...


class BulkProgress:
    """A transient bar on stderr while many VMs are handled; started when the
    selection is known (``start``), advanced per outcome."""

    def __init__(self, err_console: Console, action: str) -> None:
        self._console = err_console
        self._action = action
        self._progress: Any = None
        self._task: Any = None
        self._failed = 0

    def start(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            console=self._console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(_ING[self._action], total=total, failed=0)

    def advance(self, outcome: _Finished) -> None:
        if self._progress is None:
            return
        self._failed += 0 if outcome.ok else 1
        self._progress.update(self._task, advance=1, failed=self._failed)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class _Action(Protocol):
    @property
    def value(self) -> str: ...


class ReportOfVMs(Protocol):
    """A report of one action on many VMs, each with an ``Outcome``: a bulk action's
    (``BulkReport``) or a grant's (``services/grants.py:GrantReport``)."""

    @property
    def action(self) -> _Action: ...
    @property
    def outcomes(self) -> Sequence[Outcome]: ...
    @property
    def interrupted(self) -> bool: ...
    @property
    def seconds(self) -> float: ...
    @property
    def succeeded(self) -> int: ...
    @property
    def failed(self) -> int: ...


def report(console: Console, report: ReportOfVMs, as_json: bool) -> None:
    """A bulk action's result: one line for one VM, else a table and a summary."""
    if as_json:
        print_json([outcome_json(o) for o in report.outcomes])
    elif len(report.outcomes) == 1 and not report.interrupted:
        single_outcome(console, report.outcomes[0], report.action.value)
    else:
        bulk(console, report)


def single_outcome(console: Console, outcome: Outcome, action: str) -> None:
    if outcome.result.value == "handled_elsewhere":
        what = clean(outcome.note or "by another golem", 200)
        console.print(
            Text(f"✓ {clean(outcome.name, 64)}: handled elsewhere ({what})", style="green")
        )
        return
    mark = "✓" if outcome.ok else "✗"
    already = " (already)" if outcome.result.value == "already" else ""
    note = f": {outcome.note}" if outcome.note else ""
    console.print(
        Text(
            f"{mark} {_PAST[action]} {clean(outcome.name, 64)}{already}{note}",
            style="green" if outcome.ok else "red",
        )
    )


def bulk(console: Console, report: ReportOfVMs) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("Name", "Provider", "Result", "Status", "Error"):
        table.add_column(column, overflow="fold")
    style = {
        "done": "green",
        "already": "green",
        "handled_elsewhere": "cyan",
        "failed": "red",
        "cancelled": "yellow",
    }
    for outcome in sorted(report.outcomes, key=lambda o: (o.ok, o.name)):
        table.add_row(
            safe(outcome.name, 64),
            safe(outcome.provider, 40),
            Text(outcome.result.value.replace("_", " "), style=style[outcome.result.value]),
            Text(outcome.status.value if outcome.status else "removed"),
            safe(outcome.error or outcome.note or "", 200),
        )
    console.print(table)
    console.print(summary_line(report))


def summary_line(report: ReportOfVMs) -> Text:
    verb = _PAST[report.action.value].lower()
    elsewhere = sum(1 for o in report.outcomes if o.result.value == "handled_elsewhere")
    text = Text(f"{report.action.value}: {report.succeeded - elsewhere} {verb}", style="bold")
    if elsewhere:
        text.append(f", {elsewhere} handled elsewhere", style="bold cyan")
    if report.failed:
        text.append(f", {report.failed} failed", style="bold red")
    text.append(f" of {len(report.outcomes)} in {report.seconds:.2f} s")
    if report.interrupted:
        text.append(" (interrupted)", style="yellow")
    return text


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "provider_id": outcome.provider,
        "result": outcome.result.value,
        "ok": outcome.ok,
        "status": outcome.status.value if outcome.status else None,
        "error": outcome.error,
        "provider_vm_name": outcome.provider_vm_name,
        "note": outcome.note,
        "handled_by": outcome.handled_by,
    }


def dump_json(data: Any) -> str:
    import json  # only for --json: a table does not need it

    # ASCII only: provider-sent text with control, C1 or bidi characters stays
    # escaped (\uXXXX) in a file that someone may later `cat` to a terminal.
    return json.dumps(data, indent=2, ensure_ascii=True)


def print_json(data: Any) -> None:
    """``--json`` output: the document alone on stdout (keys: docs/json.md)."""
    console_line(dump_json(data))


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


# --- config show -------------------------------------------------------------------


def config_report(console: Console, report: ConfigReport) -> None:
    settings = _plain_table("Setting", "Value", "Source", whole=("Value",))
    for item in report.settings:
        where = item.source
        if item.derived_from:
            where = f"default (inside {item.derived_from})"
        elif item.source == "environment":
            where = f"environment ({item.variable})"
        settings.add_row(item.name, safe(item.value, 2000), where)
    _framed(console, "⚙️  Settings", settings)
    paths = _plain_table("Path", "Location", "Exists", "Note", whole=("Location",))
    for path in report.paths:
        paths.add_row(path.what, safe(path.path, 2000), "yes" if path.exists else "no", path.note)
    _framed(console, "📁 Paths in use", paths)


def config_json(report: ConfigReport) -> dict[str, Any]:
    return {
        "settings": {
            item.name: {
                "value": item.value,
                "source": item.source,
                "variable": item.variable,
                "derived_from": item.derived_from,
            }
            for item in report.settings
        },
        "paths": [
            {"what": p.what, "path": p.path, "exists": p.exists, "note": p.note or None}
            for p in report.paths
        ],
    }


# --- db copy ---------------------------------------------------------------------

_COPY_ROWS = (
    ("VMs", "vms"),
    ("providers", "providers"),
    ("provider capabilities", "provider_capabilities"),
    ("user keys", "user_keys"),
    ("VM grants", "vm_grants"),
    ("legacy rejected rows", "legacy_rejected_vms"),
)
_CONFLICT_REASON = {"name": "same name", "provider_vm_name": "the same VM at its provider"}


def copy_report(console: Console, report: CopyReport) -> None:
    """What was copied (or would be), where, and what to do next; a dry run's
    conflicts one a line."""
    if report.dry_run:
        console.print(safe(f"Dry run, nothing changed: a copy to {report.target} would copy", 2000))
    else:
        console.print(safe(f"Copied to {report.target}", 2000))
    console.print(safe(f"  from {report.source} (only read)", 2000))
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    for _ in range(3):
        table.add_column(no_wrap=True)
    for label, key in _COPY_ROWS:
        there = getattr(report.already_there, key, 0)
        note = f"({there} already there: merged)" if there else ""
        table.add_row(f"  {label}", str(getattr(report.counts, key)), note)
    schema = {"created": "created", "upgraded": "upgraded first", "current": "current"}
    table.add_row("  schema", schema[report.schema], "")
    console.print(table)
    if report.owner_assigned:
        names = ", ".join(report.owner_assigned[:10])
        if len(report.owner_assigned) > 10:
            names += f" and {len(report.owner_assigned) - 10} more"
        count = len(report.owner_assigned)
        verb = "get" if report.dry_run else "got"
        console.print(
            safe(
                f"{count} VM{'s' if count != 1 else ''} recorded before golem kept owners"
                f" {verb} {report.owner} as owner there: {names}",
                2000,
            )
        )
    if report.conflicts:
        console.print(
            Text(
                f"The copy would be refused: {len(report.conflicts)} VM(s) already there",
                style="bold red",
            )
        )
        conflicts = _plain_table("  VM", "conflict", "there as", whole=("  VM", "there as"))
        for conflict in report.conflicts:
            conflicts.add_row(
                safe(f"  {conflict.name}", 80),
                _CONFLICT_REASON[conflict.reason],
                safe(conflict.existing, 80),
            )
        console.print(conflicts)
        return
    console.print(safe(f"Next: {report.next_step}", 2000))


def copy_json(report: CopyReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "target": report.target,
        "target_backend": report.target_backend,
        "dry_run": report.dry_run,
        "copied": not report.dry_run,
        "counts": {key: getattr(report.counts, key) for _, key in _COPY_ROWS},
        "already_there": {
            key: getattr(report.already_there, key)
            for _, key in _COPY_ROWS
            if hasattr(report.already_there, key)
        },
        "schema": report.schema,
        "owner_assigned": {"user": report.owner, "vms": list(report.owner_assigned)},
        "conflicts": [
            {"name": c.name, "reason": c.reason, "existing": c.existing} for c in report.conflicts
        ],
        "next_step": None if report.conflicts else report.next_step,
    }


# --- several creates in one command -------------------------------------------------


def created_many(console: Console, report: CreateReport) -> None:
    """One row per VM (in the order given), then the counts."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("Name", "Provider", "Result", "SSH", "Error"):
        table.add_column(column, overflow="fold")
    for outcome in report.outcomes:
        ssh = ""
        if outcome.result is not None:
            vm = outcome.result.vm
            ssh = f"{vm.ssh_user}@{vm.ssh_host or vm.provider_ip}:{vm.ssh_port}"
        table.add_row(
            safe(outcome.name, 64),
            safe(outcome.provider, 66),
            Text("created", style="green") if outcome.ok else Text("failed", style="red"),
            safe(ssh, 100),
            safe(outcome.error or "", 300),
        )
    console.print(table)
    text = Text(f"create: {report.succeeded} created", style="bold")
    if report.failed:
        text.append(f", {report.failed} failed", style="bold red")
    text.append(f" of {len(report.outcomes)} in {report.seconds:.2f} s")
    console.print(text)


def created_many_json(report: CreateReport) -> list[dict[str, Any]]:
    """One object per VM: the VM (as ``create --json``) plus ``ok`` and ``error``,
    or, for a VM that was not created, its name, provider, ``ok`` and ``error``."""
    entries: list[dict[str, Any]] = []
    for outcome in report.outcomes:
        if outcome.result is not None:
            entries.append({**created_json(outcome.result), "ok": True, "error": None})
        else:
            entries.append(
                {
                    "name": outcome.name,
                    "provider_id": outcome.provider,
                    "ok": False,
                    "error": outcome.error,
                    "hint": outcome.hint,
                }
            )
    return entries


def create_line(name: str, text: str) -> None:
    """One plain line on stderr about one VM of several (when stderr is not a terminal)."""
    import click

    click.echo(f"{clean(name, 64)}: {clean(text, 300)}", err=True)


# --- one VM in full -----------------------------------------------------------------


def vm_info_json(vm: VMView, can_start: bool | None = None) -> dict[str, Any]:
    """``vm info --json``: ``vm_json``'s keys plus the SSH host on its own and
    whether its provider can start it again once stopped (null: not known)."""
    return {**vm_json(vm), "ssh_host": vm.ssh_host, "can_start_stopped": can_start}


def vm_info(console: Console, vm: VMView, can_start: bool | None = None) -> None:
    from requestor.ssh.hostkeys import fingerprint

    def when(value: datetime) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")

    ssh = "not known yet (its create did not finish)"
    if vm.ssh_port is not None:
        ssh = f"{vm.ssh_user}@{vm.ssh_host or vm.provider_ip} port {vm.ssh_port}"
    rows = [
        ("Status", status_text(vm.status)),
        ("Provider", safe(vm.provider_id or "(adopted from the earlier golem: no id)", 200)),
        ("Provider address", safe(vm.provider_ip, 100)),
        ("Name at provider", safe(vm.provider_vm_name, 200)),
        ("Resources", Text(resources_text(vm.cpu, vm.memory, vm.storage))),
        ("SSH", safe(ssh, 200)),
        ("SSH key", safe(vm.ssh_key_path or "(none recorded)", 500)),
        (
            "Host key",
            Text(fingerprint(vm.host_key) if vm.host_key else "not pinned yet (first connection)"),
        ),
        ("Created", Text(when(vm.created_at))),
        ("Updated", Text(when(vm.updated_at))),
        ("Owner", safe(owner_text(vm) if vm.created_by_user else "not recorded", 330)),
        ("Last action", safe(last_action_text(vm), 400)),
        ("Last error", safe(vm.last_error or "none", 1000)),
        (
            "Restart",
            Text(
                {True: "its provider can start it again once stopped", None: "not known"}.get(
                    can_start, "no: its provider cannot start a stopped VM (a stop is final)"
                )
            ),
        ),
    ]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in rows:
        table.add_row(label, value)
    _framed(console, f"VM {clean(vm.name, 64)}", table)


def last_action_text(vm: VMView, now: datetime | None = None) -> str:
    """'stop by bob@ci 3 min ago'; 'not recorded' when golem kept none."""
    if vm.last_action is None:
        return "not recorded"
    text = vm.last_action
    if vm.last_actor is not None:
        text += f" by {vm.last_actor}"
    if vm.last_action_at is not None:
        text += " " + ago(vm.last_action_at, now)
    return text


def ago(moment: datetime, now: datetime | None = None) -> str:
    """How long ago, roughly: "just now", "42 s ago", "3 min ago", "5 h ago", "2 days ago"."""
    from datetime import UTC
    from datetime import datetime as clock

    if now is None:
        now = clock.now(UTC)
    if moment.tzinfo is None:  # the database's naive times are UTC
        moment = moment.replace(tzinfo=UTC)
    seconds = int((now - moment).total_seconds())
    if seconds < 1:
        return "just now"
    for unit, size in (("day", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return f"{seconds} s ago"


def refresh_failed(err_console: Console, outcome: Outcome) -> None:
    """--refresh could not reach the provider: what is shown is the last known state."""
    err_console.print(
        Text(
            f"Warning: {clean(outcome.error or 'the refresh failed', 300)}; "
            "showing the last known state."
        )
    )
