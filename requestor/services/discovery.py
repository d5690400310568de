"""Client for the discovery service: where providers advertise what they have free."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from pydantic import ValidationError

from requestor.errors import DiscoveryUnavailableError, ProviderNotFoundError
from requestor.services.http import QUICK, HttpClient, Response, TransportError
from requestor.settings import redact_url
from requestor.text import clean, first_error_text
from requestor.wire.models import Advertisement


@dataclass
class AdvertisementList:
    advertisements: list[Advertisement]
    # Entries that did not fit the contract, skipped: (index, reason).
    rejected: list[tuple[int, str]] = field(default_factory=list)


class DiscoveryClient:
    def __init__(self, http: HttpClient, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/") + "/api/v1"
        # Shown in messages: credentials in the URL never are.
        self._origin = redact_url(base_url)
        parts = urlsplit(base_url)
        self._secrets = [s for s in (parts.password, parts.username, parts.query) if s]

    def _scrub(self, text: str) -> str:
        """A transport error's text can quote the URL it failed on."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Response:
        try:
            # The deployed service answers 500 when rate-limited: retry a little.
            response = await self._http.request(
                "GET", self._base + path, params=params, timeouts=QUICK, retries=2
            )
        except TransportError as error:
            raise DiscoveryUnavailableError(
                f"Discovery service at {self._origin} is unreachable: {self._scrub(error.reason)}"
            ) from None
        if response.status >= 500:
            raise DiscoveryUnavailableError(
                f"Discovery service at {self._origin} is busy or failing "
                f"(HTTP {response.status}: {clean(response.detail(), 120)})",
                hint="Wait a minute and try again; the service limits how often it is asked.",
            )
        return response

    async def advertisements(
        self,
        *,
        cpu: int | None = None,
        memory: int | None = None,
        storage: int | None = None,
        country: str | None = None,
    ) -> AdvertisementList:
        params = {
            k: str(v)
            for k, v in (
                ("cpu", cpu),
                ("memory", memory),
                ("storage", storage),
                ("country", country),
            )
            if v is not None
        }
        response = await self._get("/advertisements", params)
        if not response.ok:
            raise DiscoveryUnavailableError(
                f"Discovery service refused the query (HTTP {response.status}: "
                f"{clean(response.detail(), 200)})",
                hint=_refusal_hint(response.status),
            )
        if not isinstance(response.data, list):
            raise DiscoveryUnavailableError(
                f"Discovery service at {self._origin} sent something other than a list",
                hint="Check GOLEM_REQUESTOR_DISCOVERY_URL points at a discovery service.",
            )
        result = AdvertisementList([])
        seen: set[str] = set()
        for index, item in enumerate(response.data):
            try:
                advertisement = Advertisement.model_validate(item)
            except ValidationError as error:
                result.rejected.append((index, first_error_text(error)))
                continue
            if advertisement.provider_id not in seen:
                seen.add(advertisement.provider_id)
                result.advertisements.append(advertisement)
        return result

    async def advertisement(self, provider_id: str) -> Advertisement:
        response = await self._get(f"/advertisements/{quote(provider_id, safe='')}")
        if response.status == 404:
            raise ProviderNotFoundError(
                f"Provider {clean(provider_id, 80)} is not advertised on the discovery service"
            )
        if not response.ok:
            raise DiscoveryUnavailableError(
                f"Discovery service answered HTTP {response.status}: "
                f"{clean(response.detail(), 200)}"
            )
        try:
            return Advertisement.model_validate(response.data)
        except ValidationError as error:
            raise DiscoveryUnavailableError(
                f"Discovery service sent an advertisement for {clean(provider_id, 80)} that "
                f"does not fit the contract: {first_error_text(error)}",
                hint="The provider may be misconfigured; choose a different provider.",
            ) from None


def _refusal_hint(status: int) -> str:
    """What helps depends on why discovery said no: it limits the rate, it is in
    trouble, or it did not like the query."""
    if status == 429:
        return "The discovery service is limiting requests: wait a minute, then try again."
    if status >= 500:
        return "The discovery service has a problem on its side: try again later."
    return "Check the filter values: numbers must be 1 or more, --country two letters."
