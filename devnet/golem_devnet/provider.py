"""Devnet provider nodes: the provider half of the wire contract, with its quirks.

One aiohttp app serves every provider; each provider listens on its own loopback
address and port 7466, and a request is routed to the provider whose address it
arrived on. That keeps 200 providers cheap: one app, one runner, 200 sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import asyncssh
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from golem_devnet.faults import OVERSIZED_BODY_BYTES, ROUTE_NAMES, Faults, RouteName
from golem_devnet.http import Handler, detail, json_response, now_iso, parse_body
from golem_devnet.proxy import TcpProxy
from golem_devnet.vm import VMServer, prepare_vm_root

API_PORT = 7466  # every provider of the network listens here; the requestor assumes it
FIRST_SSH_PORT = 50800
LAST_SSH_PORT = 65535
COUNTRIES = ("SE", "US", "DE", "PL", "JP")
CPU_CHOICES = (4, 8, 16)
MEMORY_CHOICES = (8, 16, 32)
STORAGE_CHOICES = (40, 80, 160)
ALLOWED_CPU = (1, 2, 4, 8, 16)
ALLOWED_MEMORY = (1, 2, 4, 8, 16, 32, 64)
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*[a-z0-9]$"

VMStatus = Literal["creating", "running", "stopping", "stopped", "error", "deleted"]

# The deployed provider's answer to "not enough resources" (a quirk the requestor must survive).
UNEXPECTED = "An unexpected error occurred"
# A provider remembers this many requests (a 200-VM fleet makes a few thousand).
REQUEST_LOG_SIZE = 20_000


@dataclass
class RequestRecord:
    """One request a provider received, logged once its whole body has arrived and
    before any fault acts on it, so a test can wait for "the provider has it"."""

    seq: int  # 1, 2, ... per provider, never reused
    route: RouteName | None  # None for a path no route serves
    method: str
    path: str
    vm: str | None  # the VM name in the path, or in a create's body
    monotonic: float  # time.monotonic() of the devnet's process
    wall: str  # naive-UTC ISO timestamp, as the provider's other timestamps
    # The answer's status once the provider has handled it (its work done); None
    # while it is held, hangs or is slow, and for a request cut off (offline).
    status: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "route": self.route,
            "method": self.method,
            "path": self.path,
            "vm": self.vm,
            "monotonic": self.monotonic,
            "wall": self.wall,
            "status": self.status,
        }

    def matches(
        self, route: RouteName | None, vm: str | None, after: int, answered: bool = False
    ) -> bool:
        return (
            self.seq > after
            and (route is None or self.route == route)
            and (vm is None or self.vm == vm)
            and (not answered or self.status is not None)
        )


@dataclass(frozen=True)
class ProviderSpec:
    provider_id: str
    ip_address: str
    country: str
    cpu: int
    memory: int
    storage: int

    @classmethod
    def for_index(cls, index: int, ip_address: str, capacity_scale: int = 1) -> ProviderSpec:
        """Readable, stable, and varied enough that filters pick different providers.

        ``capacity_scale`` multiplies every capacity, for fleets of many small VMs.
        """
        return cls(
            provider_id=f"devnet-provider-{index + 1:02d}",
            ip_address=ip_address,
            country=COUNTRIES[index % len(COUNTRIES)],
            cpu=CPU_CHOICES[index % 3] * capacity_scale,
            memory=MEMORY_CHOICES[(index + index // 3) % 3] * capacity_scale,
            storage=STORAGE_CHOICES[(index + index // 9) % 3] * capacity_scale,
        )

    @property
    def api_url(self) -> str:
        return f"http://{self.ip_address}:{API_PORT}/api/v1"


class VMResources(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cpu: int
    memory: int
    storage: int = Field(ge=10)

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: int) -> int:
        if value not in ALLOWED_CPU:
            raise ValueError(f"cpu must be one of {', '.join(map(str, ALLOWED_CPU))}")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: int) -> int:
        if value not in ALLOWED_MEMORY:
            raise ValueError(f"memory must be one of {', '.join(map(str, ALLOWED_MEMORY))} GB")
        return value


class VMCreate(BaseModel):
    """``POST /vms``, validated by exactly the rules deployed providers apply."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=3, max_length=64, pattern=NAME_PATTERN)
    resources: VMResources
    ssh_key: str
    image: str | None = None

    @field_validator("name")
    @classmethod
    def _no_double_dash(cls, value: str) -> str:
        if "--" in value:
            raise ValueError("name must not contain '--'")
        return value

    @field_validator("ssh_key")
    @classmethod
    def _key_type(cls, value: str) -> str:
        if not value.startswith(("ssh-rsa ", "ssh-ed25519 ")):
            raise ValueError("ssh_key must start with 'ssh-rsa ' or 'ssh-ed25519 '")
        return value


