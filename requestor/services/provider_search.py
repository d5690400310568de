"""Providers: what discovery lists, whether each answers now, and which fits best."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from requestor.errors import (
    GolemError,
    InsufficientResourcesError,
    PaymentRequiredError,
    ProviderUnavailableError,
)
from requestor.services.capabilities import Capabilities
from requestor.services.runtime import Network
from requestor.wire.models import Advertisement, MonthlyPrice

# Probes are tiny and bounded by a 4 s timeout: ask this many providers at once.
PROBE_CONCURRENCY = 256
# Tells the user what a long call is doing (the CLI shows it in a spinner).
Progress = Callable[[str], None]


# The size a price is quoted for when the user names none: the smallest VM.
SMALLEST_SIZE = (1, 1, 10)


@dataclass(frozen=True)
class ProviderView:
    advertisement: Advertisement
    reachable: bool | None = None  # None: not probed
    latency_ms: float | None = None
    error: str | None = None
    # What the probe found the provider supports; None: not probed or not known.
    capabilities: Capabilities | None = None

    def size_price(self, size: tuple[int, int, int]) -> MonthlyPrice | None:
        return self.advertisement.monthly_price(*size)


@dataclass(frozen=True)
class ProviderListing:
    providers: list[ProviderView]
    rejected: list[tuple[int, str]]  # discovery entries that did not fit the contract
    # (cpu, memory, storage) whose monthly price is shown; None: the user asked for no size.
    size: tuple[int, int, int] | None = None
    sort: str | None = None
    notes: list[str] = field(default_factory=list)


def _price_rank(view: ProviderView, size: tuple[int, int, int]) -> tuple[int, float, float]:
    """Cheapest first in USD, then GLM; a provider without a price goes last."""
    price = view.size_price(size)
    if price is None:
        return (2, 0.0, 0.0)
    if price.usd is not None:
        return (0, price.usd, price.glm or 0.0)
    return (1, price.glm or 0.0, 0.0)


# `golem vm providers --sort KEY`: one ranking per key (add a key here to offer it).
SortKey = Callable[[ProviderView, tuple[int, int, int]], tuple[object, ...]]
SORT_KEYS: Mapping[str, SortKey] = {
    "price": _price_rank,
}


def sort_providers(
    views: Sequence[ProviderView], key: str, size: tuple[int, int, int] | None
) -> list[ProviderView]:
    rank = SORT_KEYS[key]
    quoted = size or SMALLEST_SIZE
    return sorted(views, key=lambda view: rank(view, quoted))


async def probe_providers(
    services: Network, ads: Sequence[Advertisement], concurrency: int = PROBE_CONCURRENCY
) -> list[ProviderView]:
    """Ask every provider at once whether its API answers, with a short timeout."""
    bound = asyncio.Semaphore(concurrency)

    async def probe(ad: Advertisement) -> ProviderView:
        async with bound:
            try:
                survey = await services.provider(ad.ip_address, ad.provider_id).survey()
            except GolemError as error:
                reason = error.message.split(": ")[-1]
                return ProviderView(ad, reachable=False, error=reason)
        capabilities = Capabilities.from_info(survey.info) if survey.detected else None
        return ProviderView(
            ad, reachable=True, latency_ms=survey.seconds * 1000, capabilities=capabilities
        )

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
) -> ProviderListing:
    """``sort`` is a key of SORT_KEYS; with any of cpu/memory/storage the listing
    quotes the monthly price of that size (the smallest accepted for the others)."""
    found = await services.discovery.advertisements(
        cpu=cpu, memory=memory, storage=storage, country=country
    )
    ads = found.advertisements
    views = await probe_providers(services, ads) if probe else [ProviderView(a) for a in ads]
    if reachable_only:
        views = [v for v in views if v.reachable]
    size = None
    if (cpu, memory, storage) != (None, None, None):
        least_cpu, least_memory, least_storage = SMALLEST_SIZE
        size = (cpu or least_cpu, memory or least_memory, storage or least_storage)
    if sort is not None:
        views = sort_providers(views, sort, size)
    return ProviderListing(views, found.rejected, size=size, sort=sort)


async def choose_provider(
    services: Network, cpu: int, memory: int, storage: int, progress: Progress
) -> tuple[ProviderView, str]:
    """The reachable provider with the most free capacity that fits, and why.

    Providers that require payment streams, or whose node says it is another
    provider, are skipped: golem could not create a VM there."""
    progress("Looking for a provider that fits")
    found = await services.discovery.advertisements(cpu=cpu, memory=memory, storage=storage)
    fitting = [ad for ad in found.advertisements if ad.resources.fits(cpu, memory, storage)]
    if not fitting:
        raise InsufficientResourcesError(
            f"No provider advertises {cpu} CPU, {memory} GB RAM and {storage} GB storage free"
        )
    reachable = [v for v in await probe_providers(services, fitting) if v.reachable]
    if not reachable:
        raise ProviderUnavailableError(
            f"None of the {len(fitting)} providers that fit answers right now"
        )
    views = [v for v in reachable if _usable(v)]
    if not views:
        raise PaymentRequiredError(
            f"Each of the {len(reachable)} reachable providers that fit requires a payment "
            "stream (or is not the provider it advertises), and golem cannot open payment "
            "streams yet",
            hint="Try again later, or with a smaller size: other providers may fit then.",
        )

    def rank(view: ProviderView) -> tuple[int, int, int, float]:
        free = view.advertisement.resources
        return (-free.cpu, -free.memory, -free.storage, view.latency_ms or 0.0)

    best = min(views, key=rank)
    free = best.advertisement.resources
    skipped = len(reachable) - len(views)
    reason = (
        f"it has the most free capacity ({free.cpu} CPU, {free.memory} GB RAM, "
        f"{free.storage} GB storage) of the {len(views)} reachable providers that fit, "
        f"and answered in {best.latency_ms or 0:.0f} ms"
    )
    if skipped:
        reason += f"; skipped {skipped} that require payment or are not the provider they advertise"
    return best, reason


def _usable(view: ProviderView) -> bool:
    capabilities = view.capabilities
    if capabilities is None:
        return True  # not known: create detects it again, and refuses if need be
    try:
        capabilities.check_usable(view.advertisement.provider_id)
    except GolemError:
        return False
    return True
