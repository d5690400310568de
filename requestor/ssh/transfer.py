"""``golem vm cp``: files and folders to and from a VM over SFTP.

Permissions and modification times are kept, folders need ``recursive`` as
with ``cp -r``, and a progress callback sees every block.

A VM is not trusted with our disk. Downloads walk the remote tree here rather
than in asyncssh: nothing from the VM becomes a local symbolic link (a chain
such as ``l2 -> sub/..``, ``l3 -> l2/..`` passes a textual "inside the
destination" check yet points above it, and a later copy would write through
it), remote links and other non-regular files are skipped with one note each,
every file is written to a fresh temporary file and renamed into place (never
through a link already there), and modes are clamped to ``mode & 0o777 &
~umask``. Uploads copy local symbolic links as links (never what they point
at), as ``sftp put -R`` keeps them.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncssh

from requestor.errors import GolemError, InputError
from requestor.text import clean

# Many requests in flight hide the round trip; asyncssh caps it at 128 itself.
MAX_REQUESTS = 128
_VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Progress = Callable[[str, str, int, int], None]  # source, destination, done, total
Warn = Callable[[str], None]
_TEMP_PREFIX = b".golem-cp-"


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
            raise GolemError(
                f"No such local file or folder: {_local(source)}", "Check the path and try again."
            )
        if os.path.isdir(source) and not os.path.islink(source) and not recursive:
            raise InputError(f"{_local(source)} is a folder", "Pass -r to copy folders.")


def _local(path: str | bytes | None) -> str:
    """A local path for a message: text, never a bytes repr."""
    return clean(os.fsdecode(path), 300) if path is not None else "?"


def _remote(vm: str, path: str | bytes | None) -> str:
    """A path on the VM for a message; it may come from the VM, so it is cleaned."""
    return f"{vm}:{clean(os.fsdecode(path), 300)}" if path is not None else vm


def _default_warn(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


_NOT_A_FOLDER_HINT = "A part of the path is a file, not a folder; check the path."


def _sftp_error(plan: CopyPlan, error: asyncssh.SFTPError) -> GolemError:
    reason = clean(error.reason or type(error).__name__, 200)
    # asyncssh names the paths of the entry that failed; the remote one is the
    # source of a download and the destination of an upload.
    path = getattr(error, "dstpath" if plan.upload else "srcpath", None)
    where = _remote(plan.vm, path) if path is not None else plan.vm
    lowered = reason.lower()
    if isinstance(error, asyncssh.SFTPFileIsADirectory) or "is a directory" in lowered:
        return InputError(f"{where} is a folder", "Pass -r to copy folders.")
    if isinstance(error, asyncssh.SFTPNotADirectory) or "not a directory" in lowered:
        return GolemError(f"Not a folder on {where}", _NOT_A_FOLDER_HINT)
    if "must be a directory" in lowered:
        return InputError(
            f"{where} is not a folder",
            "With several sources the destination must be an existing folder.",
        )
    if isinstance(error, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
        return GolemError(
            f"No such file or folder on {where}",
            f"Check the path, e.g. with 'golem vm ssh {plan.vm} -- ls -la'.",
        )
    if isinstance(error, asyncssh.SFTPPermissionDenied):
        return GolemError(
            f"Permission denied on {where}", "The VM's user may not read or write there."
        )
    return GolemError(
        f"Copy to or from {where} failed: {reason}", "Check the paths and the VM's free space."
    )


def _os_error(error: OSError) -> GolemError:
    name = _local(error.filename)
    if isinstance(error, IsADirectoryError):
        return InputError(f"{name} is a folder", "Pass -r to copy folders.")
    if isinstance(error, NotADirectoryError):
        return GolemError(f"Not a folder: {name}", _NOT_A_FOLDER_HINT)
    if isinstance(error, FileNotFoundError):
        return GolemError(
            f"No such local file or folder: {name}", "Check the path; create missing folders first."
        )
    if isinstance(error, PermissionError):
        return GolemError(f"Permission denied: {name}", "Check the local file's permissions.")
    reason = os.strerror(error.errno) if error.errno else str(error)
    return GolemError(f"Copy failed: {name}: {reason}", "Check the local path and free space.")


async def copy(
    conn: asyncssh.SSHClientConnection,
    plan: CopyPlan,
    *,
    recursive: bool,
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> None:
    if plan.upload:
        _check_local_sources(plan.sources, recursive)

    def report(src: bytes, dst: bytes, done: int, total: int) -> None:
        if progress is not None:
            progress(os.fsdecode(src), os.fsdecode(dst), done, total)

    try:
        async with conn.start_sftp_client() as sftp:
            if plan.upload:
                # Local links are copied as links (follow_symlinks=False): what
                # they point at, inside the tree or not, is never read.
                await sftp.put(
                    plan.sources,
                    plan.destination,
                    preserve=True,
                    recurse=recursive,
                    follow_symlinks=False,
                    progress_handler=report,
                    max_requests=MAX_REQUESTS,
                )
            else:
                download = _Download(sftp, plan.vm, recursive, report, warn or _default_warn)
                await download.run(plan.sources, plan.destination)
    except asyncssh.SFTPError as error:
        raise _sftp_error(plan, error) from None
    except OSError as error:
        raise _os_error(error) from None


def _local_kind(path: bytes) -> str:
    """What is at a local path, without following a link: missing, link, folder or file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(mode):
        return "link"
    return "folder" if stat.S_ISDIR(mode) else "file"


