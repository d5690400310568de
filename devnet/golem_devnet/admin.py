"""The devnet's admin routes (a devnet-only extension of the wire contract).

They live on the discovery server, which stays up while a provider plays
"offline", and answer loopback peers only. A web page in a browser on this
machine is a loopback peer too, so every route also wants a ``Host`` header that
names loopback (an IP literal or ``localhost``: no DNS-rebound name), and the
routes that change something want ``Content-Type: application/json`` (which a
page cannot send without a CORS preflight, and that is never answered)::

    GET /devnet/providers                        every provider: address, faults, VMs
    GET /devnet/providers/{provider_id}          one provider
    PUT /devnet/providers/{provider_id}/faults   body: Faults (replaces that provider's)
    PUT /devnet/faults                           body: Faults (replaces every provider's)
    GET /devnet/providers/{provider_id}/requests the requests it received, oldest first;
                                                 ?route= ?vm= ?after=SEQ ?answered=true
                                                 filter, ?wait=S waits up to S seconds
                                                 for a first match
    POST /devnet/providers/{provider_id}/vms/{name}/rotate-host-key
                                                 a new host key for that VM, as if re-created
"""

from __future__ import annotations

import asyncio
import ipaddress
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from golem_devnet.faults import Faults, RouteName, route_name
from golem_devnet.http import detail, json_response, parse_body
from golem_devnet.provider import RequestRecord

# A waiting GET .../requests answers (maybe empty) after this long at most.
MAX_REQUEST_WAIT_S = 60.0


class AdminBackend(Protocol):
    def provider_summaries(self) -> list[dict[str, Any]]: ...

    def provider_summary(self, provider_id: str) -> dict[str, Any] | None: ...

    async def set_faults(self, provider_id: str, faults: Faults) -> None: ...

    async def set_all_faults(self, faults: Faults) -> None: ...

    async def rotate_host_key(self, provider_id: str, vm_name: str) -> str: ...

    def requests(self, provider_id: str, after: int = 0) -> list[RequestRecord]: ...

    async def wait_for_request(
        self,
        provider_id: str,
        route: RouteName | None = None,
        vm: str | None = None,
        after: int = 0,
        answered: bool = False,
    ) -> RequestRecord: ...


def is_loopback_peer(remote: str | None) -> bool:
    """True for a peer on 127.0.0.0/8 or ::1 (also written as an IPv4-mapped IPv6)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_loopback_host_header(host: str | None) -> bool:
    """True for ``localhost`` or a loopback IP literal, with or without a port."""
    if not host:
        return False
    try:
        name = urllib.parse.urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    if name is None:
        return False
    if name == "localhost":
        return True
    return is_loopback_peer(name)


Guarded = Callable[[web.Request], Awaitable[web.Response]]


def _loopback_only(handler: Guarded, *, changes_state: bool = False) -> Guarded:
    async def guarded(request: web.Request) -> web.Response:
        if not is_loopback_peer(request.remote):
            return detail("The devnet admin API answers loopback clients only", 403)
        if not is_loopback_host_header(request.headers.get("Host")):
            return detail(
                "The devnet admin API answers requests for a loopback host only "
                "(Host: 127.x.y.z, [::1] or localhost)",
                403,
            )
        if changes_state and request.content_type != "application/json":
            return detail("Send the request with Content-Type: application/json", 415)
        return await handler(request)

    return guarded


def add_admin_routes(app: web.Application, backend: AdminBackend) -> None:
    async def list_providers(request: web.Request) -> web.Response:
        return json_response(backend.provider_summaries())

    async def get_provider(request: web.Request) -> web.Response:
        summary = backend.provider_summary(request.match_info["provider_id"])
        if summary is None:
            return detail("Provider not found", 404)
        return json_response(summary)

    async def put_faults(request: web.Request) -> web.Response:
        provider_id = request.match_info["provider_id"]
        if backend.provider_summary(provider_id) is None:
            return detail("Provider not found", 404)
        faults = await parse_body(request, Faults)
        if isinstance(faults, web.Response):
            return faults
        await backend.set_faults(provider_id, faults)
        return json_response({"provider_id": provider_id, "faults": faults.model_dump(mode="json")})

    async def put_all_faults(request: web.Request) -> web.Response:
        faults = await parse_body(request, Faults)
        if isinstance(faults, web.Response):
            return faults
        await backend.set_all_faults(faults)
        return json_response(
            {
                "providers": [p["provider_id"] for p in backend.provider_summaries()],
                "faults": faults.model_dump(mode="json"),
            }
        )

    async def list_requests(request: web.Request) -> web.Response:
        provider_id = request.match_info["provider_id"]
        if backend.provider_summary(provider_id) is None:
            return detail("Provider not found", 404)
        query = request.query
        try:
            route = route_name(query["route"]) if "route" in query else None
            after = int(query.get("after", "0"))
            wait = min(max(float(query.get("wait", "0")), 0.0), MAX_REQUEST_WAIT_S)
        except ValueError as error:
            return detail(str(error), 400)
        vm = query.get("vm")
        answered = query.get("answered", "false").lower() in ("1", "true", "yes")
        if wait > 0:
            # Long poll: answers as soon as one matching request has arrived.
            try:
                async with asyncio.timeout(wait):
                    await backend.wait_for_request(provider_id, route, vm, after, answered)
            except TimeoutError:
                pass
        records = [
            record.as_json()
            for record in backend.requests(provider_id, after)
            if record.matches(route, vm, after, answered)
        ]
        return json_response(records)

    async def rotate_host_key(request: web.Request) -> web.Response:
        provider_id = request.match_info["provider_id"]
        name = request.match_info["name"]
        if backend.provider_summary(provider_id) is None:
            return detail("Provider not found", 404)
        try:
            host_key = await backend.rotate_host_key(provider_id, name)
        except KeyError:
            return detail("VM not found", 404)
        return json_response({"provider_id": provider_id, "name": name, "host_key": host_key})

    app.add_routes(
        [
            web.get("/devnet/providers", _loopback_only(list_providers), allow_head=False),
            web.get(
                "/devnet/providers/{provider_id}", _loopback_only(get_provider), allow_head=False
            ),
            web.get(
                "/devnet/providers/{provider_id}/requests",
                _loopback_only(list_requests),
                allow_head=False,
            ),
            web.put(
                "/devnet/providers/{provider_id}/faults",
                _loopback_only(put_faults, changes_state=True),
            ),
            web.put("/devnet/faults", _loopback_only(put_all_faults, changes_state=True)),
            web.post(
                "/devnet/providers/{provider_id}/vms/{name}/rotate-host-key",
                _loopback_only(rotate_host_key, changes_state=True),
            ),
        ]
    )
