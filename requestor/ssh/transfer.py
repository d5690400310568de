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

import asyncio
import contextlib
import os
import posixpath
import re
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from requestor.errors import GolemError, InputError
from requestor.ssh._asyncssh import asyncssh
from requestor.ssh.tuning import (
    SFTP_BLOCK_SIZE,
    SMALL_FILE,
    TREE_CONCURRENCY,
    sftp_max_requests,
)
from requestor.text import clean

T = TypeVar("T")
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
                upload = _Upload(sftp, plan.vm, report, warn or _default_warn)
                await upload.run(plan.sources, plan.destination)
            else:
                download = _Download(sftp, plan.vm, recursive, report, warn or _default_warn)
                await download.run(plan.sources, plan.destination)
    except asyncssh.SFTPError as error:
        raise _sftp_error(plan, error) from None
    except OSError as error:
        raise _os_error(error) from None


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a tree copy's task group: its first real failure.

    A failed file cancels the others; their cancellations are not the story.
    """
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    for leaf in leaves:
        if not isinstance(leaf, asyncio.CancelledError):
            return leaf
    return leaves[0]


@contextlib.asynccontextmanager
async def _files_at_once() -> AsyncIterator[asyncio.TaskGroup]:
    """A task group whose first failure is raised as itself, not as an ExceptionGroup,
    so the callers' ``except SFTPError`` / ``except OSError`` still see it."""
    try:
        async with asyncio.TaskGroup() as tasks:
            yield tasks
    except BaseExceptionGroup as group:
        raise _first_error(group) from None


def _name_remote_error(error: asyncssh.SFTPError, src: bytes, dst: bytes) -> None:
    """Name the paths as asyncssh names them, so _sftp_error finds the remote one; the
    innermost name wins (a folder's walk must not rename a failure inside it)."""
    if getattr(error, "dstpath", None) is None:
        error.srcpath = src  # type: ignore[attr-defined]
        error.dstpath = dst  # type: ignore[attr-defined]


def _preserved(st: os.stat_result) -> asyncssh.SFTPAttrs:
    """Mode and times of a local file, as asyncssh's ``put(preserve=True)`` sends them
    (built here: ``SFTPAttrs.from_local`` also looks up owner names, once per file)."""
    atime, atime_ns = divmod(st.st_atime_ns, 1_000_000_000)
    mtime, mtime_ns = divmod(st.st_mtime_ns, 1_000_000_000)
    return asyncssh.SFTPAttrs(
        permissions=st.st_mode,
        atime=atime,
        atime_ns=atime_ns,
        mtime=mtime,
        mtime_ns=mtime_ns,
    )


