"""``golem devnet``: a local network (discovery + providers + VMs) on loopback.

golem's root group loads this module lazily (``golem_devnet.cli:devnet``), and
``golem --help`` loads it for the one-line help, so the top imports only click,
the standard library, the plain route table and golem's light modules (its click
context and errors); aiohttp, asyncssh, pydantic and rich load inside the commands
that use them. Errors are raised as golem's errors: golem's root group alone turns
them into messages and exit codes.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from golem_devnet.routes import ROUTE_NAMES, ROUTE_PATHS, route_name
from requestor.cli.context import AppContext, console_width
from requestor.cli.lazy import LazyGroup
from requestor.cli.params import json_option
from requestor.errors import GolemError, InputError

if TYPE_CHECKING:
    from golem_devnet.current import CurrentOptions
    from golem_devnet.faults import Faults
    from golem_devnet.network import Devnet

DEFAULT_DISCOVERY_URL = "http://127.0.0.10:9001"
_SUMMARY_ROWS = 20
F = TypeVar("F", bound=Callable[..., Any])


def default_state_dir() -> Path:
    base = os.environ.get("GOLEM_REQUESTOR_BASE_DIR")
    return Path(base).expanduser() / "devnet" if base else Path.home() / ".golem" / "devnet"


# --- the fault flags, declared once for `up` and `fault` -------------------------------


class RouteType(click.ParamType[str]):
    """A provider route by name (``create``) or as the wire contract writes it
    (``'POST /vms'``); the value is the name."""

    name = "route"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "ROUTE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return route_name(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


@dataclass(frozen=True)
class FaultFlag:
    """One fault option; ``field`` is the ``Faults`` field it sets (a test checks)."""

    field: str
    flag: str
    what: str  # what it does to a provider's API, as a predicate
    type: click.ParamType[Any] | None = None  # None: an on/off fault
    default: Any = None
    repeatable: bool = False

    @property
    def switch(self) -> bool:
        return self.type is None


# faults.GARBAGE_SSH_MODES, spelled out so the CLI's help loads no pydantic (a test checks).
GARBAGE_SSH_CHOICES = ("non-ascii", "close", "silent")
FAULT_FLAGS: tuple[FaultFlag, ...] = (
    FaultFlag("latency_ms", "--latency-ms", "delays every answer by this much",
              click.IntRange(0, 600_000), 0),
    FaultFlag("error_rate", "--error-rate", 'answers this share of requests with 500 '
              '"Injected fault"', click.FloatRange(0.0, 1.0), 0.0),
    FaultFlag("boot_delay_s", "--boot-delay", "brings a new VM's SSH up this many seconds "
              "late", click.FloatRange(0.0, 3600.0), 0.0),
    FaultFlag("missing_routes", "--missing-route", "answers ROUTE 404/405 as if absent",
              RouteType(), (), repeatable=True),
    FaultFlag("hold", "--hold", "parks requests on ROUTE, unanswered, until its faults "
              "change", RouteType(), (), repeatable=True),
    FaultFlag("offline", "--offline", "refuses API connections"),
    FaultFlag("hang", "--hang", "accepts API requests and never answers"),
    FaultFlag("malformed_json", "--malformed-json", "answers truncated JSON"),
    FaultFlag("oversized_body", "--oversized-body", "answers 64 MiB bodies"),
    FaultFlag("create_then_fail", "--create-then-fail", "creates a VM, then answers 500"),
    FaultFlag("delete_fails", "--delete-fails", "answers DELETE 500 and keeps the VM"),
    FaultFlag("garbage_ssh", "--garbage-ssh", "makes VMs' SSH ports speak garbage: "
              "non-ascii (version line), close (mid key exchange) or silent",
              click.Choice(GARBAGE_SSH_CHOICES), None),
)  # fmt: skip
ROUTES_HELP = (
    "ROUTE: a route's name or path, "
    + ", ".join(f"{name} ('{ROUTE_PATHS[name]}')" for name in ROUTE_NAMES)
    + "."
)


def fault_options(*, switches_name_providers: bool) -> Callable[[F], F]:
    """Add every fault flag to a command, which gets them as one ``faults`` dict
    (field name -> value).

    For ``fault`` they describe the chosen providers. For ``up`` a valued flag
    applies to every provider, and an on/off one instead names the providers it
    applies to (``--offline devnet-provider-02``, repeatable).
    """

    def option(flag: FaultFlag) -> Callable[[F], F]:
        if flag.switch and switches_name_providers:
            return click.option(
                flag.flag,
                flag.field,
                metavar="PROVIDER_ID",
                multiple=True,
                help=f"A provider that {flag.what} (repeatable).",
            )
        if flag.switch:
            return click.option(
                flag.flag, flag.field, is_flag=True, help=f"The provider {flag.what}."
            )
        repeat = " (repeatable)" if flag.repeatable else ""
        where = "Every provider" if switches_name_providers else "The provider"
        return click.option(
            flag.flag,
            flag.field,
            type=flag.type,
            default=flag.default,
            multiple=flag.repeatable,
            help=f"{where} {flag.what}{repeat}.",
        )

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def with_faults(*args: Any, **kwargs: Any) -> Any:
            faults = {flag.field: kwargs.pop(flag.field) for flag in FAULT_FLAGS}
            return command(*args, faults=faults, **kwargs)

        decorated: Any = with_faults
        for flag in reversed(FAULT_FLAGS):
            decorated = option(flag)(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate


@click.group(cls=LazyGroup)
def devnet() -> None:
    """Run a local Golem network on loopback: discovery, providers and VMs, no internet.

    A devnet VM is not isolated: its shell runs as you, on this machine.
    """


# --- up ----------------------------------------------------------------------------------


@devnet.command(epilog=ROUTES_HELP)
@click.option(
    "--providers",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="How many provider nodes to start.",
)
@click.option(
    "--localhost",
    is_flag=True,
    help="One provider on 127.0.0.1:7466, where 'localhost' leads, with its VMs' SSH "
    "on 127.0.0.1: for GOLEM_REQUESTOR_FORCE_LOCALHOST=true (source .env.dev).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where VM folders and the env file go "
    "[default: $GOLEM_REQUESTOR_BASE_DIR/devnet or ~/.golem/devnet].",
)
@click.option(
    "--discovery-port",
    type=click.IntRange(0, 65535),
    default=9001,
    show_default=True,
    help="Port of the discovery service on 127.0.0.10 (0: any).",
)
@click.option(
    "--base-address",
    default="127.0.0.11",
    hidden=True,
    help="Loopback address of the first provider.",
)
@click.option(
    "--ad-ttl",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    help="Seconds an advertisement stays listed without a refresh.",
)
@click.option(
    "--capacity-scale",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Multiply every provider's CPU, memory and storage (room for many VMs).",
)
@fault_options(switches_name_providers=True)
@click.option(
    "--fault",
    "fault_specs",
    metavar="PROVIDER_ID:KEY=VALUE",
    multiple=True,
    help="Any fault for one provider, e.g. devnet-provider-02:latency_ms=500 (repeatable).",
)
@click.option(
    "--current",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="How many providers (the last ones) speak the current provider generation: "
    "async create, /provider/info, /summary, pricing, stop but no start.",
)
@click.option(
    "--payments",
    metavar="PROVIDER_ID",
    multiple=True,
    help="Current provider that requires a payment stream: create without stream_id is "
    "refused (repeatable).",
)
@click.option(
    "--job-delay",
    type=click.FloatRange(0.0, 3600.0),
    default=0.0,
    help="Seconds an async create job stays 'creating' on current providers.",
)
@click.option(
    "--ssh-proxy-delay",
    type=click.FloatRange(0.0, 3600.0),
    default=0.0,
    help="Seconds a new VM on a current provider runs with ssh_port null (access 202).",
)
@click.option(
    "--current-option",
    "current_specs",
    metavar="PROVIDER_ID:KEY=VALUE",
    multiple=True,
    help="Any current-generation option for one current provider, e.g. "
    "devnet-provider-03:fail_jobs=true (repeatable).",
)
@click.pass_context
def up(
    ctx: click.Context,
    providers: int,
    localhost: bool,
    state_dir: Path | None,
    discovery_port: int,
    base_address: str,
    ad_ttl: float,
    capacity_scale: int,
    fault_specs: tuple[str, ...],
    faults: dict[str, Any],
    current: int,
    payments: tuple[str, ...],
    job_delay: float,
    ssh_proxy_delay: float,
    current_specs: tuple[str, ...],
) -> None:
    """Start a devnet in the foreground; Ctrl-C stops it.

    Prints the environment for a second shell (export lines on stdout) and writes
    it to STATE_DIR/env.

    With --localhost, 'source .env.dev' in the second shell works too.
    """
    from click.core import ParameterSource
    from pydantic import ValidationError

    from golem_devnet.current import CurrentOptions
    from golem_devnet.faults import Faults
    from golem_devnet.network import (
        DEFAULT_DISCOVERY_HOST,
        LOCALHOST_ADDRESS,
        Devnet,
        UnknownProviderError,
    )

    discovery_host: str | None = None
    if localhost:
        if ctx.get_parameter_source("providers") is not ParameterSource.DEFAULT and providers != 1:
            raise InputError(
                f"--localhost runs exactly one provider, not {providers}",
                "Every provider would be reached at localhost:7466, so there is room for one: "
                "drop --providers (or pass --providers 1).",
            )
        if ctx.get_parameter_source("base_address") is not ParameterSource.DEFAULT:
            raise InputError(
                "--localhost and --base-address cannot be combined",
                f"--localhost puts the provider on {LOCALHOST_ADDRESS}; drop one of them.",
            )
        providers, base_address = 1, LOCALHOST_ADDRESS
        discovery_host = DEFAULT_DISCOVERY_HOST

    switches = {flag.field for flag in FAULT_FLAGS if flag.switch}
    try:
        base = Faults.model_validate(
            {field: value for field, value in faults.items() if field not in switches}
        )
        per_provider = _provider_faults(
            base, {field: faults[field] for field in switches}, fault_specs
        )
    except ValidationError as error:
        raise InputError(f"Invalid fault: {_first_error(error)}") from None
    try:
        current_base = CurrentOptions(job_delay_s=job_delay, ssh_proxy_delay_s=ssh_proxy_delay)
        per_current = _current_options(current_base, payments, current_specs)
    except ValidationError as error:
        raise InputError(f"Invalid current-generation option: {_first_error(error)}") from None
    try:
        net = Devnet(
            state_dir or default_state_dir(),
            providers,
            base_address=base_address,
            discovery_host=discovery_host,
            discovery_port=discovery_port,
            ad_ttl_s=ad_ttl,
            faults=base,
            provider_faults=per_provider,
            capacity_scale=capacity_scale,
            current=current,
            current_options=current_base,
            provider_current_options=per_current,
        )
    except UnknownProviderError as error:
        raise InputError(
            str(error), "Provider ids are devnet-provider-01 up to the --providers count."
        ) from None
    except ValueError as error:
        raise InputError(str(error)) from None
    ctx.ensure_object(AppContext).run(_serve(net))


def _provider_faults(
    base: Faults, flags: dict[str, tuple[str, ...]], specs: tuple[str, ...]
) -> dict[str, Faults]:
    changes: dict[str, dict[str, Any]] = {}
    for name, provider_ids in flags.items():
        for provider_id in provider_ids:
            changes.setdefault(provider_id, {})[name] = True
    for spec in specs:
        provider_id, sep, assignment = spec.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and provider_id and key):
            raise InputError(
                f"Invalid --fault {spec!r}",
                "Write it as PROVIDER_ID:KEY=VALUE, e.g. devnet-provider-02:latency_ms=500.",
            )
        key = key.strip().replace("-", "_")
        lists = ("missing_routes", "hold")
        parsed: Any = [r for r in value.split(",") if r] if key in lists else value
        changes.setdefault(provider_id, {})[key] = parsed
    return {
        provider_id: type(base).model_validate({**base.model_dump(), **values})
        for provider_id, values in changes.items()
    }


def _current_options(
    base: CurrentOptions, payments: tuple[str, ...], specs: tuple[str, ...]
) -> dict[str, CurrentOptions]:
    changes: dict[str, dict[str, Any]] = {
        provider_id: {"payments": True} for provider_id in payments
    }
    for spec in specs:
        provider_id, sep, assignment = spec.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and provider_id and key):
            raise InputError(
                f"Invalid --current-option {spec!r}",
                "Write it as PROVIDER_ID:KEY=VALUE, e.g. devnet-provider-03:fail_jobs=true.",
            )
        changes.setdefault(provider_id, {})[key.strip().replace("-", "_")] = value
    return {
        provider_id: type(base).model_validate({**base.model_dump(), **values})
        for provider_id, values in changes.items()
    }


def _generation(item: dict[str, Any]) -> str:
    """``legacy``, or ``current`` with the options that differ from the default."""
    generation = str(item.get("generation", "legacy"))
    options = item.get("current")
    if generation != "current" or not isinstance(options, dict):
        return generation
    from golem_devnet.current import CurrentOptions

    described = CurrentOptions.model_validate(options).describe()
    return generation if described == "-" else f"{generation} ({described})"


def _first_error(error: Any) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


async def _serve(net: Devnet) -> None:
    import asyncio
    import signal

    from golem_devnet.network import (
        AddressInUseError,
        AddressUnavailableError,
        StateDirInUseError,
    )

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await net.start()
        except AddressInUseError as error:
            other_port = (
                ", or start this one with another --discovery-port"
                if error.address == f"{net.discovery_host}:{net.discovery_port}"
                else ""
            )
            raise GolemError(
                str(error),
                f"Another devnet may be running: stop it with Ctrl-C in its shell{other_port}.",
            ) from None
        except StateDirInUseError as error:
            raise GolemError(
                str(error), "Stop that devnet first, or pass another --state-dir."
            ) from None
        except AddressUnavailableError as error:
            raise GolemError(
                str(error),
                "The devnet needs the 127.0.0.0/8 addresses that Linux gives the loopback "
                "interface; on other systems add them to it first.",
            ) from None
        env_file = net.write_env_file()
        _print_summary(net, env_file)
        for line in net.env_lines():
            click.echo(line)
        sys.stdout.flush()
        await stop.wait()
        click.echo("Stopping the devnet...", err=True)
    finally:
        await net.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _print_summary(net: Devnet, env_file: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from golem_devnet.network import LOCALHOST_ADDRESS

    console = Console(stderr=True, highlight=False, width=console_width(sys.stderr))
    count = len(net.specs)
    table = Table(
        title=f"Devnet: {count} provider{'' if count == 1 else 's'}, "
        f"discovery at {net.discovery_url}"
    )
    columns = ("Provider ID", "Address", "Country", "CPU", "Memory", "Storage", "Generation")
    for column in (*columns, "Faults"):
        table.add_column(column, overflow="fold")  # ids and addresses: never "…"
    for node in net.nodes[:_SUMMARY_ROWS]:
        spec = node.spec
        table.add_row(
            spec.provider_id,
            f"{spec.ip_address}:7466",
            spec.country,
            str(spec.cpu),
            f"{spec.memory} GB",
            f"{spec.storage} GB",
            _generation(node.summary()),
            node.faults.describe(),
        )
    if len(net.nodes) > _SUMMARY_ROWS:
        more = f"... and {len(net.nodes) - _SUMMARY_ROWS} more"
        table.add_row(more, *[""] * len(columns))
    console.print(table)
    console.print(f"State: {net.state_dir}  (a devnet VM runs as you: it is not isolation)")
    console.print(f"In another shell:  source {env_file}")
    # .env.dev names the default discovery address: only then is it this devnet.
    if [spec.ip_address for spec in net.specs] == [LOCALHOST_ADDRESS] and (
        net.discovery_url.rstrip("/") == DEFAULT_DISCOVERY_URL
    ):
        console.print(
            "  or, from the repository:  source .env.dev  (GOLEM_REQUESTOR_FORCE_LOCALHOST)"
        )
    console.print("Press Ctrl-C to stop.")


# --- fault / status ------------------------------------------------------------------------


def _discovery_url(url: str | None) -> str:
    chosen = url or os.environ.get("GOLEM_REQUESTOR_DISCOVERY_URL") or DEFAULT_DISCOVERY_URL
    host = urllib.parse.urlsplit(chosen).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InputError(
            f"{chosen} is not a devnet: the devnet admin API is on loopback only",
            "Pass --discovery-url http://127.0.0.10:9001 (or the devnet's URL).",
        )
    return chosen.rstrip("/")


def _admin_call(base_url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    # No proxy: the devnet is on loopback, whatever http_proxy says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error).get("detail", error.reason)
        except ValueError:
            message = error.reason
        if error.code == 404:
            raise InputError(
                f"Not found: {message}", "See the provider ids with 'golem devnet status'."
            ) from None
        raise GolemError(f"The devnet refused: {message}") from None
    except (urllib.error.URLError, OSError) as error:
        raise GolemError(
            f"No devnet answers at {base_url} ({error})",
            "Start one with 'golem devnet up', or pass --discovery-url.",
        ) from None


_discovery_url_option = click.option(
    "--discovery-url",
    metavar="URL",
    help=f"The devnet's discovery URL [default: $GOLEM_REQUESTOR_DISCOVERY_URL or "
    f"{DEFAULT_DISCOVERY_URL}].",
)


@devnet.command(epilog=ROUTES_HELP)
@click.argument("provider_id", required=False)
@click.option("--all", "all_providers", is_flag=True, help="Every provider.")
@fault_options(switches_name_providers=False)
@_discovery_url_option
@json_option("Print the admin API's answer (the faults now in force) as JSON.")
def fault(
    provider_id: str | None,
    all_providers: bool,
    discovery_url: str | None,
    as_json: bool,
    faults: dict[str, Any],
) -> None:
    """Set a running devnet provider's faults (replacing its earlier ones).

    With no fault option the provider is healthy again.

    \b
    Examples:
      golem devnet fault devnet-provider-02 --offline
      golem devnet fault devnet-provider-01 --hold 'POST /vms'   # park creates
      golem devnet fault devnet-provider-01                      # release them
    """
    from golem_devnet.faults import Faults

    if bool(provider_id) == all_providers:
        raise InputError("Give one PROVIDER_ID or --all")
    body = {
        field: sorted(set(value)) if isinstance(value, tuple) else value
        for field, value in faults.items()
    }
    base = _discovery_url(discovery_url)
    path = (
        "/devnet/faults"
        if all_providers
        else f"/devnet/providers/{urllib.parse.quote(provider_id or '', safe='')}/faults"
    )
    answer = _admin_call(base, "PUT", path, body)
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=True))
        return
    targets = answer.get("providers") or [answer.get("provider_id")]
    description = Faults.model_validate(answer["faults"]).describe()
    for target in targets:
        click.echo(f"{target}: {description}")


@devnet.command()
@_discovery_url_option
@json_option("Print what GET /devnet/providers answers (a JSON list), one key per field.")
def status(discovery_url: str | None, as_json: bool) -> None:
    """Show a running devnet's providers, their generation, faults and VMs."""
    base = _discovery_url(discovery_url)
    providers = _admin_call(base, "GET", "/devnet/providers")
    if as_json:
        click.echo(json.dumps(providers, indent=2, ensure_ascii=True))
        return

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from golem_devnet.faults import Faults
    from requestor.text import clean

    table = Table(title=f"Devnet at {base}")
    columns = ("Provider ID", "Address", "Country", "Free CPU/Mem/Disk", "Generation", "Faults")
    for column in (*columns, "VMs"):
        table.add_column(column, overflow="fold")  # ids and addresses: never "…"
    for item in providers:
        free = item["free"]
        vms = ", ".join(f"{vm['name']} ({vm['status']}, :{vm['ssh_port']})" for vm in item["vms"])
        table.add_row(
            *(
                Text(clean(value, limit=500))
                for value in (
                    item["provider_id"],
                    item["ip_address"],
                    item["country"],
                    f"{free['cpu']}/{free['memory']}/{free['storage']}",
                    _generation(item),
                    Faults.model_validate(item["faults"]).describe(),
                    vms or "-",
                )
            )
        )
    Console(highlight=False, width=console_width(sys.stdout)).print(table)