class ProviderError(Exception):
    """Answered as 500 ``{"detail": message}``, as the deployed provider does."""


@dataclass
class DevnetVM:
    name: str
    multipass_name: str
    resources: dict[str, int]
    ip_address: str
    ssh_port: int
    root: Path
    server: VMServer
    proxy: TcpProxy
    status: VMStatus = "creating"
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    boot: asyncio.Task[None] | None = None
    # Held by stop, start, delete and a delayed boot: each sees the state the one
    # before it left, so a start still binding its port cannot outlive a delete.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "name": self.name,
            "status": self.status,
            "resources": dict(self.resources),
            "ip_address": self.ip_address,
            "ssh_port": self.ssh_port,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "error_message": None,
        }

    def set_status(self, status: VMStatus) -> None:
        self.status = status
        self.updated_at = now_iso()


class ProviderNode:
    """One provider: its VMs, its free resources and its faults.

    This is the legacy generation. ``golem_devnet.current.CurrentProviderNode``,
    a subclass, speaks the current one through the three hooks below and by
    extending ``advertisement``, ``summary``, ``_create_locked`` and ``shutdown``.
    """

    generation = "legacy"
    # Routes this provider does not have: answered as absent (404/405, like FastAPI).
    absent_routes: frozenset[RouteName] = frozenset()

    def route_override(self, name: str | None) -> Handler | None:
        """A handler that answers route ``name`` instead of the app's, or None."""
        return None

    def __init__(
        self,
        spec: ProviderSpec,
        vms_dir: Path,
        faults: Faults,
        on_change: Callable[[ProviderNode], Awaitable[None]],
        request_logged: asyncio.Condition | None = None,
    ) -> None:
        self.spec = spec
        self._faults = faults
        # Replaced (after being set) at every fault change: held requests wait on it.
        self._faults_changed = asyncio.Event()
        self.requests: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_SIZE)
        self._request_seq = 0
        # Notified at every request logged or answered; a devnet shares one among
        # its providers, so a wait can look at all of them.
        self._request_logged = request_logged or asyncio.Condition()
        self.vms: dict[str, DevnetVM] = {}
        # VMs whose name a later create took over (a deployed quirk): still
        # running and still holding resources and their port, but unreachable by name.
        self.orphans: list[DevnetVM] = []
        self.site: web.TCPSite | None = None
        self.transports: set[asyncio.Transport] = set()
        self._vms_dir = vms_dir / spec.provider_id
        self._on_change = on_change
        self._random = random.Random()
        self._vm_count = 0
        self._hung = asyncio.Event()
        self._create_lock = asyncio.Lock()

    @property
    def provider_id(self) -> str:
        return self.spec.provider_id

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults; requests held by the old ones look again."""
        self._faults = faults
        changed, self._faults_changed = self._faults_changed, asyncio.Event()
        changed.set()

    # --- the request log --------------------------------------------------------

    async def log_request(
        self, route: RouteName | None, method: str, path: str, vm: str | None
    ) -> RequestRecord:
        self._request_seq += 1
        record = RequestRecord(
            self._request_seq, route, method, path, vm, time.monotonic(), now_iso()
        )
        self.requests.append(record)
        await self._notify_log()
        return record

    async def log_answer(self, record: RequestRecord, status: int) -> None:
        record.status = status
        await self._notify_log()

    async def _notify_log(self) -> None:
        async with self._request_logged:
            self._request_logged.notify_all()

    async def wait_for_request(
        self,
        route: RouteName | None = None,
        vm: str | None = None,
        after: int = 0,
        answered: bool = False,
    ) -> RequestRecord:
        """The first logged request (``seq`` above ``after``) on ``route`` for ``vm``
        (None: any), waiting for it to arrive if it has not yet; with ``answered``,
        for it to have been handled too."""

        def found() -> RequestRecord | None:
            return next((r for r in self.requests if r.matches(route, vm, after, answered)), None)

        async with self._request_logged:
            await self._request_logged.wait_for(lambda: found() is not None)
        record = found()
        assert record is not None
        return record

    async def hold(self, route: RouteName | None) -> None:
        """Park a request while the faults hold its route; give up at shutdown."""
        while route is not None and route in self._faults.hold:
            changed = asyncio.ensure_future(self._faults_changed.wait())
            stopping = asyncio.ensure_future(self._hung.wait())
            try:
                await asyncio.wait([changed, stopping], return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                stopping.cancel()
            if self._hung.is_set():
                raise web.HTTPServiceUnavailable

    def free(self) -> dict[str, int]:
        used = {"cpu": 0, "memory": 0, "storage": 0}
        for vm in [*self.vms.values(), *self.orphans]:
            for key in used:
                used[key] += vm.resources[key]
        return {
            "cpu": self.spec.cpu - used["cpu"],
            "memory": self.spec.memory - used["memory"],
            "storage": self.spec.storage - used["storage"],
        }

    def advertisement(self) -> dict[str, Any]:
        return {
            "ip_address": self.spec.ip_address,
            "country": self.spec.country,
            "resources": self.free(),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "provider_id": self.provider_id,
            "ip_address": self.spec.ip_address,
            "api_url": self.spec.api_url,
            "country": self.spec.country,
            "capacity": {
                "cpu": self.spec.cpu,
                "memory": self.spec.memory,
                "storage": self.spec.storage,
            },
            "free": self.free(),
            "generation": self.generation,
            "faults": self.faults.model_dump(mode="json"),
            "vms": [
                {
                    "name": vm.name,
                    "multipass_name": vm.multipass_name,
                    "status": vm.status,
                    "ssh_port": vm.ssh_port,
                    "orphaned": vm in self.orphans,
                }
                for vm in [*self.vms.values(), *self.orphans]
            ],
        }

    # --- the API listener -------------------------------------------------------

    async def listen(self, runner: web.AppRunner) -> None:
        if self.site is None:
            site = web.TCPSite(runner, self.spec.ip_address, API_PORT)
            await site.start()
            self.site = site

    async def go_offline(self) -> None:
        site, self.site = self.site, None
        if site is not None:
            await site.stop()
        # A crashed provider also drops the connections clients keep alive.
        for transport in list(self.transports):
            transport.abort()
        self.transports.clear()

    async def hang(self) -> None:
        """Waits until the devnet shuts down, then gives up on the request."""
        # _hung is set at shutdown only: it also ends held requests (hold()).
        await self._hung.wait()
        raise web.HTTPServiceUnavailable

    def should_fail(self) -> bool:
        rate = self.faults.error_rate
        return rate > 0 and self._random.random() < rate

    # --- VMs --------------------------------------------------------------------

    async def create_vm(self, request: VMCreate) -> DevnetVM:
        # Held from the resource check until the VM is registered, so two
        # concurrent creates cannot both take the last free CPU or port.
        async with self._create_lock:
            vm = await self._create_locked(request)
        # Discovery knows the new free resources before the requestor gets its answer.
        await self._on_change(self)
        return vm

    async def _create_locked(self, request: VMCreate) -> DevnetVM:
        wanted = request.resources.model_dump()
        free = self.free()
        if any(wanted[key] > free[key] for key in wanted):
            raise ProviderError(UNEXPECTED)
        proxy = await self._allocate_port()
        self._vm_count += 1
        multipass_name = self._unique_multipass_name(request.name)
        root = self._vms_dir / multipass_name
        vm = DevnetVM(
            name=request.name,
            multipass_name=multipass_name,
            resources=wanted,
            ip_address=f"10.161.{self._vm_count // 250}.{self._vm_count % 250 + 2}",
            ssh_port=proxy.port,
            root=root,
            server=VMServer(root),
            proxy=proxy,
        )
        try:
            prepare_vm_root(root, request.name, request.ssh_key)
            if self.faults.boot_delay_s <= 0:
                await self._boot(vm)
        except (OSError, asyncssh.Error) as error:
            await proxy.close()
            await vm.server.stop()
            shutil.rmtree(root, ignore_errors=True)
            raise ProviderError(f"Failed to create VM {request.name}: {error}") from None
        if self.faults.boot_delay_s > 0:
            vm.boot = asyncio.ensure_future(self._boot_later(vm, self.faults.boot_delay_s))
        earlier = self.vms.get(request.name)
        if earlier is not None:
            self.orphans.append(earlier)
        self.vms[request.name] = vm
        return vm

    async def stop_vm(self, vm: DevnetVM) -> None:
        async with vm.lock:
            await self._stop_locked(vm)

    async def _stop_locked(self, vm: DevnetVM) -> None:
        if vm.status == "deleted":
            return
        boot, vm.boot = vm.boot, None
        if boot is not None:
            # A delayed boot waits for vm.lock (held here) or sleeps: it ends here.
            boot.cancel()
            await asyncio.wait([boot])
        await vm.proxy.close()
        await vm.server.stop()
        vm.proxy.target_port = None
        vm.set_status("stopped")

    async def start_vm(self, vm: DevnetVM) -> None:
        async with vm.lock:
            if vm.status != "stopped":
                return
            try:
                await vm.proxy.listen()
            except OSError as error:
                raise ProviderError(f"Failed to start VM: {error}") from None
            await self._boot(vm)

    async def delete_vm(self, vm: DevnetVM) -> None:
        async with vm.lock:
            if vm.status == "deleted":
                return
            await self._stop_locked(vm)
            vm.set_status("deleted")
            if self.vms.get(vm.name) is vm:
                del self.vms[vm.name]
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: shutil.rmtree(vm.root, ignore_errors=True)
            )
        await self._on_change(self)

    def rotate_host_key(self, name: str) -> str:
        """Give VM ``name`` a new host key, as if the provider had re-created it.

        Answers the new key as an OpenSSH public key line; ``KeyError`` for an unknown VM.
        """
        vm = self.vms.get(name)
        if vm is None:
            raise KeyError(f"{self.provider_id} has no VM {name!r}")
        key = vm.server.rotate_host_key()
        vm.updated_at = now_iso()
        return key.export_public_key().decode().strip()

    async def shutdown(self) -> None:
        self._hung.set()
        await asyncio.gather(
            *(self.stop_vm(vm) for vm in [*self.vms.values(), *self.orphans]),
            return_exceptions=True,
        )

    async def _boot(self, vm: DevnetVM) -> None:
        vm.proxy.target_port = await vm.server.start()
        vm.set_status("running")

    async def _boot_later(self, vm: DevnetVM, delay: float) -> None:
        await asyncio.sleep(delay)
        async with vm.lock:
            if vm.boot is not asyncio.current_task():
                return  # stopped (or deleted) meanwhile
            vm.boot = None
            await self._boot(vm)

    def _unique_multipass_name(self, name: str) -> str:
        base = f"golem-{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
        candidate, suffix = base, 1
        held = {vm.multipass_name for vm in [*self.vms.values(), *self.orphans]}
        while candidate in held or (self._vms_dir / candidate).exists():
            suffix += 1
            candidate = f"{base}-{suffix}"
        return candidate

    async def _allocate_port(self) -> TcpProxy:
        held = {vm.ssh_port for vm in [*self.vms.values(), *self.orphans]}
        for port in range(FIRST_SSH_PORT, LAST_SSH_PORT + 1):
            if port in held:
                continue
            proxy = TcpProxy(self.spec.ip_address, port, garbage=lambda: self.faults.garbage_ssh)
            try:
                await proxy.listen()
            except OSError:
                continue  # taken by something outside the devnet
            return proxy
        raise ProviderError("Failed to create VM: no free SSH port")


# --- the HTTP app ---------------------------------------------------------------

ProviderLookup = Callable[[str], ProviderNode | None]


_PROVIDER = web.RequestKey("provider", ProviderNode)


def _provider(request: web.Request) -> ProviderNode:
    return request[_PROVIDER]


def _route_name(request: web.Request) -> RouteName | None:
    route = request.match_info.route
    name = route.name if route is not None else None
    return next((known for known in ROUTE_NAMES if known == name), None)


def _vm_name(request: web.Request, body: bytes) -> str | None:
    """The VM a request is about: from the path, or the name in a create's body."""
    name = request.match_info.get("name")
    if name is not None:
        return name
    if request.method != "POST" or not body:
        return None
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            return str(data["name"])
    return None


