"""The devnet's discovery service: the advertisement API of the wire contract, in memory."""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from golem_devnet.http import (
    detail,
    fastapi_errors,
    iso,
    json_response,
    parse_body,
    validation_error,
)

DEFAULT_AD_TTL_S = 300.0
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class Resources(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # 0 is legal: a provider whose capacity is all rented advertises nothing free.
    cpu: int = Field(ge=0)
    memory: int = Field(ge=0)
    storage: int = Field(ge=0)


class Pricing(BaseModel):
    """Monthly prices a current-generation provider advertises (discovery 0.1.25)."""

    model_config = ConfigDict(extra="ignore")

    usd_per_core_month: float | None = None
    usd_per_gb_ram_month: float | None = None
    usd_per_gb_storage_month: float | None = None
    glm_per_core_month: float | None = None
    glm_per_gb_ram_month: float | None = None
    glm_per_gb_storage_month: float | None = None


class AdvertisementIn(BaseModel):
    # Unknown fields (a current provider's "platform") are dropped.
    model_config = ConfigDict(extra="ignore")

    ip_address: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    resources: Resources
    pricing: Pricing | None = None

    @field_validator("ip_address")
    @classmethod
    def _ipv4(cls, value: str) -> str:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError("value is not a valid IPv4 address") from None
        return value


class Clock(Protocol):
    """Where discovery reads the time: expiry on ``monotonic``, record stamps on ``wall``.

    Tests pass a clock that moves only when told (tests/support/clock.py), so an
    advertisement's expiry is a step of the test, not a wait.
    """

    def monotonic(self) -> float: ...

    def wall(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class _Stored:
    body: dict[str, Any]
    refreshed: float  # on the store's clock


class AdvertisementStore:
    """Advertisements by provider; only those refreshed within ``ttl_s`` are visible."""

    def __init__(self, ttl_s: float = DEFAULT_AD_TTL_S, clock: Clock | None = None) -> None:
        self.ttl_s = ttl_s
        self.clock: Clock = clock or SystemClock()
        self._ads: dict[str, _Stored] = {}

    def _clock(self) -> float:
        return self.clock.monotonic()

    def put(self, provider_id: str, ad: AdvertisementIn) -> dict[str, Any]:
        stamp = iso(self.clock.wall())
        earlier = self._live(provider_id)
        body = {
            "provider_id": provider_id,
            "ip_address": ad.ip_address,
            "country": ad.country,
            "resources": ad.resources.model_dump(),
            "created_at": earlier.body["created_at"] if earlier else stamp,
            "updated_at": stamp,
        }
        if "pricing" in ad.model_fields_set:
            # Kept as sent, null included; a legacy provider sends none and its ad has no key.
            body["pricing"] = ad.pricing.model_dump() if ad.pricing else None
        self._ads[provider_id] = _Stored(body, self._clock())
        return body

    def get(self, provider_id: str) -> dict[str, Any] | None:
        stored = self._live(provider_id)
        return stored.body if stored else None

    def delete(self, provider_id: str) -> None:
        self._ads.pop(provider_id, None)

    def active(self) -> list[dict[str, Any]]:
        self._expire()
        return [self._ads[key].body for key in sorted(self._ads)]

    def _live(self, provider_id: str) -> _Stored | None:
        stored = self._ads.get(provider_id)
        if stored is None or self._clock() - stored.refreshed > self.ttl_s:
            return None
        return stored

    def _expire(self) -> None:
        limit = self._clock() - self.ttl_s
        for key in [k for k, v in self._ads.items() if v.refreshed < limit]:
            del self._ads[key]


def _adv_error(code: str, message: str, status: int) -> web.Response:
    return detail({"code": code, "message": message}, status)


def _missing_headers(request: web.Request) -> web.Response | None:
    missing = [
        {"type": "missing", "loc": ["header", name.lower()], "msg": "Field required", "input": None}
        for name in ("X-Provider-ID", "X-Provider-Signature")
        if not request.headers.get(name)
    ]
    return validation_error(missing) if missing else None


class DiscoveryService:
    """The aiohttp app; ``store`` is exposed so a devnet can inspect it."""

    def __init__(self, store: AdvertisementStore) -> None:
        self.store = store
        # A test switch: the listing answers 429, as a rate-limiting discovery
        # service (or its proxy) would.
        self.rate_limited = False

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[fastapi_errors])
        app.add_routes(
            [
                web.get("/health", self._health),
                web.get("/api/v1/advertisements", self._list),
                web.post("/api/v1/advertisements", self._post),
                web.get("/api/v1/advertisements/{provider_id}", self._get),
                web.delete("/api/v1/advertisements/{provider_id}", self._delete),
            ]
        )
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return json_response({"status": "healthy"})

    async def _list(self, request: web.Request) -> web.Response:
        if self.rate_limited:
            answer = json_response({"detail": "Too Many Requests"}, status=429)
            answer.headers["Retry-After"] = "60"
            return answer
        minimums: dict[str, int] = {}
        for name in ("cpu", "memory", "storage"):
            raw = request.query.get(name)
            if raw is None:
                continue
            try:
                value = int(raw)
            except ValueError:
                return validation_error(
                    [
                        {
                            "type": "int_parsing",
                            "loc": ["query", name],
                            "msg": "Input should be a valid integer, unable to parse string as an "
                            "integer",
                            "input": raw,
                        }
                    ]
                )
            if value < 1:
                return _adv_error("ADV_002", f"{name} must be at least 1", 400)
            minimums[name] = value
        country = request.query.get("country")
        if country is not None and not _COUNTRY.match(country.upper()):
            return _adv_error("ADV_002", "country must be an ISO 3166-1 alpha-2 code", 400)
        ads = [
            ad
            for ad in self.store.active()
            if all(ad["resources"][name] >= value for name, value in minimums.items())
            and (country is None or ad["country"] == country.upper())
        ]
        return json_response(ads)

    async def _get(self, request: web.Request) -> web.Response:
        ad = self.store.get(request.match_info["provider_id"])
        if ad is None:
            return _adv_error("ADV_004", "Advertisement not found", 404)
        return json_response(ad)

    async def _post(self, request: web.Request) -> web.Response:
        refused = _missing_headers(request)
        if refused is not None:
            return refused
        ad = await parse_body(request, AdvertisementIn)
        if isinstance(ad, web.Response):
            return ad
        return json_response(self.store.put(request.headers["X-Provider-ID"], ad))

    async def _delete(self, request: web.Request) -> web.Response:
        refused = _missing_headers(request)
        if refused is not None:
            return refused
        provider_id = request.match_info["provider_id"]
        if self.store.get(provider_id) is None:
            return _adv_error("ADV_004", "Advertisement not found", 404)
        if request.headers["X-Provider-ID"] != provider_id:
            return _adv_error("AUTH_004", "Not authorized to delete this advertisement", 401)
        self.store.delete(provider_id)
        return json_response({"status": "success"})
