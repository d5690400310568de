"""``golem vm ssh``, ``cp``, ``forward`` and ``ssh-config``: parse, call the access
service (``requestor.services.access``), render, return the exit status.

Only click and the standard library are imported here at module level; asyncssh
and local state are loaded by the command that runs.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from requestor.cli import complete
from requestor.cli.context import AppContext
from requestor.cli.params import DEFAULT_WAIT_TIMEOUT, Seconds, json_option, wait_timeout_option
from requestor.errors import GolemError, InputError

if TYPE_CHECKING:
    from requestor.services.access import Access
    from requestor.services.remote import ExecReport
    from requestor.services.runtime import Services
    from requestor.services.wait import WaitReport
    from requestor.ssh._asyncssh import asyncssh

T = TypeVar("T")


def _wait_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--no-wait and --wait-timeout: how long to wait for a VM whose SSH is not up yet."""
    command = wait_timeout_option(command)
    return click.option("--no-wait", is_flag=True, help="Fail at once if SSH does not answer.")(
        command
    )


pass_app = click.make_pass_decorator(AppContext)


def _run(app: AppContext, name: str, work: Callable[[Access], Awaitable[T]]) -> T:
    """One event loop: the VM's access (local state), then ``work``."""
    from requestor.services.access import open_access

    settings = app.settings

    async def main() -> T:
        async with open_access(settings, name) as access:
            return await work(access)

    return app.run(main())


async def _connect(app: AppContext, access: Access, wait: float) -> asyncssh.SSHClientConnection:
    from requestor.cli.render_ssh import Spinner

    spinner = Spinner(
        lambda: app.err_console, f"Waiting up to {wait:g} s for SSH on {access.name}…"
    )
    try:
        return await access.connect(wait=wait, on_wait=spinner.start)
    finally:
        spinner.stop()


# --- ssh ------------------------------------------------------------------------


@click.command(short_help="Open a shell on VM NAME, or run a command on it.")
@click.argument("name", shell_complete=complete.vm_names)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "-t",
    "--tty",
    "force_tty",
    is_flag=True,
    help="Give the command a terminal (PTY), e.g. for top or sudo.",
)
@_wait_options
@click.option(
    "--repin",
    is_flag=True,
    help="Pin the host key the VM shows now (after you re-created it), then exit.",
)
@click.option("--yes", "-y", is_flag=True, help="With --repin: do not ask for confirmation.")
@pass_app
def ssh(
    app: AppContext,
    name: str,
    command: tuple[str, ...],
    force_tty: bool,
    no_wait: bool,
    wait_timeout: float,
    repin: bool,
    yes: bool,
) -> int:
    """Open a shell on VM NAME, or run a command: golem vm ssh NAME -- CMD [ARGS...].

    \b
    A command runs without a terminal (binary-safe stdout and stderr, stdin
    streamed in) unless -t is given; the remote exit status becomes golem's.
    Type ~. at the start of a line to drop a hung session, ~? for help.
    """
    if repin:
        if command:
            raise InputError("--repin takes no command", "Re-pin first, then run the command.")
        return _repin(app, name, yes)
    import os

    # As OpenSSH: the words after the name form one command line for the remote shell.
    line = " ".join(command) if command else None
    with_pty = force_tty or (line is None and os.isatty(0) and os.isatty(1))

    async def work(access: Access) -> int:
        conn = await _connect(app, access, 0.0 if no_wait else wait_timeout)
        async with conn:
            if with_pty:
                from requestor.ssh.interactive import run_shell

                status = await run_shell(conn, line, access.name)
            else:
                from requestor.ssh.exec import run_command

                status = await run_command(conn, line, access.name)
        return status

    # The remote exit status becomes golem's (the root group exits with it).
    return _run(app, name, work)


def _repin(app: AppContext, name: str, yes: bool) -> int:
    from requestor.cli import render_ssh

    def confirm(old: str | None, new: str) -> bool:
        return render_ssh.confirm_repin(app.err_console, name, yes, old, new)

    result = _run(app, name, lambda access: access.repin(confirm))
    render_ssh.repinned(name, result)
    return 0


# --- cp -------------------------------------------------------------------------


