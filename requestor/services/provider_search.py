"""Providers: what discovery lists, whether each answers now, and which fits best."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from requestor.errors import (
    GolemError,
    InsufficientResourcesError,
    ProviderUnavailableError,
)
from requestor.services.completion import remember_seen
from requestor.services.runtime import Network
from requestor.wire.models import Advertisement

# Probes are tiny and bounded by a 4 s timeout: ask this many providers at once.
PROBE_CONCURRENCY = 256
# Tells the user what a long call is doing (the CLI shows it in a spinner).
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProviderView:
    advertisement: Advertisement
    reachable: bool | None = None  # None: not probed
    latency_ms: float | None = None
    error: str | None = None


def _latency(view: ProviderView) -> tuple[bool, float]:
    # Unprobed or offline providers last: they have no latency to compare.
    return (view.latency_ms is None, view.latency_ms or 0.0)


# `golem vm providers --sort KEY`: the most useful first (most free capacity,
# quickest answer, countries A to Z). A new key is one entry here; the CLI's
# choices come from this table.
SORT_KEYS: dict[str, Callable[[ProviderView], Any]] = {
    "cpu": lambda v: -v.advertisement.resources.cpu,
    "memory": lambda v: -v.advertisement.resources.memory,
    "storage": lambda v: -v.advertisement.resources.storage,
    "latency": _latency,
    "country": lambda v: v.advertisement.country or "~",  # unknown ("??") last
}


@dataclass(frozen=True)
class ProviderListing:
    providers: list[ProviderView]
    rejected: list[tuple[int, str]]  # discovery entries that did not fit the contract
    # How many discovery listed before --limit cut the list (same as len(providers)
    # without one), and whether a filter was given (for the hint when none matched).
    total: int = 0
    filtered: bool = False


async def probe_providers(
    services: Network, ads: Sequence[Advertisement], concurrency: int = PROBE_CONCURRENCY
) -> list[ProviderView]:
    """Ask every provider at once whether its API answers, with a short timeout."""
    bound = asyncio.Semaphore(concurrency)

    async def probe(ad: Advertisement) -> ProviderView:
        async with bound:
            try:
                seconds = await services.provider(ad.ip_address, ad.provider_id).probe()
            except GolemError as error:
                reason = error.message.split(": ")[-1]
                return ProviderView(ad, reachable=False, error=reason)
        return ProviderView(ad, reachable=True, latency_ms=seconds * 1000)

    return list(await asyncio.gather(*(probe(ad) for ad in ads)))


async def list_providers(
    services: Network,
    *,
    cpu: int | None = None,
    memory: int | None = None,
    storage: int | None = None,
    country: str | None = None,
    probe: bool = True,
    reachable_only: bool = False,
    sort: str | None = None,
    limit: int | None = None,
) -> ProviderListing:
    """What discovery lists (probed unless ``probe`` is off), filtered, sorted by
    one of SORT_KEYS (stable: ties keep discovery's order) and cut to ``limit``.

    The ids seen are remembered for shell completion (``remember_seen``)."""
    found = await services.discovery.advertisements(
        cpu=cpu, memory=memory, storage=storage, country=country
    )
    ads = found.advertisements
    remember_seen(services.settings, [ad.provider_id for ad in ads])
    views = await probe_providers(services, ads) if probe else [ProviderView(a) for a in ads]
    if reachable_only:
        views = [v for v in views if v.reachable]
    if sort is not None:
        views.sort(key=SORT_KEYS[sort])
    total = len(views)
    if limit is not None:
        views = views[:limit]
    filtered = reachable_only or any(f is not None for f in (cpu, memory, storage, country))
    return ProviderListing(views, found.rejected, total=total, filtered=filtered)


async def choose_provider(
    services: Network, cpu: int, memory: int, storage: int, progress: Progress
) -> tuple[Advertisement, str]:
    """The reachable provider with the most free capacity that fits, and why."""
    progress("Looking for a provider that fits")
    found = await services.discovery.advertisements(cpu=cpu, memory=memory, storage=storage)
    fitting = [ad for ad in found.advertisements if ad.resources.fits(cpu, memory, storage)]
    if not fitting:
        raise InsufficientResourcesError(
            f"No provider advertises {cpu} CPU, {memory} GB RAM and {storage} GB storage free"
        )
    views = [v for v in await probe_providers(services, fitting) if v.reachable]
    if not views:
        raise ProviderUnavailableError(
            f"None of the {len(fitting)} providers that fit answers right now"
        )

    def rank(view: ProviderView) -> tuple[int, int, int, float]:
        free = view.advertisement.resources
        return (-free.cpu, -free.memory, -free.storage, view.latency_ms or 0.0)

    best = min(views, key=rank)
    free = best.advertisement.resources
    reason = (
        f"it has the most free capacity ({free.cpu} CPU, {free.memory} GB RAM, "
        f"{free.storage} GB storage) of the {len(views)} reachable providers that fit, "
        f"and answered in {best.latency_ms or 0:.0f} ms"
    )
    return best.advertisement, reason