@devnet.command("current")
@click.argument("provider_id")
@click.option("--payments", is_flag=True, help="Require a payment stream (stream_id) to create.")
@click.option("--fail-jobs", is_flag=True, help="Every async create job fails.")
@click.option("--hold-jobs", is_flag=True, help="Async jobs stay 'creating' until released.")
@click.option(
    "--job-delay",
    type=click.FloatRange(0.0, 3600.0),
    default=0.0,
    help="Seconds an async job stays 'creating'.",
)
@click.option(
    "--hold-ssh-proxy",
    is_flag=True,
    help="New VMs run with ssh_port null (access 202) until released.",
)
@click.option(
    "--ssh-proxy-delay",
    type=click.FloatRange(0.0, 3600.0),
    default=0.0,
    help="Seconds a new VM runs with ssh_port null (access 202).",
)
@click.option(
    "--provider-info-id",
    metavar="ID",
    help="/provider/info reports this provider_id instead of the advertised one.",
)
@click.option("--no-pricing", is_flag=True, help="Advertise pricing null.")
@_discovery_url_option
@json_option("Print the admin API's answer (the options now in force) as JSON.")
def current_options(
    provider_id: str,
    payments: bool,
    fail_jobs: bool,
    hold_jobs: bool,
    job_delay: float,
    hold_ssh_proxy: bool,
    ssh_proxy_delay: float,
    provider_info_id: str | None,
    no_pricing: bool,
    discovery_url: str | None,
    as_json: bool,
) -> None:
    """Set a running current-generation provider's options (replacing its earlier ones).

    They apply to creates from now on; with no option the provider is a healthy
    current one with payments off. Prices go back to the devnet's defaults.

    \b
    Example:
      golem devnet current devnet-provider-03 --payments
    """
    from golem_devnet.current import CurrentOptions

    body = {
        "payments": payments,
        "fail_jobs": fail_jobs,
        "hold_jobs": hold_jobs,
        "job_delay_s": job_delay,
        "hold_ssh_proxy": hold_ssh_proxy,
        "ssh_proxy_delay_s": ssh_proxy_delay,
        "provider_info_id": provider_info_id,
        "advertise_pricing": not no_pricing,
    }
    base = _discovery_url(discovery_url)
    path = f"/devnet/providers/{urllib.parse.quote(provider_id, safe='')}/current"
    answer = _admin_call(base, "PUT", path, body)
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=True))
        return
    click.echo(
        f"{answer['provider_id']}: {CurrentOptions.model_validate(answer['current']).describe()}"
    )


@devnet.command()
@click.argument("provider_id")
@click.option("--jobs/--no-jobs", default=True, show_default=True, help="Release waiting jobs.")
@click.option(
    "--ssh-proxy/--no-ssh-proxy",
    default=True,
    show_default=True,
    help="Publish the SSH port of VMs waiting for it.",
)
@_discovery_url_option
@json_option("Print the admin API's answer (what was released) as JSON.")
def release(
    provider_id: str, jobs: bool, ssh_proxy: bool, discovery_url: str | None, as_json: bool
) -> None:
    """End what a current provider holds or delays now: async jobs, unpublished SSH ports."""
    base = _discovery_url(discovery_url)
    path = f"/devnet/providers/{urllib.parse.quote(provider_id, safe='')}/release"
    answer = _admin_call(base, "POST", path, {"jobs": jobs, "ssh_proxy": ssh_proxy})
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=True))
        return
    click.echo(
        f"{answer['provider_id']}: released {len(answer['jobs'])} job(s), "
        f"{len(answer['ssh_proxy'])} SSH port(s)"
    )
