"""What each provider supports, detected from ``/provider/info`` and the answers of
its routes, and remembered per provider address for a short time.

The current generation (wire contract, "Current provider generation") has
``/provider/info``, creates in the background (``POST /vms?async=true``), may
require payment streams, and cannot start a stopped VM; a legacy provider has no
``/provider/info`` and creates synchronously. Every command that needs to know
reads local state first and asks the provider only when it has no fresh answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from requestor.errors import GolemError, PaymentRequiredError, ProviderIdentityError
from requestor.text import clean
from requestor.wire.models import ProviderInfo, is_payment_address

if TYPE_CHECKING:
    from requestor.services.runtime import Network, Services

# Providers are upgraded, and change their payment settings: trust a detection this long.
CAPABILITY_TTL = timedelta(minutes=10)
# Detections at once when many providers are involved (bulk stop).
DETECT_CONCURRENCY = 32

Generation = Literal["current", "legacy"]


@dataclass(frozen=True)
class Capabilities:
    # What /provider/info said the provider is; None: no such route (legacy generation).
    reported_provider_id: str | None
    async_create: bool
    # Whether a stopped VM can be started again; None: not known.
    can_start: bool | None
    payment_address: str | None

    @classmethod
    def from_info(cls, info: ProviderInfo | None) -> Capabilities:
        if info is None:
            # Legacy: synchronous create; many deployed ones lack the start route,
            # which only an answer of that route tells.
            return cls(None, async_create=False, can_start=None, payment_address=None)
        return cls(
            info.provider_id,
            async_create=True,
            can_start=False,  # the current generation has no start route
            payment_address=info.stream_payment_address,
        )

    @property
    def generation(self) -> Generation:
        return "legacy" if self.reported_provider_id is None else "current"

    @property
    def requires_payment(self) -> bool:
        return is_payment_address(self.payment_address)

    def check_usable(self, advertised_id: str, *, has_stream: bool = False) -> None:
        """Refuse, before anything is made, a node that is not the provider the
        advertisement named, or that creates only against a payment stream and
        none is given (``has_stream``)."""
        if self.reported_provider_id is not None and self.reported_provider_id != advertised_id:
            raise ProviderIdentityError(
                f"The provider at the address advertised for {clean(advertised_id, 80)} says "
                f"it is {clean(self.reported_provider_id, 80)}; refusing to create a VM there"
            )
        if self.requires_payment and not has_stream:
            raise PaymentRequiredError(
                f"Provider {clean(advertised_id, 80)} requires a payment stream for every VM "
                f"(stream payment address {clean(self.payment_address, 80)}), and golem "
                "cannot open payment streams yet"
            )


async def detect(network: Network, ip_address: str, label: str) -> Capabilities | None:
    """Ask the provider; None when its answer tells nothing (it is down or odd)."""
    try:
        survey = await network.provider(ip_address, label).survey()
    except GolemError:
        return None
    return Capabilities.from_info(survey.info) if survey.detected else None


async def remember(services: Services, ip_address: str, capabilities: Capabilities) -> None:
    from requestor.db import repository

    async with services.db.write() as session:
        await repository.store_capabilities(
            session,
            ip_address,
            reported_provider_id=capabilities.reported_provider_id,
            async_create=capabilities.async_create,
            can_start=capabilities.can_start,
            payment_address=capabilities.payment_address,
        )


async def remembered(
    services: Services, ip_address: str, now: datetime | None = None
) -> Capabilities | None:
    """The detection kept in local state, if it is fresh."""
    from requestor.db import repository
    from requestor.db.models import utcnow

    async with services.db.read() as session:
        row = await repository.find_capabilities(session, ip_address)
    if row is None or row.detected_at < (now or utcnow()) - CAPABILITY_TTL:
        return None
    return Capabilities(
        row.reported_provider_id,
        async_create=row.async_create,
        can_start=row.can_start,
        payment_address=row.payment_address,
    )


async def capabilities_of(
    services: Services, ip_address: str, label: str, *, detected: Capabilities | None = None
) -> Capabilities | None:
    """What the provider at ``ip_address`` supports: ``detected`` (a probe that just
    ran) if given, else local state if fresh, else one call to the provider."""
    known = await remembered(services, ip_address)
    if detected is None:
        if known is not None:
            return known
        detected = await detect(services, ip_address, label)
    elif known is not None and detected.can_start is None:
        # A probe cannot see a missing start route; a failed start that did is kept.
        detected = dataclasses.replace(detected, can_start=known.can_start)
    if detected is not None:
        await remember(services, ip_address, detected)
    return detected


async def note_cannot_start(services: Services, ip_address: str) -> None:
    """A start route answered 'no such route': remember it (a legacy provider too)."""
    from requestor.db import repository

    async with services.db.write() as session:
        await repository.note_cannot_start(session, ip_address)


async def restart_support(
    services: Services, providers: Iterable[tuple[str, str]]
) -> dict[str, bool | None]:
    """Per provider address: whether it can start a stopped VM (None: not known).
    ``providers`` are (address, label) pairs; each address is asked at most once."""
    bound = asyncio.Semaphore(DETECT_CONCURRENCY)
    unique = dict(providers)

    async def one(ip_address: str, label: str) -> bool | None:
        async with bound:
            found = await capabilities_of(services, ip_address, label)
        return None if found is None else found.can_start

    answers = await asyncio.gather(*(one(ip, label) for ip, label in unique.items()))
    return dict(zip(unique, answers, strict=True))
