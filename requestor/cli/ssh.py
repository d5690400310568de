"""``golem vm ssh``, ``cp``, ``forward`` and ``ssh-config``: parse, run one event loop,
exit with what happened. The work is in ``requestor.ssh``.

Only click and the standard library are imported here at module level; asyncssh
and the database are loaded by the command that runs.
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
    from rich.status import Status

    from requestor.db.engine import Database
    from requestor.ssh.client import Target

T = TypeVar("T")


def _wait_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--no-wait and --wait-timeout: how long to wait for a VM whose SSH is not up yet."""
    command = wait_timeout_option(command)
    return click.option("--no-wait", is_flag=True, help="Fail at once if SSH does not answer.")(
        command
    )


pass_app = click.make_pass_decorator(AppContext)


class _Spinner:
    """A spinner on stderr while we wait for SSH, only when stderr is a terminal."""

    def __init__(self, app: AppContext, text: str) -> None:
        self._app = app
        self._text = text
        self._status: Status | None = None

    def start(self) -> None:
        if self._status is None and sys.stderr.isatty():
            self._status = self._app.err_console.status(self._text)
            self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def _run(app: AppContext, name: str, work: Callable[[Database, Target], Awaitable[T]]) -> T:
    """One event loop: local state, the VM's details, then ``work``."""

    from requestor.db.engine import Database
    from requestor.ssh.client import load_target

    settings = app.settings

    async def main() -> T:
        async with Database(settings.db_path) as db:
            target = await load_target(db, settings, name)
            return await work(db, target)

    return app.run(main())


async def _connect(app: AppContext, db: Database, target: Target, wait: float) -> Any:
    from requestor.ssh.client import connect

    spinner = _Spinner(app, f"Waiting for SSH on {target.name}…")
    try:
        return await connect(db, target, wait=wait, on_wait=spinner.start)
    finally:
        spinner.stop()


def _exit_with(status: int) -> None:
    if status != 0:
        sys.exit(status)


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
) -> None:
    """Open a shell on VM NAME, or run a command: golem vm ssh NAME -- CMD [ARGS...].

    \b
    A command runs without a terminal (binary-safe stdout and stderr, stdin
    streamed in) unless -t is given; the remote exit status becomes golem's.
    Type ~. at the start of a line to drop a hung session, ~? for help.
    """
    if repin:
        if command:
            raise InputError("--repin takes no command", "Re-pin first, then run the command.")
        _repin(app, name, yes)
        return
    import os

    # As OpenSSH: the words after the name form one command line for the remote shell.
    line = " ".join(command) if command else None
    with_pty = force_tty or (line is None and os.isatty(0) and os.isatty(1))

    async def work(db: Database, target: Target) -> int:
        conn = await _connect(app, db, target, 0.0 if no_wait else wait_timeout)
        async with conn:
            if with_pty:
                from requestor.ssh.interactive import run_shell

                return await run_shell(conn, line, target.name)
            from requestor.ssh.exec import run_command

            return await run_command(conn, line, target.name)

    _exit_with(_run(app, name, work))


def _repin(app: AppContext, name: str, yes: bool) -> None:
    from requestor.ssh.client import repin

    def confirm(old: str | None, new: str) -> bool:
        if old is None:
            return True  # nothing pinned: this is the first use
        app.err_console.print(f"Pinned host key of {name}: {old}")
        app.err_console.print(f"Host key shown now:    {' ' * len(name)} {new}")
        if yes:
            return True
        if not sys.stdin.isatty():
            raise InputError(
                "Refusing to re-pin without confirmation",
                "Pass --yes to confirm when not at a terminal.",
            )
        return click.confirm(
            "Pin the new key? Only do this if you know why it changed (e.g. you re-created the VM)",
            default=False,
            err=True,
        )

    async def work(db: Database, target: Target) -> tuple[str | None, str, bool]:
        from requestor.ssh.sshconfig import refresh_from_db

        result = await repin(db, target, confirm)
        await refresh_from_db(app.settings, db)
        return result

    _old, new, changed = _run(app, name, work)
    if changed:
        click.echo(f"Pinned host key {new} for {name}.", err=True)
    else:
        click.echo(f"The host key of {name} is unchanged ({new}); nothing to do.", err=True)


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
) -> None:
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

    async def work(db: Database, target: Target) -> None:
        from requestor.ssh.transfer import copy

        conn = await _connect(app, db, target, 0.0 if no_wait else wait_timeout)
        async with conn:
            if not sys.stderr.isatty():
                await copy(conn, plan, recursive=recursive)
                return
            with _TransferProgress(app) as progress:
                await copy(
                    conn, plan, recursive=recursive, progress=progress.update, warn=progress.warn
                )

    _run(app, plan.vm, work)


