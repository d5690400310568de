"""What the SSH commands show (ssh, cp, forward, ssh-config): spinners, copy
progress, re-pin prompts and messages.

rich is imported only inside the functions that draw, so ``golem vm ssh NAME --
CMD`` that neither waits nor draws never loads it. Text that came from local
state or a provider is cleaned and escaped before rich sees it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from requestor.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console
    from rich.status import Status

    from requestor.services.access import RepinResult, SSHConfigResult
    from requestor.services.remote import ExecReport
    from requestor.ssh.transfer import CopyPlan


def _escape(text: str, limit: int = 300) -> str:
    from rich.markup import escape

    from requestor.text import clean

    return escape(clean(text, limit))


class Spinner:
    """A spinner on stderr while we wait for SSH when stderr is a terminal; else
    one plain line saying what we wait for (a script's log shows why it paused)."""

    def __init__(self, console: Callable[[], Console], text: str) -> None:
        # A factory: the console (and rich) is built only when the spinner shows.
        self._console = console
        self._text = text
        self._status: Status | None = None
        self._said = False

    def start(self) -> None:
        if not sys.stderr.isatty():
            if not self._said:
                self._said = True
                from requestor.text import clean

                click.echo(clean(self._text, 300), err=True)
            return
        if self._status is None:
            self._status = self._console().status(_escape(self._text))
            self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


class TransferProgress:
    """One bar per file of at least LARGE bytes; small files go by unannounced."""

    LARGE = 1 << 20

    def __init__(self, console: Console) -> None:
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
            console=console,
            transient=True,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> TransferProgress:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def warn(self, message: str) -> None:
        from rich.text import Text

        self._progress.console.print(Text(message))  # above the bars, not through them

    def update(self, source: str, _destination: str, done: int, total: int) -> None:
        if total < self.LARGE:
            return
        task = self._tasks.get(source)
        if task is None:
            label = _escape(source.rsplit("/", 1)[-1], 40)
            task = self._tasks[source] = self._progress.add_task(label, total=total)
        self._progress.update(task, completed=done)
        if done >= total:
            self._progress.remove_task(task)
            del self._tasks[source]


def confirm_repin(err_console: Console, name: str, yes: bool, old: str | None, new: str) -> bool:
    """Show both fingerprints and ask (or refuse off a terminal without --yes)."""
    from rich.text import Text

    if old is None:
        return True  # nothing pinned: this is the first use
    err_console.print(Text(f"Pinned host key of {name}: {old}"))
    err_console.print(Text(f"Host key shown now:    {' ' * len(name)} {new}"))
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


def repinned(name: str, result: RepinResult) -> None:
    if result.changed:
        click.echo(f"Pinned host key {result.new} for {name}.", err=True)
    else:
        click.echo(f"The host key of {name} is unchanged ({result.new}); nothing to do.", err=True)


def forward_ready(address: str, remote_port: int, name: str, as_json: bool = False) -> None:
    """The local address on stdout (for scripts); a note on stderr at a terminal."""
    if as_json:
        host, _, port = address.rpartition(":")
        # One line: a script reads it while the forward runs on.
        body = {
            "vm": name,
            "address": address,
            "host": host,
            "port": int(port),
            "remote_port": remote_port,
        }
        click.echo(_dump(body, indent=None))
    else:
        click.echo(address)
    sys.stdout.flush()
    if sys.stderr.isatty():
        click.echo(
            f"Forwarding {address} to port {remote_port} on {name}; Ctrl-C to stop.", err=True
        )


def ssh_config(err_console: Console, result: SSHConfigResult) -> None:
    for skipped_name, reason in result.skipped:
        err_console.print(f"[yellow]Skipped {_escape(skipped_name)}: {_escape(reason)}[/]")
    if result.config_path is None:
        click.echo(result.text, nl=False)
        return
    count = result.entries
    click.echo(
        f"Wrote {count} entr{'y' if count == 1 else 'ies'} to {result.config_path}.", err=True
    )
    click.echo("Add this line at the top of ~/.ssh/config (once):", err=True)
    click.echo(result.include_line)


def ssh_config_json(result: SSHConfigResult) -> None:
    click.echo(
        _dump(
            {
                "entries": result.entries,
                "config": result.text,
                "config_path": None if result.config_path is None else str(result.config_path),
                "include_line": result.include_line,
                "skipped": [{"name": name, "reason": why} for name, why in result.skipped],
            }
        )
    )


class CopyTally:
    """What a copy did, for ``cp --json``: files finished, their bytes, warnings."""

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.warnings: list[str] = []

    def update(self, _source: str, _destination: str, done: int, total: int) -> None:
        if done >= total:
            self.files += 1
            self.bytes += total

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def copied_json(plan: CopyPlan, tally: CopyTally) -> None:
    click.echo(
        _dump(
            {
                "vm": plan.vm,
                "direction": "upload" if plan.upload else "download",
                "sources": plan.sources,
                "destination": plan.destination,
                "files": tally.files,
                "bytes": tally.bytes,
                "warnings": tally.warnings,
            }
        )
    )


def _dump(data: object, indent: int | None = 2) -> str:
    import json

    # ASCII, as every --json output (requestor.cli.render.dump_json, without rich).
    return json.dumps(data, indent=indent, ensure_ascii=True)


# --- exec on many VMs ------------------------------------------------------------


class PrefixedOutput:
    """Each line of each VM's output on our stdout or stderr (as the VM wrote it),
    after ``NAME: ``; a line is written whole, so VMs' lines never mix."""

    def __init__(self) -> None:
        self._streams: dict[int, BinaryIO] = {1: sys.stdout.buffer, 2: sys.stderr.buffer}

    def line(self, name: str, stream: int, data: bytes) -> None:
        out = self._streams[stream]
        # The name is ours (validated when created); the line is the VM's bytes.
        out.write(name.encode() + b": " + data + (b"" if data.endswith(b"\n") else b"\n"))
        out.flush()


def exec_summary(report: ExecReport) -> None:
    """What did not go well, one line per VM, then the counts (stderr)."""
    from requestor.text import clean

    for outcome in report.outcomes:
        if outcome.result.value == "nonzero":
            click.echo(f"{outcome.name}: exited with status {outcome.exit_status}", err=True)
        elif outcome.result.value == "failed":
            click.echo(f"{outcome.name}: failed: {clean(outcome.error or '', 300)}", err=True)
    total = len(report.outcomes)
    nonzero = sum(1 for o in report.outcomes if o.result.value == "nonzero")
    failed = report.failed - nonzero
    parts = [f"{report.succeeded} returned 0"]
    if nonzero:
        parts.append(f"{nonzero} returned non-zero")
    if failed:
        parts.append(f"{failed} could not run it")
    click.echo(f"exec on {total} VM(s): {', '.join(parts)}, in {report.seconds:.2f} s", err=True)


def exec_json(report: ExecReport) -> list[dict[str, Any]]:
    """One object per VM; the keys are documented in docs/json.md."""
    return [
        {
            "name": o.name,
            "provider_id": o.provider,
            "result": o.result.value,
            "ok": o.ok,
            "exit_status": o.exit_status,
            "stdout": o.stdout.decode("utf-8", errors="replace"),
            "stderr": o.stderr.decode("utf-8", errors="replace"),
            "output_truncated": o.truncated,
            "error": o.error,
            "seconds": round(o.seconds, 3),
        }
        for o in report.outcomes
    ]