def _is_folder(path: bytes) -> bool:
    return os.path.isdir(path)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _Download:
    """One ``cp VM:... LOCAL``: a walk of the remote tree that never trusts its links."""

    def __init__(
        self,
        sftp: asyncssh.SFTPClient,
        vm: str,
        recursive: bool,
        report: Callable[[bytes, bytes, int, int], None],
        warn: Warn,
    ) -> None:
        self._sftp = sftp
        self._vm = vm
        self._recursive = recursive
        self._report = report
        self._warn = warn
        self._umask = _current_umask()
        # Folders we created, in the order made: modes and times are set last,
        # deepest first, so a read-only folder can still be filled.
        self._folders: list[tuple[bytes, asyncssh.SFTPAttrs]] = []

    async def run(self, sources: Sequence[str], destination: str) -> None:
        named = os.fsencode(destination)
        into = _is_folder(named)
        if len(sources) > 1 and not into:
            raise InputError(
                f"{_local(named)} is not a folder",
                "With several sources the destination must be an existing folder.",
            )
        try:
            for source in sources:
                src = os.fsencode(source)
                # The path the user named is followed on the VM, as scp does;
                # links inside a folder are not.
                try:
                    attrs = await self._sftp.stat(src)
                except asyncssh.SFTPError as error:
                    error.srcpath = src  # type: ignore[attr-defined]
                    raise
                base = posixpath.basename(src.rstrip(b"/"))
                if into and base not in (b"", b".", b".."):
                    target = os.path.join(named, base)
                else:
                    target = named
                await self._entry(src, target, attrs, named_by_user=target == named)
        finally:
            for path, attrs in reversed(self._folders):
                with contextlib.suppress(OSError):
                    self._set_attrs(path, attrs)

    async def _entry(
        self, src: bytes, dst: bytes, attrs: asyncssh.SFTPAttrs, named_by_user: bool = False
    ) -> None:
        kind = attrs.type
        if kind == asyncssh.FILEXFER_TYPE_DIRECTORY:
            await self._folder(src, dst, attrs, named_by_user)
        elif kind == asyncssh.FILEXFER_TYPE_REGULAR:
            await self._file(src, dst, attrs)
        elif kind == asyncssh.FILEXFER_TYPE_SYMLINK:
            self._warn(f"Skipping symbolic link {_remote(self._vm, src)} (links are not copied)")
        else:
            self._warn(f"Skipping non-regular file {_remote(self._vm, src)}")

    async def _folder(
        self, src: bytes, dst: bytes, attrs: asyncssh.SFTPAttrs, named_by_user: bool
    ) -> None:
        if not self._recursive:
            raise InputError(f"{_remote(self._vm, src)} is a folder", "Pass -r to copy folders.")
        kind = _local_kind(dst)
        if kind == "link" and not named_by_user:
            # Not ours to follow: a link the user (or an earlier tool) left there.
            self._warn(f"Skipping {_remote(self._vm, src)}: {_local(dst)} is a symbolic link")
            return
        if kind != "missing":
            if not _is_folder(dst):
                raise GolemError(
                    f"Cannot copy folder {_remote(self._vm, src)} over the file {_local(dst)}",
                    "Remove or rename the local file, or copy somewhere else.",
                )
        else:
            os.mkdir(dst, 0o700)
            self._folders.append((dst, attrs))
        try:
            names = [name async for name in self._sftp.scandir(src)]
        except asyncssh.SFTPError as error:
            error.srcpath = src  # type: ignore[attr-defined]
            raise
        for name in names:
            filename = name.filename
            assert isinstance(filename, bytes)
            if filename in (b".", b".."):
                continue
            if b"/" in filename or b"\\" in filename or b"\0" in filename:
                self._warn(f"Skipping {_remote(self._vm, filename)}: not a valid file name")
                continue
            await self._entry(
                posixpath.join(src, filename), os.path.join(dst, filename), name.attrs
            )

    async def _file(self, src: bytes, dst: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        if _local_kind(dst) == "folder":
            raise GolemError(
                f"Cannot copy file {_remote(self._vm, src)} over the folder {_local(dst)}",
                "Remove or rename the local folder, or copy somewhere else.",
            )
        # A fresh file beside the target, renamed over it at the end: a link
        # already at ``dst`` is replaced, never written through.
        try:
            fd, temporary = tempfile.mkstemp(dir=os.path.dirname(dst) or b".", prefix=_TEMP_PREFIX)
        except OSError as error:
            error.filename = dst  # the file the user asked for, not our temporary name
            raise
        os.close(fd)

        def report(_src: bytes, _dst: bytes, done: int, total: int) -> None:
            self._report(src, dst, done, total)

        try:
            try:
                await self._sftp.get(
                    src,
                    temporary,
                    preserve=False,
                    recurse=False,
                    follow_symlinks=True,  # only the VM's side of a swapped-in link is read
                    progress_handler=report,
                    max_requests=MAX_REQUESTS,
                )
            except asyncssh.SFTPError as error:
                error.srcpath = src  # type: ignore[attr-defined]
                raise
            self._set_attrs(temporary, attrs, default=0o666)
            os.replace(temporary, dst)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(error, OSError) and error.filename == temporary:
                error.filename = dst
            raise

    def _set_attrs(self, path: bytes, attrs: asyncssh.SFTPAttrs, default: int = 0o777) -> None:
        mode = attrs.permissions if attrs.permissions is not None else default
        # Never a setuid, setgid or sticky bit, nor more than the umask allows, from a VM.
        os.chmod(path, stat.S_IMODE(mode) & 0o777 & ~self._umask)
        if attrs.mtime is not None:
            atime = attrs.atime if attrs.atime is not None else attrs.mtime
            os.utime(path, (atime, attrs.mtime))