@click.command(short_help="Copy files to or from a VM over SFTP.")
@click.argument("sources", nargs=-1, required=True, shell_complete=complete.copy_endpoints)
@click.argument("destination", shell_complete=complete.copy_endpoints)
@click.option("-r", "--recursive", is_flag=True, help="Copy folders and what is in them.")
@_wait_options
@json_option("What was copied, as one JSON object on stdout (docs/json.md).")
@pass_app
def cp(
    app: AppContext,
    sources: tuple[str, ...],
    destination: str,
    recursive: bool,
    no_wait: bool,
    wait_timeout: float,
    as_json: bool,
) -> int:
    """Copy files to or from a VM over SFTP: golem vm cp SRC... DST.

    \b
    One side is NAME:path (relative paths start in the VM user's home):
      golem vm cp ./notes.txt my-vm:
      golem vm cp -r ./site my-vm:/var/www
      golem vm cp my-vm:logs/app.log .
    Permissions and modification times are kept. Symbolic links on the VM are
    skipped (a note each); local ones are uploaded as links.
    """
    from requestor.ssh.transfer import plan_copy

    plan = plan_copy(sources, destination)

    from requestor.cli.render_ssh import CopyTally

    tally = CopyTally()

    async def work(access: Access) -> None:
        from requestor.ssh.transfer import copy

        conn = await _connect(app, access, 0.0 if no_wait else wait_timeout)
        async with conn:
            if as_json or not sys.stderr.isatty():
                warn = tally.warn if as_json else None
                await copy(conn, plan, recursive=recursive, progress=tally.update, warn=warn)
                return
            from requestor.cli.render_ssh import TransferProgress

            with TransferProgress(app.err_console) as progress:
                await copy(
                    conn, plan, recursive=recursive, progress=progress.update, warn=progress.warn
                )

    _run(app, plan.vm, work)
    if as_json:
        from requestor.cli.render_ssh import copied_json

        copied_json(plan, tally)
    return 0


# --- forward --------------------------------------------------------------------


@click.command()
@click.argument("name", shell_complete=complete.vm_names)
@click.argument("ports", metavar="[LOCAL_PORT:]REMOTE_PORT")
@_wait_options
@json_option("Print the listening address as one JSON object (docs/json.md).")
@pass_app
def forward(
    app: AppContext, name: str, ports: str, no_wait: bool, wait_timeout: float, as_json: bool
) -> int:
    """Forward a local port to a port on VM NAME until Ctrl-C.

    \b
      golem vm forward my-vm 8080:80    # http://127.0.0.1:8080 reaches the VM's port 80
      golem vm forward my-vm 5432       # the same port number on both sides
      golem vm forward my-vm 0:80       # any free local port (printed)
    The local address is printed on stdout; the listener is on 127.0.0.1 only.
    """
    from requestor.cli.render_ssh import forward_ready
    from requestor.ssh.forward import parse_spec

    spec = parse_spec(ports)

    async def work(access: Access) -> None:
        from requestor.ssh.forward import forward as run_forward

        conn = await _connect(app, access, 0.0 if no_wait else wait_timeout)
        async with conn:
            await run_forward(
                conn,
                spec,
                access.name,
                lambda address: forward_ready(address, spec.remote_port, name, as_json),
            )

    _run(app, name, work)
    return 0


# --- ssh-config -----------------------------------------------------------------


@click.command(name="ssh-config")
@click.argument("names", nargs=-1, shell_complete=complete.vm_names)
@click.option(
    "--write",
    is_flag=True,
    help="Write the entries to golem's own ssh config file instead of printing them.",
)
@json_option("The entries and what was skipped, as one JSON object (docs/json.md).")
@pass_app
def ssh_config(app: AppContext, names: tuple[str, ...], write: bool, as_json: bool) -> int:
    """OpenSSH config entries (Host golem-NAME) for your VMs, for ssh, scp, rsync and editors.

    \b
    Host keys are checked against golem's pins (StrictHostKeyChecking yes, with a
    known_hosts file golem writes beside its key). With --write, add the printed
    Include line to the top of ~/.ssh/config once.
    """
    from requestor.cli import render_ssh
    from requestor.services.access import ssh_config as make_config

    result = app.run(make_config(app.settings, names, write))
    if as_json:
        render_ssh.ssh_config_json(result)
    else:
        render_ssh.ssh_config(app.err_console, result)
    return 0


# --- exec -----------------------------------------------------------------------


def _note(text: str) -> None:
    """What the selection left out (--provider narrowing the names), on stderr."""
    from requestor.text import clean

    click.echo(clean(text, 500), err=True)


