"""The network's HTTP contract (shared/spec/wire-contract.md) as pydantic models.

Answers from discovery and providers are validated leniently (unknown fields are
ignored, so a provider adding one breaks nothing) while types and bounds are
still checked. What we send is built strictly.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

ProviderText = Annotated[str, Field(min_length=1, max_length=256)]

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _ip_address(value: str) -> str:
    """An advertised address must be an IP literal: it becomes part of a URL we call,
    so anything with a port, path or credentials in it would let an advertiser aim
    golem at any host, port and path."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("not an IP address") from None


def _host(value: str) -> str:
    """An IP literal or a plain DNS name (no port, path, user or scheme)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if _HOSTNAME.fullmatch(value):
            return value
        raise ValueError("not an IP address or host name") from None


IPAddress = Annotated[str, AfterValidator(_ip_address)]
HostName = Annotated[str, AfterValidator(_host)]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Resources(_Answer):
    cpu: Annotated[int, Field(ge=0, le=1_000_000)]
    memory: Annotated[int, Field(ge=0, le=1_000_000_000)]
    storage: Annotated[int, Field(ge=0, le=1_000_000_000)]

    def fits(self, cpu: int, memory: int, storage: int) -> bool:
        return self.cpu >= cpu and self.memory >= memory and self.storage >= storage


Price = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]


@dataclass(frozen=True)
class MonthlyPrice:
    """What one VM size costs per month; None where the provider gives no price."""

    usd: float | None
    glm: float | None

    @property
    def known(self) -> bool:
        return self.usd is not None or self.glm is not None


class Pricing(_Answer):
    """Monthly prices a current provider advertises (wire contract, ``pricing``)."""

    usd_per_core_month: Price | None = None
    usd_per_gb_ram_month: Price | None = None
    usd_per_gb_storage_month: Price | None = None
    glm_per_core_month: Price | None = None
    glm_per_gb_ram_month: Price | None = None
    glm_per_gb_storage_month: Price | None = None

    def monthly(self, cpu: int, memory: int, storage: int) -> MonthlyPrice:
        """The size's price in each currency whose three prices are all given."""

        def total(core: float | None, ram: float | None, disk: float | None) -> float | None:
            if core is None or ram is None or disk is None:
                return None
            return core * cpu + ram * memory + disk * storage

        return MonthlyPrice(
            usd=total(
                self.usd_per_core_month, self.usd_per_gb_ram_month, self.usd_per_gb_storage_month
            ),
            glm=total(
                self.glm_per_core_month, self.glm_per_gb_ram_month, self.glm_per_gb_storage_month
            ),
        )


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Optional extras of an answer: a malformed one reads as absent rather than
    costing the whole advertisement (its resources and address are still good)."""
    try:
        return handler(value)
    except ValidationError:
        return None


class Advertisement(_Answer):
    provider_id: ProviderText
    ip_address: IPAddress
    country: Annotated[str, Field(max_length=8)] | None = None
    resources: Resources
    # Current providers advertise prices; legacy ones send none (None: unknown, never 0).
    pricing: Annotated[Pricing | None, WrapValidator(_or_none)] = None

    def monthly_price(self, cpu: int, memory: int, storage: int) -> MonthlyPrice | None:
        if self.pricing is None:
            return None
        price = self.pricing.monthly(cpu, memory, storage)
        return price if price.known else None

    created_at: datetime | None = None
    updated_at: datetime | None = None


class ProviderVMStatus(enum.StrEnum):
    CREATING = "creating"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"
    DELETED = "deleted"


def _known_status(value: Any) -> Any:
    """A status this golem does not know (a newer provider) reads as ``error``."""
    known = {status.value for status in ProviderVMStatus}
    return value if not isinstance(value, str) or value in known else "error"


class VMInfo(_Answer):
    id: str | None = None
    name: ProviderText
    status: Annotated[ProviderVMStatus, BeforeValidator(_known_status)]
    resources: Resources | None = None
    ip_address: str | None = None
    ssh_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    error_message: str | None = None


class VMAccess(_Answer):
    ssh_host: HostName
    ssh_port: Annotated[int, Field(ge=1, le=65535)]
    vm_id: str | None = None
    multipass_name: str | None = None


_ZERO_ADDRESS = re.compile(r"(0x)?0*")


def is_payment_address(address: str | None) -> bool:
    """A stream payment address other than the zero address: the provider requires
    payment streams (wire contract, ``/provider/info``)."""
    address = (address or "").strip()
    return bool(address) and not _ZERO_ADDRESS.fullmatch(address)


class ProviderInfo(_Answer):
    """``GET /provider/info`` of the current generation: who the provider says it is."""

    provider_id: ProviderText
    stream_payment_address: Annotated[str, Field(max_length=256)] | None = None
    glm_token_address: Annotated[str, Field(max_length=256)] | None = None
    ip_address: str | None = None
    country: str | None = None
    platform: str | None = None

    @property
    def requires_payment(self) -> bool:
        return is_payment_address(self.stream_payment_address)


class JobStatus(enum.StrEnum):
    CREATING = "creating"
    READY = "ready"
    FAILED = "failed"


def _known_job_status(value: Any) -> Any:
    """A job status this golem does not know (say a newer provider's ``queued``) is
    not an end: it reads as ``creating``, and polling goes on until the deadline."""
    known = {status.value for status in JobStatus}
    return value if not isinstance(value, str) or value in known else "creating"


class CreateJob(_Answer):
    """An async create's job: the 202 of ``POST /vms?async=true`` and ``GET /vms/jobs/{id}``."""

    job_id: ProviderText
    vm_id: str | None = None
    status: Annotated[JobStatus, BeforeValidator(_known_job_status)]
    error: str | None = None


class CreateVMRequest(BaseModel):
    """The body of ``POST /vms``; built by us, so strict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    resources: dict[str, int]
    ssh_key: str
    image: str | None = None
    # A payment stream for providers that require one (opening streams comes later).
    stream_id: int | str | None = None

    def body(self) -> dict[str, object]:
        return self.model_dump(exclude_none=True)
