"""The network's HTTP contract (shared/spec/wire-contract.md) as pydantic models.

Answers from discovery and providers are validated leniently (unknown fields are
ignored, so a provider adding one breaks nothing) while types and bounds are
still checked. What we send is built strictly.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

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


class Advertisement(_Answer):
    provider_id: ProviderText
    ip_address: IPAddress
    country: Annotated[str, Field(max_length=8)] | None = None
    resources: Resources
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


class CreateVMRequest(BaseModel):
    """The body of ``POST /vms``; built by us, so strict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    resources: dict[str, int]
    ssh_key: str
    image: str | None = None

    def body(self) -> dict[str, object]:
        return self.model_dump(exclude_none=True)