class _TransferProgress:
    """One bar per file of at least LARGE bytes; small files go by unannounced."""

    LARGE = 1 << 20

    def __init__(self, app: AppContext) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=app.err_console,
            transient=True,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _TransferProgress:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def warn(self, message: str) -> None:
        from rich.text import Text

        self._progress.console.print(Text(message))  # above the bars, not through them

    def update(self, source: str, _destination: str, done: int, total: int) -> None:
        from rich.markup import escape

        from requestor.text import clean

        if total < self.LARGE:
            return
        task = self._tasks.get(source)
        if task is None:
            label = escape(clean(source.rsplit("/", 1)[-1], 40))
            task = self._tasks[source] = self._progress.add_task(label, total=total)
        self._progress.update(task, completed=done)
        if done >= total:
            self._progress.remove_task(task)
            del self._tasks[source]


# --- forward --------------------------------------------------------------------


@click.command()
@click.argument("name")
@click.argument("ports", metavar="[LOCAL_PORT:]REMOTE_PORT")
@_wait_options
@pass_app
def forward(app: AppContext, name: str, ports: str, no_wait: bool, wait_timeout: float) -> None:
    """Forward a local port to a port on VM NAME until Ctrl-C.

    \b
      golem vm forward my-vm 8080:80    # http://127.0.0.1:8080 reaches the VM's port 80
      golem vm forward my-vm 5432       # the same port number on both sides
      golem vm forward my-vm 0:80       # any free local port (printed)
    The local address is printed on stdout; the listener is on 127.0.0.1 only.
    """
    from requestor.ssh.forward import parse_spec

    spec = parse_spec(ports)

    def ready(address: str) -> None:
        click.echo(address)
        sys.stdout.flush()
        if sys.stderr.isatty():
            click.echo(
                f"Forwarding {address} to port {spec.remote_port} on {name}; Ctrl-C to stop.",
                err=True,
            )

    async def work(db: Database, target: Target) -> None:
        from requestor.ssh.forward import forward as run_forward

        conn = await _connect(app, db, target, 0.0 if no_wait else wait_timeout)
        async with conn:
            await run_forward(conn, spec, target.name, ready)

    _run(app, name, work)


# --- ssh-config -----------------------------------------------------------------


@click.command(name="ssh-config")
@click.argument("names", nargs=-1)
@click.option(
    "--write",
    is_flag=True,
    help="Write the entries to golem's own ssh config file instead of printing them.",
)
@pass_app
def ssh_config(app: AppContext, names: tuple[str, ...], write: bool) -> None:
    """OpenSSH config entries (Host golem-NAME) for your VMs, for ssh, scp, rsync and editors.

    \b
    Host keys are checked against golem's pins (StrictHostKeyChecking yes, with a
    known_hosts file golem writes beside its key). With --write, add the printed
    Include line to the top of ~/.ssh/config once.
    """

    from requestor.db.engine import Database
    from requestor.db.repository import list_vms
    from requestor.errors import VMNotFoundError
    from requestor.ssh import sshconfig

    settings = app.settings

    async def read() -> list[Any]:
        async with Database(settings.db_path) as db, db.read() as session:
            return await list_vms(session)

    vms = app.run(read())
    known = {vm.name for vm in vms}
    for name in names:
        if name not in known:
            raise VMNotFoundError(name)
    usable, skipped = sshconfig.entries(vms)
    chosen = [e for e in usable if not names or e.name in names]
    skipped = [(n, why) for n, why in skipped if not names or n in names]

    key_dir = settings.ssh_key_dir
    known_hosts = key_dir / sshconfig.KNOWN_HOSTS_NAME
    # Every pin goes in, not only the VMs asked for: entries printed earlier stay valid.
    sshconfig.write_private(known_hosts, sshconfig.render_known_hosts(usable))
    text = sshconfig.render_config(chosen, known_hosts, sorted(set(names)) or None)
    for skipped_name, reason in skipped:
        app.err_console.print(f"[yellow]Skipped {_escape(skipped_name)}: {_escape(reason)}[/]")
    if not write:
        click.echo(text, nl=False)
        return
    config = key_dir / sshconfig.CONFIG_NAME
    sshconfig.write_private(config, text)
    click.echo(
        f"Wrote {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'} to {config}.", err=True
    )
    click.echo("Add this line at the top of ~/.ssh/config (once):", err=True)
    click.echo(sshconfig.include_line(config))


def _escape(text: str) -> str:
    from rich.markup import escape

    from requestor.text import clean

    return escape(clean(text, 300))