class _Upload:
    """One ``cp LOCAL... VM:...``, as ``put(preserve=True, follow_symlinks=False)``
    would do it, but with the files of a tree copied several at a time.

    A small file costs four round trips (open, write, close, setstat) and next
    to no bandwidth, so a tree of them copied one by one waits on the VM most
    of the time. The walk is sequential (a folder exists before anything is
    written into it) and hands each file to a task, at most TREE_CONCURRENCY
    at once: the walk waits for a free slot, so a huge tree never holds more
    than that many files in memory. Files of SMALL_FILE bytes or more go through
    asyncssh's pipelined ``put``. Fifos and devices are skipped with a note
    (reading one could block the copy or never end).
    """

    def __init__(
        self,
        sftp: asyncssh.SFTPClient,
        vm: str,
        report: Callable[[bytes, bytes, int, int], None],
        warn: Warn,
    ) -> None:
        self._sftp = sftp
        self._vm = vm
        self._report = report
        self._warn = warn
        self._files = asyncio.Semaphore(TREE_CONCURRENCY)
        # One large file at a time: each keeps SFTP_BYTES_IN_FLIGHT in flight on the
        # one channel, so 16 at once queued ~512 MiB in asyncssh's send buffer.
        self._large = asyncio.Semaphore(1)
        self._tasks: asyncio.TaskGroup | None = None
        # Folders in the order made: their modes and times are set once everything
        # is in them, deepest first, so a read-only folder can still be filled.
        self._folders: list[tuple[bytes, bytes, os.stat_result]] = []

    async def run(self, sources: Sequence[str], destination: str) -> None:
        named = os.fsencode(destination)
        into = await self._sftp.isdir(named)
        if len(sources) > 1 and not into:
            raise InputError(
                f"{_remote(self._vm, named)} is not a folder",
                "With several sources the destination must be an existing folder.",
            )
        async with _files_at_once() as self._tasks:
            for source in sources:
                src = os.fsencode(source)
                dst = posixpath.join(named, os.path.basename(src)) if into else named
                await self._entry(src, dst, os.lstat(src))
        # Appended after their contents (post-order): deepest first already.
        for src, dst, st in self._folders:
            await self._named(src, dst, self._sftp.setstat(dst, _preserved(st)))

    async def _named(self, src: bytes, dst: bytes, request: Awaitable[T]) -> T:
        try:
            return await request
        except asyncssh.SFTPError as error:
            _name_remote_error(error, src, dst)
            raise

    async def _entry(self, src: bytes, dst: bytes, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            await self._folder(src, dst)
            self._folders.append((src, dst, st))
        elif stat.S_ISLNK(st.st_mode):
            await self._link(src, dst, st)
        elif stat.S_ISREG(st.st_mode):
            assert self._tasks is not None
            await self._files.acquire()  # released by _file
            self._tasks.create_task(self._file(src, dst, st))
        else:
            self._warn(f"Skipping non-regular file {_local(src)}")

    async def _folder(self, src: bytes, dst: bytes) -> None:
        if not await self._named(src, dst, self._sftp.isdir(dst)):
            await self._named(src, dst, self._sftp.mkdir(dst))
        with os.scandir(src) as listing:
            entries = [
                (entry.path, entry.name, entry.stat(follow_symlinks=False)) for entry in listing
            ]
        for path, name, entry_stat in entries:
            await self._entry(path, posixpath.join(dst, name), entry_stat)

    async def _link(self, src: bytes, dst: bytes, st: os.stat_result) -> None:
        # Copied as a link (what it points at is never read), as sftp put -R does.
        await self._named(src, dst, self._sftp.symlink(os.readlink(src), dst))
        with contextlib.suppress(asyncssh.SFTPOpUnsupported):
            await self._named(
                src, dst, self._sftp.setstat(dst, _preserved(st), follow_symlinks=False)
            )

    async def _file(self, src: bytes, dst: bytes, st: os.stat_result) -> None:
        try:
            await self._named(src, dst, self._send(src, dst, st))
        finally:
            self._files.release()

    async def _send(self, src: bytes, dst: bytes, st: os.stat_result) -> None:
        data = None
        if st.st_size < SMALL_FILE:
            # Blocking, as asyncssh's own local file access is: under SMALL_FILE
            # bytes, usually in the page cache, and nothing else waits on this loop.
            # At most SMALL_FILE + 1 bytes: a file that grew since lstat goes below.
            with open(src, "rb") as handle:  # noqa: ASYNC230
                data = handle.read(SMALL_FILE + 1)
        if data is None or len(data) > SMALL_FILE:
            async with self._large:
                await self._sftp.put(
                    src,
                    dst,
                    preserve=True,
                    recurse=False,
                    follow_symlinks=False,
                    progress_handler=self._report,
                    block_size=SFTP_BLOCK_SIZE,
                    max_requests=sftp_max_requests(self._sftp.limits.max_write_len),
                )
            return
        remote = await self._sftp.open(dst, "wb", encoding=None)
        try:
            if data:
                await remote.write(data, 0)
        finally:
            await remote.close()
        # After close: a server that buffers writes would set the time again on close.
        await self._sftp.setstat(dst, _preserved(st))
        self._report(src, dst, len(data), len(data))


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
        # The walk itself is sequential (a folder exists before its files are
        # written); the files it finds are fetched TREE_CONCURRENCY at a time, and
        # the walk waits for a free slot, so a huge tree is never all in memory.
        self._files = asyncio.Semaphore(TREE_CONCURRENCY)
        # One large file at a time: each keeps SFTP_BYTES_IN_FLIGHT in flight on the
        # one channel, so 16 at once queued ~512 MiB in asyncssh's send buffer.
        self._large = asyncio.Semaphore(1)
        self._tasks: asyncio.TaskGroup | None = None

    async def run(self, sources: Sequence[str], destination: str) -> None:
        named = os.fsencode(destination)
        into = _is_folder(named)
        if len(sources) > 1 and not into:
            raise InputError(
                f"{_local(named)} is not a folder",
                "With several sources the destination must be an existing folder.",
            )
        try:
            async with _files_at_once() as self._tasks:
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
            assert self._tasks is not None
            await self._files.acquire()  # released by _file: the walk waits for a slot
            self._tasks.create_task(self._file(src, dst, attrs))
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
        try:
            await self._fetch(src, dst, attrs)
        finally:
            self._files.release()

    async def _fetch(self, src: bytes, dst: bytes, attrs: asyncssh.SFTPAttrs) -> None:
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

        def report(_src: bytes, _dst: bytes, done: int, total: int) -> None:
            self._report(src, dst, done, total)

        try:
            try:
                if attrs.size is not None and attrs.size < SMALL_FILE:
                    # One read request instead of asyncssh's stat, open, reads and
                    # close: a tree of small files is mostly round trips.
                    data = await self._read_small(src, attrs.size)
                    with os.fdopen(fd, "wb") as local:
                        fd = -1  # closed by the with, whatever happens
                        local.write(data)
                    report(src, temporary, len(data), len(data))
                else:
                    os.close(fd)
                    fd = -1
                    await self._sftp.get(
                        src,
                        temporary,
                        preserve=False,
                        recurse=False,
                        follow_symlinks=True,  # only the VM's side of a swapped-in link is read
                        progress_handler=report,
                        block_size=SFTP_BLOCK_SIZE,
                        max_requests=sftp_max_requests(self._sftp.limits.max_read_len),
                    )
            except asyncssh.SFTPError as error:
                error.srcpath = src  # type: ignore[attr-defined]
                raise
            self._set_attrs(temporary, attrs, default=0o666)
            os.replace(temporary, dst)
        except BaseException as error:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(error, OSError) and error.filename == temporary:
                error.filename = dst
            raise

    async def _read_small(self, src: bytes, size: int) -> bytes:
        """The first ``size`` bytes of a remote file (its size when listed, as asyncssh's
        get copies); opened and read with the VM's side of a link followed, as get does."""
        remote = await self._sftp.open(src, "rb", encoding=None)
        try:
            data: bytes = await remote.read(size, 0) if size else b""
        finally:
            await remote.close()
        return data

    def _set_attrs(self, path: bytes, attrs: asyncssh.SFTPAttrs, default: int = 0o777) -> None:
        mode = attrs.permissions if attrs.permissions is not None else default
        # Never a setuid, setgid or sticky bit, nor more than the umask allows, from a VM.
        os.chmod(path, stat.S_IMODE(mode) & 0o777 & ~self._umask)
        if attrs.mtime is not None:
            atime = attrs.atime if attrs.atime is not None else attrs.mtime
            os.utime(path, (atime, attrs.mtime))
