"""``golem vm wait``: block until each selected VM is running, stopped, or runs a
command over SSH, or a deadline passes.

``running`` and ``stopped`` ask the providers in rounds through the refresh
action (so what they answer is recorded, as ``list --refresh`` records it);
``ssh`` connects through each VM's ``Access`` (pins as ``golem vm ssh`` does) and
runs ``true``.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from requestor.errors import AccessNotGrantedError, GolemError, VMGoneError
from requestor.services.access import Access, target_of
from requestor.services.actions import Action, Result, run_action, select_vms
from requestor.services.keyring import Keyring, load_keyring
from requestor.services.runtime import DEFAULT_CONCURRENCY, PER_PROVIDER_CONNECTIONS, Services
from requestor.services.views import VMView, vm_view
from requestor.status import VMStatus

# How often a VM that is not there yet is asked again.
POLL_INTERVAL = 1.0


class Goal(enum.StrEnum):
    SSH = "ssh"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Arrival:
    name: str
    seconds: float  # from the start of the wait

    @property
    def ok(self) -> bool:
        """An arrival is a success, as progress counts it."""
        return True


@dataclass
class WaitReport:
    goal: Goal
    timeout: float
    arrived: list[Arrival] = field(default_factory=list)
    # Each VM that did not get there, with the last thing that stood in its way.
    missing: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


async def wait_for(
    services: Services,
    names: Sequence[str],
    goal: Goal,
    within: float,
    *,
    all_vms: bool = False,
    provider_id: str | None = None,
    on_selected: Callable[[list[str]], None] = lambda _names: None,
    on_arrival: Callable[[Arrival], None] = lambda _a: None,
    on_note: Callable[[str], None] = lambda _note: None,
) -> WaitReport | None:
    """Wait for every VM selected (as ``golem vm stop`` selects them) to reach
    ``goal`` within ``within`` seconds; None when nothing was selected."""
    selection = await select_vms(services, names, all_vms=all_vms, provider_id=provider_id)
    if selection.note:
        on_note(selection.note)
    vms = selection.vms
    if not vms:
        return None
    on_selected([vm.name for vm in vms])
    report = WaitReport(goal, within)
    started = time.monotonic()
    deadline = started + within

    def arrived(name: str) -> None:
        arrival = Arrival(name, time.monotonic() - started)
        report.arrived.append(arrival)
        on_arrival(arrival)

    if goal is Goal.SSH:
        views = [vm_view(vm) for vm in vms]
        ring = await load_keyring(services.db, services.settings, [vm.id for vm in views])
        await _wait_ssh(services, ring, views, deadline, arrived, report.missing)
    else:
        wanted = VMStatus.RUNNING if goal is Goal.RUNNING else VMStatus.STOPPED
        pending = list(vms)
        while True:
            round_ = await run_action(services, Action.REFRESH, pending)
            by_name = {o.name: o for o in round_.outcomes}
            still = []
            for vm in pending:
                outcome = by_name[vm.name]
                if outcome.ok and outcome.status is wanted:
                    arrived(vm.name)
                    continue
                if outcome.status is VMStatus.GONE:
                    report.missing[vm.name] = "its provider no longer knows it"
                    continue
                if outcome.result is Result.HANDLED_ELSEWHERE and outcome.status is None:
                    # Destroyed or forgotten by another golem sharing the database.
                    report.missing[vm.name] = outcome.note or "removed meanwhile"
                    continue
                status = outcome.status.value if outcome.status else "unknown"
                report.missing[vm.name] = outcome.error or f"still {status}"
                still.append(vm)
            pending = still
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            await asyncio.sleep(min(POLL_INTERVAL, remaining))
    for arrival in report.arrived:
        report.missing.pop(arrival.name, None)
    report.seconds = time.monotonic() - started
    return report


async def _wait_ssh(
    services: Services,
    ring: Keyring,
    vms: list[VMView],
    deadline: float,
    arrived: Callable[[str], None],
    missing: dict[str, str],
) -> None:
    bound = asyncio.Semaphore(DEFAULT_CONCURRENCY)
    per_provider: dict[str, asyncio.Semaphore] = {}

    async def one(vm: VMView) -> None:
        provider_turn = per_provider.setdefault(
            vm.provider_ip, asyncio.Semaphore(PER_PROVIDER_CONNECTIONS)
        )
        missing[vm.name] = "SSH did not answer"
        while True:
            async with bound, provider_turn:
                reason = await _ssh_runs(services, ring, vm, deadline)
            if reason is None:
                arrived(vm.name)
                return
            missing[vm.name] = reason
            remaining = deadline - time.monotonic()
            if reason.startswith(_FINAL) or remaining <= 0:
                return
            # Stopped, or not answering yet: someone may be starting it.
            await asyncio.sleep(min(POLL_INTERVAL, remaining))

    await asyncio.gather(*(one(vm) for vm in vms))


# Reasons that waiting longer cannot change.
_FINAL = ("gone:", "refused:")


async def _ssh_runs(services: Services, ring: Keyring, vm: VMView, deadline: float) -> str | None:
    """None when ``true`` ran and returned 0; else why not (``gone: ...`` or
    ``refused: ...`` when waiting longer cannot help)."""
    from requestor.ssh.exec import run_lines

    try:
        async with AsyncExitStack() as stack:
            target = target_of(vm, services.settings, await ring.key_for(vm))
            access = Access(services.settings, target, stack, services.db)
            conn = await access.connect(wait=max(0.0, deadline - time.monotonic()))
            async with conn:
                status = await run_lines(conn, "true", vm.name, lambda _stream, _line: None)
    except VMGoneError as error:
        return f"gone: {error.message}"
    except AccessNotGrantedError as error:
        return f"refused: {error.message}"
    except GolemError as error:
        return error.message
    return None if status == 0 else f"'true' returned {status}"
