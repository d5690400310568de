"""Fill a devnet with VMs through the real service layer, for tests and benchmarks
that need a fleet (hundreds of VMs) faster than one ``golem vm create`` each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from requestor.services.create import CreateRequest, create_vm
from requestor.services.runtime import open_services
from requestor.settings import Settings


async def create_fleet(
    settings: Settings,
    provider_ids: Sequence[str],
    count: int,
    *,
    prefix: str = "vm",
    concurrency: int = 20,
) -> list[str]:
    """Create ``count`` VMs (1 CPU, 1 GB, 10 GB) round-robin over ``provider_ids``."""
    names = [f"{prefix}-{index:03d}" for index in range(count)]
    bound = asyncio.Semaphore(concurrency)
    async with open_services(settings, concurrency=concurrency) as services:

        async def one(index: int, name: str) -> None:
            provider_id = provider_ids[index % len(provider_ids)]
            async with bound:
                await create_vm(
                    services,
                    CreateRequest(
                        name=name,
                        cpu=1,
                        memory=1,
                        storage=10,
                        provider_id=provider_id,
                    ),
                )

        await asyncio.gather(*(one(i, name) for i, name in enumerate(names)))
    return names