class _CommandAfterDashes(click.Command):
    """Everything after the first ``--`` is the remote command, kept out of
    click's parsing (so ``-x`` there is the command's, and NAMES stay NAMES)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            ctx.meta["remote_command"] = args[split + 1 :]
            args = args[:split]
        return super().parse_args(ctx, args)


@click.command(
    name="exec", cls=_CommandAfterDashes, short_help="Run one command on many VMs at once."
)
@click.argument("names", nargs=-1)
@click.option("--all", "all_vms", is_flag=True, help="Every VM in local state.")
@click.option("--provider", "provider_id", help="Only VMs on this provider.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 500),
    default=100,
    show_default=True,
    help="VMs handled at once (and at most 10 per provider).",
)
@json_option(help="One JSON object per VM, with its output.")
@click.pass_context
def exec_command(
    ctx: click.Context,
    names: tuple[str, ...],
    all_vms: bool,
    provider_id: str | None,
    concurrency: int,
    as_json: bool,
) -> ExecReport | None:
    """Run one command on many VMs at once: golem vm exec NAME... -- CMD [ARGS...].

    \b
    VMs are chosen as start, stop, destroy and forget choose them: names, globs
    ('web-*'), --all or --provider. Each line the command writes is printed
    as it comes, after "NAME: ", on stdout or stderr as the VM wrote it; a
    summary follows on stderr. Exit status: 0 when every VM ran the command
    and it returned 0, 1 when none did, 3 otherwise.
    """
    from requestor.cli import render_ssh
    from requestor.cli.vm import run_with_services
    from requestor.services.remote import exec_on_vms

    app = ctx.ensure_object(AppContext)
    words = ctx.meta.get("remote_command") or []
    if not words:
        raise InputError(
            "No command given", "Put the command after '--': golem vm exec 'web-*' -- uptime"
        )
    line = " ".join(words)  # one command line for each VM's shell, as ssh does
    printer = render_ssh.PrefixedOutput()

    async def work(services: Services) -> ExecReport | None:
        return await exec_on_vms(
            services,
            names,
            line,
            all_vms=all_vms,
            provider_id=provider_id,
            concurrency=concurrency,
            keep_output=as_json,
            on_output=(lambda *_: None) if as_json else printer.line,
            on_note=_note,
        )

    report = run_with_services(app, work, concurrency=concurrency)
    if report is None:
        if as_json:
            click.echo("[]")
        else:
            click.echo("No VMs selected.", err=True)
        return None
    if as_json:
        from requestor.cli.render import print_json

        print_json(render_ssh.exec_json(report))
    else:
        render_ssh.exec_summary(report)
    return report


# --- wait -----------------------------------------------------------------------

_GOAL_WORDS = {
    "ssh": "accept SSH (a command runs)",
    "running": "be running",
    "stopped": "be stopped",
}


@click.command(short_help="Block until VMs reach a state (ssh, running, stopped).")
@click.argument("names", nargs=-1)
@click.option(
    "--for",
    "goal",
    type=click.Choice(["ssh", "running", "stopped"]),
    required=True,
    help="ssh: a command runs on it; running or stopped: its provider says so.",
)
@click.option(
    "--timeout",
    type=Seconds(min=0, max=86400),
    default=DEFAULT_WAIT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for all of them.",
)
@click.option("--all", "all_vms", is_flag=True, help="Every VM in local state.")
@click.option("--provider", "provider_id", help="Only VMs on this provider.")
@pass_app
def wait(
    app: AppContext,
    names: tuple[str, ...],
    goal: str,
    timeout: float,
    all_vms: bool,
    provider_id: str | None,
) -> None:
    """Block until VMs reach a state: golem vm wait NAME... --for ssh|running|stopped.

    \b
    VMs are chosen as start, stop, destroy and forget choose them: names, globs
    ('web-*'), --all or --provider. Exits 0 when every one got there, 1 naming
    those that did not within --timeout.
    """
    from requestor.cli import render
    from requestor.cli.vm import run_with_services
    from requestor.services.wait import Arrival, Goal, wait_for

    wanted = Goal(goal)
    words = _GOAL_WORDS[goal]
    bar = render.BulkProgress(app.err_console, "wait")
    # Off a terminal the bar draws nothing: say what we wait for, in plain lines.
    plain = not sys.stderr.isatty()

    def selected(chosen: list[str]) -> None:
        if plain:
            shown = ", ".join(chosen[:10]) + (", …" if len(chosen) > 10 else "")
            click.echo(
                f"Waiting up to {timeout:g} s for {len(chosen)} VM(s) to {words}: {shown}",
                err=True,
            )
        else:
            bar.start(len(chosen))

    def arrival(reached: Arrival) -> None:
        bar.advance(reached)
        if plain:
            click.echo(f"{reached.name}: {goal} after {reached.seconds:.1f} s", err=True)

    async def work(services: Services) -> WaitReport | None:
        return await wait_for(
            services,
            names,
            wanted,
            timeout,
            all_vms=all_vms,
            provider_id=provider_id,
            on_selected=selected,
            on_arrival=arrival,
            on_note=_note,
        )

    try:
        report = run_with_services(app, work)
    finally:
        bar.stop()
    if report is None:
        click.echo("No VMs selected.", err=True)
        return None
    if report.missing:
        from requestor.text import clean

        late = "; ".join(f"{name} ({clean(why, 200)})" for name, why in report.missing.items())
        raise GolemError(
            f"{len(report.missing)} of {len(report.missing) + len(report.arrived)} VM(s) did not "
            f"reach '{goal}' within {timeout:g} s: {late}",
            hint="Check them with 'golem vm info NAME --refresh'; start stopped ones with "
            "'golem vm start NAME', or wait longer with --timeout.",
        )
    if plain:
        click.echo(f"All {len(report.arrived)} VM(s) {goal} in {report.seconds:.1f} s.", err=True)
    return None
