"""``golem vm cp``: files and folders to and from a VM over SFTP.

Permissions and modification times are kept (``preserve``), folders need
``recursive`` as with ``cp -r``, and a progress callback sees every block.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncssh

from requestor.errors import GolemError, InputError

# Many requests in flight hide the round trip; asyncssh caps it at 128 itself.
MAX_REQUESTS = 128
_VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Progress = Callable[[str, str, int, int], None]  # source, destination, done, total


@dataclass(frozen=True)
class Endpoint:
    vm: str | None  # None: a local path
    path: str

    def __str__(self) -> str:
        return self.path if self.vm is None else f"{self.vm}:{self.path}"


def parse_endpoint(text: str) -> Endpoint:
    """``NAME:path`` is on a VM; anything else (``./a:b``, ``/x:y``) is local, as with scp."""
    head, colon, tail = text.partition(":")
    if colon and _VM_NAME.match(head):
        return Endpoint(head, _remote_path(tail))
    return Endpoint(None, text)


def _remote_path(path: str) -> str:
    # SFTP servers resolve relative paths in the login directory, as scp does;
    # "~" is the shell's word for that directory, which SFTP does not know.
    if path in ("", "~"):
        return "."
    if path.startswith("~/"):
        return path[2:] or "."
    return path


@dataclass(frozen=True)
class CopyPlan:
    vm: str
    upload: bool
    sources: list[str]
    destination: str


def plan_copy(sources: Sequence[str], destination: str) -> CopyPlan:
    """Which VM, which direction; refuse what the copy cannot mean."""
    srcs = [parse_endpoint(s) for s in sources]
    dst = parse_endpoint(destination)
    src_vms = {s.vm for s in srcs}
    if len(src_vms) > 1:
        raise InputError(
            "All sources must be on the same side: all local, or all on one VM",
            "Copy from one place at a time.",
        )
    src_vm = src_vms.pop()
    if (src_vm is None) == (dst.vm is None):
        raise InputError(
            "Exactly one side of the copy must be on a VM (NAME:path)",
            "For example: golem vm cp ./site my-vm:www  or  golem vm cp my-vm:log.txt .",
        )
    vm = dst.vm if src_vm is None else src_vm
    assert vm is not None
    return CopyPlan(
        vm=vm, upload=src_vm is None, sources=[s.path for s in srcs], destination=dst.path
    )


def _check_local_sources(sources: Sequence[str], recursive: bool) -> None:
    for source in sources:
        if not os.path.lexists(source):
            raise GolemError(f"No such local file or folder: {source}")
        if os.path.isdir(source) and not recursive:
            raise InputError(f"{source} is a folder", "Pass -r to copy folders.")


def _sftp_error(plan: CopyPlan, error: asyncssh.SFTPError) -> GolemError:
    reason = error.reason or type(error).__name__
    if isinstance(error, asyncssh.SFTPFileIsADirectory | asyncssh.SFTPFailure) and (
        "is a directory" in reason
    ):
        return InputError(f"{reason} (on {plan.vm})", "Pass -r to copy folders.")
    if isinstance(error, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
        return GolemError(f"No such file or folder on {plan.vm}: {reason}")
    if isinstance(error, asyncssh.SFTPPermissionDenied):
        return GolemError(f"Permission denied on {plan.vm}: {reason}")
    return GolemError(f"Copy to or from {plan.vm} failed: {reason}")


async def copy(
    conn: asyncssh.SSHClientConnection,
    plan: CopyPlan,
    *,
    recursive: bool,
    progress: Progress | None = None,
) -> None:
    if plan.upload:
        _check_local_sources(plan.sources, recursive)

    def report(src: bytes, dst: bytes, done: int, total: int) -> None:
        if progress is not None:
            progress(os.fsdecode(src), os.fsdecode(dst), done, total)

    try:
        async with conn.start_sftp_client() as sftp:
            transfer = sftp.put if plan.upload else sftp.get
            await transfer(
                plan.sources,
                plan.destination,
                preserve=True,
                recurse=recursive,
                progress_handler=report,
                max_requests=MAX_REQUESTS,
            )
    except asyncssh.SFTPError as error:
        raise _sftp_error(plan, error) from None
    except IsADirectoryError as error:
        raise InputError(f"{error.filename} is a folder", "Pass -r to copy folders.") from None
    except FileNotFoundError as error:
        raise GolemError(f"No such local file or folder: {error.filename}") from None
    except PermissionError as error:
        raise GolemError(f"Permission denied: {error.filename}") from None
