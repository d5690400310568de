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

from requestor.cli.context import AppContext
from requestor.cli.params import wait_timeout_option
from requestor.errors import InputError

if TYPE_CHECKING:
    from requestor.services.access import Access
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

    spinner = Spinner(lambda: app.err_console, f"Waiting for SSH on {access.name}…")
    try:
        return await access.connect(wait=wait, on_wait=spinner.start)
    finally:
        spinner.stop()


# --- ssh ------------------------------------------------------------------------


@click.command()
@click.argument("name")
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


@click.command()
@click.argument("sources", nargs=-1, required=True)
@click.argument("destination")
@click.option("-r", "--recursive", is_flag=True, help="Copy folders and what is in them.")
@_wait_options
@pass_app
def cp(
    app: AppContext,
    sources: tuple[str, ...],
    destination: str,
    recursive: bool,
    no_wait: bool,
    wait_timeout: float,
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

    async def work(access: Access) -> None:
        from requestor.ssh.transfer import copy

        conn = await _connect(app, access, 0.0 if no_wait else wait_timeout)
        async with conn:
            if not sys.stderr.isatty():
                await copy(conn, plan, recursive=recursive)
                return
            from requestor.cli.render_ssh import TransferProgress

            with TransferProgress(app.err_console) as progress:
                await copy(
                    conn, plan, recursive=recursive, progress=progress.update, warn=progress.warn
                )

    _run(app, plan.vm, work)
    return 0


# --- forward --------------------------------------------------------------------


@click.command()
@click.argument("name")
@click.argument("ports", metavar="[LOCAL_PORT:]REMOTE_PORT")
@_wait_options
@pass_app
def forward(app: AppContext, name: str, ports: str, no_wait: bool, wait_timeout: float) -> int:
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
                lambda address: forward_ready(address, spec.remote_port, name),
            )

    _run(app, name, work)
    return 0


# --- ssh-config -----------------------------------------------------------------


@click.command(name="ssh-config")
@click.argument("names", nargs=-1)
@click.option(
    "--write",
    is_flag=True,
    help="Write the entries to golem's own ssh config file instead of printing them.",
)
@pass_app
def ssh_config(app: AppContext, names: tuple[str, ...], write: bool) -> int:
    """OpenSSH config entries (Host golem-NAME) for your VMs, for ssh, scp, rsync and editors.

    \b
    Host keys are checked against golem's pins (StrictHostKeyChecking yes, with a
    known_hosts file golem writes beside its key). With --write, add the printed
    Include line to the top of ~/.ssh/config once.
    """
    from requestor.cli import render_ssh
    from requestor.services.access import ssh_config as make_config

    result = app.run(make_config(app.settings, names, write))
    render_ssh.ssh_config(app.err_console, result)
    return 0
