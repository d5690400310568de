"""Faults a devnet provider can be told to show, so tests and demos meet what the
deployed network does on a bad day.

Every field defaults to "healthy". A ``Faults`` value always replaces the
previous one as a whole (``PUT`` semantics), so a test states the full picture.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from golem_devnet.routes import ROUTE_NAMES, ROUTE_PATHS, RouteName, route_name

__all__ = [
    "OVERSIZED_BODY_BYTES",
    "ROUTE_NAMES",
    "ROUTE_PATHS",
    "Faults",
    "GarbageSSH",
    "RouteName",
    "route_name",
]

# Large enough that reading it whole is a visible mistake, small enough to stream
# on loopback in a fraction of a second.
OVERSIZED_BODY_BYTES = 64 * 1024 * 1024

# What a VM's SSH port does instead of speaking SSH: a version line that is not
# ASCII, a close in the middle of the key exchange, or silence.
GarbageSSH = Literal["non-ascii", "close", "silent"]
GARBAGE_SSH_MODES: tuple[GarbageSSH, ...] = ("non-ascii", "close", "silent")


class Faults(BaseModel):
    """What one provider does wrong; the default is a healthy provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: int = Field(default=0, ge=0, le=600_000, description="delay before every answer")
    error_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description='share of answers that are 500 "Injected fault"'
    )
    offline: bool = Field(default=False, description="API port closed: connection refused")
    hang: bool = Field(default=False, description="API accepts requests and never answers")
    boot_delay_s: float = Field(
        default=0.0, ge=0.0, le=3600.0, description="a new VM's SSH comes up this late"
    )
    malformed_json: bool = Field(default=False, description="answers are truncated JSON")
    oversized_body: bool = Field(
        default=False, description="answers are a 64 MiB JSON body (Content-Length set)"
    )
    missing_routes: frozenset[RouteName] = Field(
        default=frozenset(), description="routes answered as absent (404/405, like FastAPI)"
    )
    create_then_fail: bool = Field(
        default=False,
        description='creates the VM, then answers 500 "An unexpected error occurred"',
    )
    delete_fails: bool = Field(
        default=False, description='DELETE answers 500 "An unexpected error occurred", VM kept'
    )
    garbage_ssh: GarbageSSH | None = Field(
        default=None, description="VMs' SSH ports speak garbage instead of SSH"
    )
    hold: frozenset[RouteName] = Field(
        default=frozenset(),
        description="requests on these routes are parked (received, not answered) until "
        "the faults change and no longer hold them",
    )

    @field_validator("missing_routes", "hold", mode="before")
    @classmethod
    def _route_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple, set, frozenset)):
            return frozenset(route_name(v) if isinstance(v, str) else v for v in value)
        return value

    @field_serializer("missing_routes", "hold")
    def _sorted(self, routes: frozenset[RouteName]) -> list[str]:
        return sorted(routes)

    def describe(self) -> str:
        """A short human summary, e.g. ``latency_ms=200 offline``; ``healthy`` if none."""
        parts: list[str] = []
        defaults = Faults()
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value == getattr(defaults, name):
                continue
            if value is True:
                parts.append(name)
            elif isinstance(value, frozenset):
                parts.append(f"{name}={','.join(sorted(value))}")
            else:
                parts.append(f"{name}={value}")
        return " ".join(parts) or "healthy"
