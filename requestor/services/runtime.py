"""What one command needs, opened once and closed in order: settings, the
database (brought to head), one HTTP session, and the clients built on them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from requestor.services.discovery import DiscoveryClient
from requestor.services.http import HttpClient
from requestor.services.provider import ProviderClient
from requestor.settings import Settings

if TYPE_CHECKING:
    from requestor.db.engine import Database

# VMs (and so provider calls) handled at once by one command, and connections
# per provider: total time tracks the slowest provider, not the sum.
DEFAULT_CONCURRENCY = 100
PER_PROVIDER_CONNECTIONS = 10


@dataclass
class Network:
    """The network alone: discovery and providers, no local state (``vm providers``
    needs nothing else, and so never loads SQLAlchemy or Alembic)."""

    settings: Settings
    http: HttpClient
    discovery: DiscoveryClient

    def provider(self, ip_address: str, label: str | None = None) -> ProviderClient:
        return ProviderClient(
            self.http, self.settings.provider_api_url(ip_address), label or ip_address
        )


@dataclass
class Services(Network):
    """The network and local state."""

    db: Database


@asynccontextmanager
async def open_network(
    settings: Settings,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    per_provider: int = PER_PROVIDER_CONNECTIONS,
    call_timeout: float | None = None,
) -> AsyncIterator[Network]:
    async with HttpClient(
        limit=concurrency, limit_per_host=per_provider, timeout_cap=call_timeout
    ) as http:
        yield Network(settings, http, DiscoveryClient(http, settings.discovery_url))


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    per_provider: int = PER_PROVIDER_CONNECTIONS,
    call_timeout: float | None = None,
) -> AsyncIterator[Services]:
    from requestor.db.engine import Database

    async with (
        Database.for_settings(settings) as db,
        HttpClient(
            limit=concurrency, limit_per_host=per_provider, timeout_cap=call_timeout
        ) as http,
    ):
        yield Services(settings, http, DiscoveryClient(http, settings.discovery_url), db)
