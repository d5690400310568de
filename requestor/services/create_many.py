"""Create several VMs in one command: every name checked first, the VMs placed on
the providers that fit (each provider's free resources counting the VMs already
placed on it), then created concurrently, each through ``create_vm`` (recorded
locally before its POST, as for one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from requestor.db import repository
from requestor.errors import GolemError, InputError, InsufficientResourcesError, NameTakenError
from requestor.services.create import (
    CreateRequest,
    CreateResult,
    Placement,
    create_vm,
    validate_create,
)
from requestor.services.provider_search import ProviderView, rank, reachable_fitting
from requestor.services.runtime import Services
from requestor.services.views import CountsOutcomes
from requestor.text import clean
from requestor.wire.models import Advertisement, Resources

# VMs created at once; the HTTP client's per-provider limit applies below this.
CREATE_CONCURRENCY = 50
# (VM name, what it is doing now), for live progress.
Step = Callable[[str, str], None]


def numbered(name: str, count: int) -> list[str]:
    """``--count N`` with one NAME: NAME-1 ... NAME-N."""
    return [f"{name}-{index}" for index in range(1, count + 1)]


@dataclass(frozen=True)
class CreateOutcome:
    name: str
    provider: str  # the provider it was placed on
    result: CreateResult | None = None  # set when it was created
    error: str | None = None
    hint: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass
class CreateReport(CountsOutcomes):
    outcomes: list[CreateOutcome] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0


def validate_many(requests: Sequence[CreateRequest]) -> None:
    """Every name and the resources, before anything is touched (exit 2 on any)."""
    seen: set[str] = set()
    for request in requests:
        validate_create(request)
        if request.name in seen:
            raise InputError(
                f"The name {request.name} is given twice", "Give each VM its own name."
            )
        seen.add(request.name)


async def create_many(
    services: Services,
    requests: Sequence[CreateRequest],
    *,
    on_placed: Callable[[list[tuple[str, str]]], None] = lambda _placed: None,
    on_step: Step = lambda _name, _step: None,
    on_outcome: Callable[[CreateOutcome], None] = lambda _o: None,
) -> CreateReport:
    """Create every VM of ``requests`` (same resources, same ``provider_id``).

    Nothing is created when a name is bad or taken, or when the VMs do not all
    fit; after that, one VM's failure is its outcome and the others go on.
    """
    validate_many(requests)
    names = [r.name for r in requests]
    async with services.db.read() as session:
        taken = [name for name in names if await repository.find_vm(session, name) is not None]
    if taken:
        raise NameTakenError(
            f"{'A VM' if len(taken) == 1 else 'VMs'} named {', '.join(taken)} already "
            f"exist{'s' if len(taken) == 1 else ''}; nothing was created"
        )
    first = requests[0]
    placements = await _place(services, first, len(requests), lambda step: on_step("", step))
    on_placed(
        [(r.name, p.advertisement.provider_id) for r, p in zip(requests, placements, strict=True)]
    )

    report = CreateReport()
    started = time.perf_counter()
    bound = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(request: CreateRequest, placement: Placement) -> CreateOutcome:
        provider = placement.advertisement.provider_id
        began = time.perf_counter()
        async with bound:
            try:
                result = await create_vm(
                    services,
                    request,
                    lambda step: on_step(request.name, step),
                    placed=placement,
                )
                outcome = CreateOutcome(request.name, provider, result)
            except GolemError as error:
                outcome = CreateOutcome(request.name, provider, None, error.message, error.hint)
            except Exception as error:  # isolate one VM's surprise from the others
                outcome = CreateOutcome(
                    request.name,
                    provider,
                    None,
                    f"internal error: {type(error).__name__}: {clean(error, 200)}",
                )
        outcome = CreateOutcome(
            outcome.name,
            outcome.provider,
            outcome.result,
            outcome.error,
            outcome.hint,
            time.perf_counter() - began,
        )
        report.outcomes.append(outcome)
        on_outcome(outcome)
        return outcome

    tasks = [asyncio.create_task(one(r, p)) for r, p in zip(requests, placements, strict=True)]
    try:
        done = await asyncio.gather(*tasks)
    except BaseException:
        report.interrupted = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        report.seconds = time.perf_counter() - started
    report.outcomes = list(done)  # in the order the names were given
    return report


async def _place(
    services: Services, request: CreateRequest, count: int, progress: Callable[[str], None]
) -> list[Placement]:
    """A provider for each of ``count`` VMs like ``request``: the named one (if it
    has room for all of them), else spread: each VM goes to the reachable provider
    that has room for it once the VMs already placed are counted, the one with
    the fewest of them first, then the one with the most room left."""
    need = (request.cpu, request.memory, request.storage)
    if request.provider_id is not None:
        progress(f"Verifying provider {clean(request.provider_id, 80)}")
        ad = await services.discovery.advertisement(request.provider_id)
        fit = _how_many_fit(ad.resources, *need)
        if fit < count:
            raise InsufficientResourcesError(
                f"Provider {clean(ad.provider_id, 80)} has room for {fit} of the {count} VMs "
                f"({ad.resources.cpu} CPU, {ad.resources.memory} GB RAM and "
                f"{ad.resources.storage} GB storage free); nothing was created",
                hint="Ask for fewer or smaller VMs, or leave out --provider-id to spread them.",
            )
        return [Placement(ad)] * count
    views, _skipped = await reachable_fitting(services, *need, progress)
    # What each provider advertised (recorded as such), and what is left of it.
    advertised = {v.advertisement.provider_id: v.advertisement for v in views}
    left = {v.advertisement.provider_id: v for v in views}
    placed: dict[str, int] = dict.fromkeys(left, 0)
    placements: list[Placement] = []
    for _ in range(count):
        candidates = [v for v in left.values() if v.advertisement.resources.fits(*need)]
        if not candidates:
            room = sum(_how_many_fit(v.advertisement.resources, *need) for v in views)
            raise InsufficientResourcesError(
                f"The {len(views)} reachable providers that fit have room for {room} of the "
                f"{count} VMs; nothing was created",
                hint="Ask for fewer or smaller VMs, or try again when more providers advertise.",
            )
        # Spread: the provider with the fewest of these VMs so far, then the most room.
        best = min(candidates, key=lambda v: (placed[v.advertisement.provider_id], rank(v)))
        chosen = best.advertisement.provider_id
        placements.append(
            Placement(advertised[chosen], _reason(best, len(views)), best.capabilities)
        )
        left[chosen] = _minus(best, *need)
        placed[chosen] += 1
    return placements


def _how_many_fit(free: Resources, cpu: int, memory: int, storage: int) -> int:
    return min(free.cpu // cpu, free.memory // memory, free.storage // storage)


def _minus(view: ProviderView, cpu: int, memory: int, storage: int) -> ProviderView:
    free = view.advertisement.resources
    rest = Resources(
        cpu=free.cpu - cpu, memory=free.memory - memory, storage=free.storage - storage
    )
    ad: Advertisement = view.advertisement.model_copy(update={"resources": rest})
    return dataclasses.replace(view, advertisement=ad)


def _reason(view: ProviderView, providers: int) -> str:
    free = view.advertisement.resources
    return (
        f"spread over the {providers} reachable providers that fit: it had the fewest of "
        f"these VMs, and room left ({free.cpu} CPU, {free.memory} GB RAM, "
        f"{free.storage} GB storage) once those placed before were counted"
    )