def _absent(request: web.Request, missing: frozenset[RouteName]) -> web.Response:
    # FastAPI: a path that another method still serves answers 405, otherwise 404.
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else None
    if any(
        other.canonical == path and other.name not in missing
        for other in request.app.router.resources()
    ):
        return detail("Method Not Allowed", 405)
    return detail("Not Found", 404)


def _malformed(response: web.Response) -> web.Response:
    body = bytes(response.body) if isinstance(response.body, (bytes, bytearray)) else b"null"
    broken = body[: len(body) // 2]
    with contextlib.suppress(ValueError):
        json.loads(broken)
        broken = b'{"detail": '  # what was left still parsed: break it for sure
    return web.Response(body=broken, status=response.status, content_type="application/json")


async def _oversized(request: web.Request, status: int) -> web.StreamResponse:
    head, tail = b'{"detail": "', b'"}'
    filler = OVERSIZED_BODY_BYTES - len(head) - len(tail)
    response = web.StreamResponse(status=status)
    response.content_type = "application/json"
    response.content_length = OVERSIZED_BODY_BYTES
    await response.prepare(request)
    chunk = b"x" * (1024 * 1024)
    with contextlib.suppress(ConnectionError):
        await response.write(head)
        while filler > 0:
            await response.write(chunk[:filler])
            filler -= len(chunk)
        await response.write(tail)
        await response.write_eof()
    return response


def _fault_middleware(lookup: ProviderLookup) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport else None
        node = lookup(sockname[0]) if sockname else None
        if node is None or transport is None:
            return detail("Not Found", 404)
        request[_PROVIDER] = node
        if len(node.transports) > 256:
            node.transports = {t for t in node.transports if not t.is_closing()}
        node.transports.add(transport)
        name = _route_name(request)
        # Like a deployed (FastAPI) provider, take the whole request first: a client
        # that dies while waiting for the answer (held, slow) has still asked.
        body = await request.read()
        record = await node.log_request(name, request.method, request.path, _vm_name(request, body))
        response = await _answer(node, request, handler, name)
        await node.log_answer(record, response.status)
        return response

    return middleware


async def _answer(
    node: ProviderNode, request: web.Request, handler: Handler, name: RouteName | None
) -> web.StreamResponse:
    """The answer to a logged request, as the provider's faults shape it."""
    transport = request.transport
    if node.faults.offline and transport is not None:
        # A connection kept alive from before the provider went down.
        transport.abort()
        raise web.HTTPServiceUnavailable
    if node.faults.hang:
        await node.hang()
    await node.hold(name)
    # Read after a hold: the faults that released it are the ones that apply.
    faults = node.faults
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    missing = faults.missing_routes | node.absent_routes
    if name in missing:
        response: web.StreamResponse = _absent(request, missing)
    elif node.should_fail():
        response = detail("Injected fault", 500)
    elif name == "delete" and faults.delete_fails:
        response = detail(UNEXPECTED, 500)  # the VM stays
    else:
        try:
            response = await (node.route_override(name) or handler)(request)
        except web.HTTPMethodNotAllowed:
            response = detail("Method Not Allowed", 405)
        except web.HTTPNotFound:
            response = detail("Not Found", 404)
        except ProviderError as error:
            response = detail(str(error), 500)
        if name == "create" and faults.create_then_fail and response.status < 300:
            # The VM exists; the answer says otherwise, as the deployed catch-all does.
            response = detail(UNEXPECTED, 500)
    if faults.oversized_body:
        return await _oversized(request, response.status)
    if faults.malformed_json and isinstance(response, web.Response):
        return _malformed(response)
    return response


def _vm_or_none(request: web.Request) -> DevnetVM | None:
    return _provider(request).vms.get(request.match_info["name"])


async def _create(request: web.Request) -> web.Response:
    body = await parse_body(request, VMCreate)
    if isinstance(body, web.Response):
        return body
    vm = await _provider(request).create_vm(body)
    return json_response(vm.info())


async def _list(request: web.Request) -> web.Response:
    return json_response([vm.info() for vm in _provider(request).vms.values()])


async def _get(request: web.Request) -> web.Response:
    vm = _vm_or_none(request)
    if vm is None:
        return detail("VM not found", 404)
    return json_response(vm.info())


async def _access(request: web.Request) -> web.Response:
    vm = _vm_or_none(request)
    if vm is None:
        return detail(UNEXPECTED, 500)  # deployed quirk: not a 404
    return json_response(
        {
            "ssh_host": _provider(request).spec.ip_address,
            "ssh_port": vm.ssh_port,
            "vm_id": vm.name,
            "multipass_name": vm.multipass_name,
        }
    )


async def _stop(request: web.Request) -> web.Response:
    vm = _vm_or_none(request)
    if vm is None:
        return detail("VM not found", 404)
    await _provider(request).stop_vm(vm)
    return json_response(vm.info())


async def _start(request: web.Request) -> web.Response:
    vm = _vm_or_none(request)
    if vm is None:
        return detail("VM not found", 404)
    await _provider(request).start_vm(vm)
    return json_response(vm.info())


async def _delete(request: web.Request) -> web.Response:
    vm = _vm_or_none(request)
    if vm is not None:  # deployed quirk: an unknown name is a 200 as well
        await _provider(request).delete_vm(vm)
    return json_response(None)


def make_provider_app(lookup: ProviderLookup) -> web.Application:
    app = web.Application(middlewares=[_fault_middleware(lookup)])
    app.add_routes(
        [
            web.post("/api/v1/vms", _create, name="create"),
            web.get("/api/v1/vms", _list, name="list", allow_head=False),
            web.get("/api/v1/vms/{name}", _get, name="get", allow_head=False),
            web.delete("/api/v1/vms/{name}", _delete, name="delete"),
            web.get("/api/v1/vms/{name}/access", _access, name="access", allow_head=False),
            web.post("/api/v1/vms/{name}/stop", _stop, name="stop"),
            web.post("/api/v1/vms/{name}/start", _start, name="start"),
        ]
    )
    return app
