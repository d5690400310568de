"""Run one command on many VMs at once (``golem vm exec``).

The VMs are selected as the bulk commands select them (``actions.select_vms``);
each is reached through its ``Access`` (the same pinning and the same questions
to the provider as ``golem vm ssh``), at most ``concurrency`` at once and
``PER_PROVIDER_CONNECTIONS`` per provider. Lines are handed to the caller as
they arrive; nothing is printed here.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from requestor.errors import GolemError
from requestor.services.access import Access, target_of
from requestor.services.actions import select_vms
from requestor.services.keyring import Keyring, load_keyring
from requestor.services.runtime import DEFAULT_CONCURRENCY, PER_PROVIDER_CONNECTIONS, Services
from requestor.services.views import CountsOutcomes, VMView, vm_view
from requestor.text import clean

# Called with (VM name, stream, line): stream 1 is stdout, 2 stderr.
OnOutput = Callable[[str, int, bytes], None]

# With ``keep_output`` (--json), at most this much of each stream is kept per VM.
KEPT_OUTPUT = 8 << 20


class ExecResult(enum.StrEnum):
    OK = "ok"  # ran and returned 0
    NONZERO = "nonzero"  # ran and returned another status
    FAILED = "failed"  # could not run (no connection, lost connection, gone...)


@dataclass
class ExecOutcome:
    name: str
    provider: str
    result: ExecResult
    exit_status: int | None = None  # None when the command did not run to its end
    error: str | None = None
    hint: str | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False  # more output came than ``KEPT_OUTPUT`` per stream
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is ExecResult.OK


@dataclass
class ExecReport(CountsOutcomes):
    """Every selected VM's outcome, in selection order once done."""

    command: str
    outcomes: list[ExecOutcome] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0


async def exec_on_vms(
    services: Services,
    names: Sequence[str],
    command: str,
    *,
    all_vms: bool = False,
    provider_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    keep_output: bool = False,
    on_selected: Callable[[list[str]], None] = lambda _names: None,
    on_output: OnOutput = lambda _name, _stream, _line: None,
    on_outcome: Callable[[ExecOutcome], None] = lambda _o: None,
    on_note: Callable[[str], None] = lambda _note: None,
) -> ExecReport | None:
    """Run ``command`` on the VMs selected (as ``golem vm stop`` selects them);
    None when nothing was selected.

    A VM that cannot be reached is an outcome, not an error: the others run.
    """
    selection = await select_vms(services, names, all_vms=all_vms, provider_id=provider_id)
    if selection.note:
        on_note(selection.note)
    vms = [vm_view(vm) for vm in selection.vms]
    if not vms:
        return None
    ring = await load_keyring(services.db, services.settings, [vm.id for vm in vms])
    on_selected([vm.name for vm in vms])
    report = ExecReport(command)
    started = time.perf_counter()
    bound = asyncio.Semaphore(max(1, concurrency))
    per_provider: dict[str, asyncio.Semaphore] = {}

    async def one(vm: VMView) -> ExecOutcome:
        provider_turn = per_provider.setdefault(
            vm.provider_ip, asyncio.Semaphore(PER_PROVIDER_CONNECTIONS)
        )
        async with bound, provider_turn:
            outcome = await _exec_one(services, ring, vm, command, keep_output, on_output)
        on_outcome(outcome)
        return outcome

    tasks = [asyncio.create_task(one(vm)) for vm in vms]
    try:
        report.outcomes = list(await asyncio.gather(*tasks))
    except BaseException:
        # Ctrl-C, or our own output failing (a closed pipe): stop every VM's command.
        report.interrupted = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        report.seconds = time.perf_counter() - started
    return report


class _OutputFailed(Exception):
    """The caller's output handler raised (its stdout closed): the whole command stops."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def _exec_one(
    services: Services,
    ring: Keyring,
    vm: VMView,
    command: str,
    keep_output: bool,
    on_output: OnOutput,
) -> ExecOutcome:
    from requestor.ssh.client import CONNECT_TIMEOUT
    from requestor.ssh.exec import STDOUT, run_lines

    outcome = ExecOutcome(vm.name, vm.provider_id or vm.provider_ip, ExecResult.FAILED)
    started = time.perf_counter()

    def line(stream: int, data: bytes) -> None:
        if keep_output:
            kept = outcome.stdout if stream == STDOUT else outcome.stderr
            room = KEPT_OUTPUT - len(kept)
            if len(data) > room:
                outcome.truncated = True
            kept += data[: max(0, room)]
        try:
            on_output(vm.name, stream, data)
        except Exception as error:
            raise _OutputFailed(error) from error

    try:
        async with AsyncExitStack() as stack:
            # The command's own database: a first-use pin is written through it.
            target = target_of(vm, services.settings, await ring.key_for(vm))
            access = Access(services.settings, target, stack, services.db)
            conn = await access.connect(attempt_limit=CONNECT_TIMEOUT)
            async with conn:
                status = await run_lines(conn, command, vm.name, line)
        outcome.exit_status = status
        outcome.result = ExecResult.OK if status == 0 else ExecResult.NONZERO
    except _OutputFailed as failed:
        raise failed.error from None
    except GolemError as error:
        outcome.error, outcome.hint = error.message, error.hint
    except Exception as error:  # isolate one VM's surprise from the others
        outcome.error = f"internal error: {type(error).__name__}: {clean(error, 200)}"
    outcome.seconds = time.perf_counter() - started
    return outcome
