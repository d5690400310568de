"""Providers: what discovery lists, whether each answers now, and which fits best."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from requestor.errors import (
    GolemError,
    InsufficientResourcesError,
    ProviderUnavailableError,
)
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


@dataclass(frozen=True)
class ProviderListing:
    providers: list[ProviderView]
    rejected: list[tuple[int, str]]  # discovery entries that did not fit the contract


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
) -> ProviderListing:
    found = await services.discovery.advertisements(
        cpu=cpu, memory=memory, storage=storage, country=country
    )
    ads = found.advertisements
    views = await probe_providers(services, ads) if probe else [ProviderView(a) for a in ads]
    if reachable_only:
        views = [v for v in views if v.reachable]
    return ProviderListing(views, found.rejected)


async def reachable_fitting(
    services: Network, cpu: int, memory: int, storage: int, progress: Progress
) -> list[ProviderView]:
    """The providers that advertise room for one such VM and answer now."""
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
    return views


def rank(view: ProviderView) -> tuple[int, int, int, float]:
    """Most free capacity first (CPU, then memory, then storage), then the fastest."""
    free = view.advertisement.resources
    return (-free.cpu, -free.memory, -free.storage, view.latency_ms or 0.0)


async def choose_provider(
    services: Network, cpu: int, memory: int, storage: int, progress: Progress
) -> tuple[Advertisement, str]:
    """The reachable provider with the most free capacity that fits, and why."""
    views = await reachable_fitting(services, cpu, memory, storage, progress)
    best = min(views, key=rank)
    free = best.advertisement.resources
    reason = (
        f"it has the most free capacity ({free.cpu} CPU, {free.memory} GB RAM, "
        f"{free.storage} GB storage) of the {len(views)} reachable providers that fit, "
        f"and answered in {best.latency_ms or 0:.0f} ms"
    )
    return best.advertisement, reason
