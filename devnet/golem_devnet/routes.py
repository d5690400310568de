"""The provider routes a fault can remove or hold, by name and as the wire contract
writes them. Plain Python: ``golem_devnet.cli`` builds its options from it without
loading pydantic."""

from __future__ import annotations

from typing import Literal, get_args

# Named after what they do. The last six only the current generation serves
# (golem_devnet.current); a legacy provider answers them 404 "Not Found".
RouteName = Literal[
    "create",
    "list",
    "get",
    "access",
    "stop",
    "start",
    "delete",
    "job",
    "provider_info",
    "summary",
    "stream",
    "streams",
    "admin_shutdown",
]
ROUTE_NAMES: tuple[RouteName, ...] = get_args(RouteName)
# The same routes as the wire contract writes them (under /api/v1); either
# spelling names a route, e.g. hold=["POST /vms"] or hold=["create"].
ROUTE_PATHS: dict[RouteName, str] = {
    "create": "POST /vms",
    "list": "GET /vms",
    "get": "GET /vms/{name}",
    "access": "GET /vms/{name}/access",
    "stop": "POST /vms/{name}/stop",
    "start": "POST /vms/{name}/start",
    "delete": "DELETE /vms/{name}",
    "job": "GET /vms/jobs/{job_id}",
    "provider_info": "GET /provider/info",
    "summary": "GET /summary",
    "stream": "GET /vms/{name}/stream",
    "streams": "GET /payments/streams",
    "admin_shutdown": "POST /admin/shutdown",
}
_BY_PATH: dict[str, RouteName] = {path: name for name, path in ROUTE_PATHS.items()}


def route_name(spelling: str) -> RouteName:
    """``create`` for ``create`` or ``POST /vms``; ``ValueError`` for anything else."""
    text = " ".join(spelling.split())
    method, _, path = text.partition(" ")
    by_path = _BY_PATH.get(f"{method.upper()} {path}") if path else None
    if by_path is not None:
        return by_path
    for name in ROUTE_NAMES:
        if text == name:
            return name
    raise ValueError(
        f"unknown route {spelling!r}: one of {', '.join(ROUTE_NAMES)} "
        f"or {', '.join(repr(p) for p in ROUTE_PATHS.values())}"
    )
