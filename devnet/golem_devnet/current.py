"""The current provider generation (providers published since September 2025, 0.1.6x).

The wire contract's section "Current provider generation" describes it; this
module serves it, next to the legacy generation of ``golem_devnet.provider``.
A ``CurrentProviderNode`` is a ``ProviderNode`` that answers some routes with its
own handlers (``route_override``), has no start route (``absent_routes``) and
adds these routes, which a legacy provider answers 404 ``Not Found``:

    POST /api/v1/vms?async=true             202 {"job_id", "vm_id", "status": "creating"}
    GET  /api/v1/vms/jobs/{job_id}          the job
    GET  /api/v1/provider/info              who the provider says it is, payment addresses
    GET  /api/v1/summary                    resources, pricing, VMs
    GET  /api/v1/vms/{name}/stream          payments off: 400
    GET  /api/v1/payments/streams           payments off: 400
    POST /api/v1/admin/shutdown             stops the provider (loopback peers only here)

What a test or demo can set per provider is ``CurrentOptions``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from golem_devnet.admin import _loopback_only, is_loopback_host_header, is_loopback_peer
from golem_devnet.faults import Faults, RouteName
from golem_devnet.http import Handler, detail, json_response, parse_body
from golem_devnet.provider import (
    UNEXPECTED,
    DevnetVM,
    ProviderError,
    ProviderNode,
    ProviderSpec,
    VMCreate,
)

Generation = Literal["legacy", "current"]
GENERATIONS: tuple[Generation, ...] = ("legacy", "current")

ZERO_ADDRESS = "0x" + "0" * 40
# What a provider with payments on reports as the GLM token; any non-zero address would do.
DEVNET_GLM_TOKEN = "0x7dd9c5cba05e151c895fde1cf355c9a1d5da6429"
PLATFORM = "x86_64"
PAYMENTS_OFF = "streaming payments not enabled on this provider"
STREAM_REQUIRED = "stream_id required when payments are enabled"
# The deployed answer to an unknown route, also for start/restart on this generation.
NOT_FOUND = "Not Found"
_TRUE = frozenset({"true", "1", "yes", "on"})
_MONTH_S = 30 * 24 * 3600
_GLM_PER_USD = 4  # a devnet exchange rate: 1 GLM = 0.25 USD


class Pricing(BaseModel):
    """Monthly prices, as a current provider advertises them and ``/summary`` shows them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd_per_core_month: float = Field(ge=0)
    usd_per_gb_ram_month: float = Field(ge=0)
    usd_per_gb_storage_month: float = Field(ge=0)
    glm_per_core_month: float = Field(ge=0)
    glm_per_gb_ram_month: float = Field(ge=0)
    glm_per_gb_storage_month: float = Field(ge=0)

    @classmethod
    def for_index(cls, index: int) -> Pricing:
        """Stable and different per provider, so a sort by price has an order to find."""
        core = 2.0 + 0.5 * (index % 7)
        ram = 0.5 + 0.25 * (index % 5)
        storage = 0.05 + 0.01 * (index % 3)
        return cls(
            usd_per_core_month=core,
            usd_per_gb_ram_month=ram,
            usd_per_gb_storage_month=round(storage, 4),
            glm_per_core_month=core * _GLM_PER_USD,
            glm_per_gb_ram_month=ram * _GLM_PER_USD,
            glm_per_gb_storage_month=round(storage * _GLM_PER_USD, 4),
        )


class CurrentOptions(BaseModel):
    """How one current-generation provider behaves; the default is a healthy one, payments off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    payments: bool = Field(
        default=False,
        description="payment-required mode: a non-zero stream_payment_address, and POST /vms "
        "without stream_id is refused with 400",
    )
    pricing: Pricing | None = Field(
        default=None, description="prices to advertise; None: the devnet's prices for the index"
    )
    advertise_pricing: bool = Field(
        default=True, description="false: the advertisement carries pricing null"
    )
    provider_info_id: str | None = Field(
        default=None,
        description="/provider/info reports this provider_id instead of the advertised one",
    )
    fail_jobs: bool = Field(
        default=False, description="every async create job fails; nothing is created"
    )
    job_delay_s: float = Field(
        default=0.0, ge=0.0, le=3600.0, description="an async job stays creating this long"
    )
    hold_jobs: bool = Field(
        default=False, description="an async job stays creating until release_jobs()"
    )
    ssh_proxy_delay_s: float = Field(
        default=0.0,
        ge=0.0,
        le=3600.0,
        description="a new VM is running with ssh_port null (access 202) this long",
    )
    hold_ssh_proxy: bool = Field(
        default=False,
        description="a new VM is running with ssh_port null (access 202) until release_ssh_proxy()",
    )

    def describe(self) -> str:
        """A short human summary, e.g. ``payments job_delay_s=2``; ``-`` if all default."""
        parts: list[str] = []
        defaults = CurrentOptions()
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value == getattr(defaults, name):
                continue
            if value is True:
                parts.append(name)
            elif name == "pricing":
                parts.append("pricing=custom")
            else:
                parts.append(f"{name}={value}")
        return " ".join(parts) or "-"


class CurrentVMCreate(VMCreate):
    """``POST /vms`` on this generation: the same rules, and an optional payment stream."""

    stream_id: int | str | None = None


def aware_now() -> str:
    """A timezone-aware ISO timestamp, as the job route writes them."""
    return datetime.now(UTC).isoformat()


def payment_address(provider_id: str) -> str:
    """The devnet's stand-in for a provider's stream payment address (never zero)."""
    return "0x" + hashlib.sha256(provider_id.encode()).hexdigest()[:40]


@dataclass
class Job:
    job_id: str
    body: CurrentVMCreate
    status: Literal["creating", "ready", "failed"] = "creating"
    error: str | None = None
    created_at: str = field(default_factory=aware_now)
    updated_at: str = field(default_factory=aware_now)
    task: asyncio.Task[None] | None = None
    waiting: bool = False  # in its delay or hold: cancelling it cannot leave half a VM
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def vm_id(self) -> str:
        return self.body.name

    def finish(self, status: Literal["ready", "failed"], error: str | None = None) -> None:
        self.status, self.error, self.updated_at = status, error, aware_now()
        self.done.set()

    def answer(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "vm_id": self.vm_id,
            "status": self.status,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class CurrentProviderNode(ProviderNode):
    """A provider of the current generation (see the module docstring)."""

    generation = "current"
    absent_routes: frozenset[RouteName] = frozenset({"start"})

    def __init__(
        self,
        spec: ProviderSpec,
        vms_dir: Path,
        faults: Faults,
        on_change: Callable[[ProviderNode], Awaitable[None]],
        *,
        index: int,
        options: CurrentOptions | None = None,
        request_logged: asyncio.Condition | None = None,
    ) -> None:
        super().__init__(spec, vms_dir, faults, on_change, request_logged)
        self.options = options or CurrentOptions()
        self.default_pricing = Pricing.for_index(index)
        self.jobs: dict[str, Job] = {}
        # Names whose async create has not made its VM yet.
        self.pending: dict[str, Job] = {}
        # VMs (by multipass name) whose SSH port is not published yet, with the
        # timer that publishes it (None: held until release_ssh_proxy).
        self.unpublished: dict[str, asyncio.TimerHandle | None] = {}
        self.streams: dict[str, str] = {}  # multipass name -> stream_id
        self._job_gates: dict[asyncio.Future[None], Job] = {}
        self._overrides: dict[str, Handler] = {
            "create": self._create,
            "list": self._list,
            "get": self._get,
            "access": self._access,
            "stop": self._stop,
            "delete": self._delete,
            "job": self._job,
            "provider_info": self._provider_info,
            "summary": self._summary,
            "stream": self._stream,
            "streams": self._streams,
            "admin_shutdown": self._admin_shutdown,
        }

    # --- the hooks ProviderNode offers ----------------------------------------------

    def route_override(self, name: str | None) -> Handler | None:
        return self._overrides.get(name) if name else None

    @property
    def pricing(self) -> Pricing:
        return self.options.pricing or self.default_pricing

    @property
    def reported_id(self) -> str:
        return self.options.provider_info_id or self.provider_id

    def advertisement(self) -> dict[str, Any]:
        pricing = self.pricing.model_dump() if self.options.advertise_pricing else None
        return {**super().advertisement(), "pricing": pricing, "platform": PLATFORM}

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "current": self.options.model_dump(mode="json"),
            "pricing": self.pricing.model_dump(),
            "jobs": [job.answer() for job in self.jobs.values()],
        }

    async def _create_locked(self, request: VMCreate) -> DevnetVM:
        # The VM's port window opens in the same step that registers the VM: no
        # answer in between shows the port of a VM whose proxy is not published.
        vm = await super()._create_locked(request)
        self._made(vm, getattr(request, "stream_id", None))
        return vm

    async def shutdown(self) -> None:
        for handle in self.unpublished.values():
            if handle is not None:
                handle.cancel()
        jobs = [job for job in self.jobs.values() if job.task and not job.task.done()]
        tasks = [job.task for job in jobs if job.task is not None]
        for job in jobs:
            if job.waiting and job.task is not None:
                job.task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await super().shutdown()

    # --- what tests and the devnet's admin use -----------------------------------------

    def set_options(self, options: CurrentOptions) -> None:
        """Replace the options; they apply to creates from now on (held ones stay held)."""
        self.options = options

    async def release_jobs(self) -> list[str]:
        """End the wait of every async job waiting now (held or delayed); returns when
        each of them is ``ready`` or ``failed``. Answers their job ids."""
        gates, self._job_gates = self._job_gates, {}
        for gate in gates:
            if not gate.done():
                gate.set_result(None)
        jobs = list(gates.values())
        await asyncio.gather(*(job.done.wait() for job in jobs))
        return [job.job_id for job in jobs]

    def release_ssh_proxy(self) -> list[str]:
        """Publish the SSH port of every VM still waiting for it now; answers their names."""
        released = []
        for vm in self._all_vms():
            if vm.multipass_name in self.unpublished:
                self._publish(vm.multipass_name)
                released.append(vm.name)
        return released

    async def wait_job(self, job_id: str) -> dict[str, Any]:
        """Wait until the job is ``ready`` or ``failed`` and answer it; ``KeyError`` if unknown."""
        job = self.jobs[job_id]
        await job.done.wait()
        return job.answer()

    # --- VM answers -------------------------------------------------------------------

    def _all_vms(self) -> list[DevnetVM]:
        return [*self.vms.values(), *self.orphans]

    def vm_info(self, vm: DevnetVM) -> dict[str, Any]:
        info = vm.info()
        if vm.status == "stopped":
            info["ip_address"] = None  # the port is kept
        elif vm.multipass_name in self.unpublished:
            info["ssh_port"] = None
        return info

    def _pending_info(self, job: Job) -> dict[str, Any]:
        created = (
            datetime.fromisoformat(job.created_at)
            .replace(tzinfo=None)
            .strftime("%Y-%m-%dT%H:%M:%S.%f")
        )
        return {
            "id": job.vm_id,
            "name": job.vm_id,
            "status": "creating",
            "resources": job.body.resources.model_dump(),
            "ip_address": None,
            "ssh_port": None,
            "created_at": created,
            "updated_at": created,
            "error_message": None,
        }

    def _not_found(self, name: str) -> web.Response:
        return detail(f"VM {name} not found", 404)

    def _publish(self, multipass_name: str) -> None:
        handle = self.unpublished.pop(multipass_name, None)
        if handle is not None:
            handle.cancel()

    def _made(self, vm: DevnetVM, stream_id: int | str | None) -> None:
        """A VM is made: record its stream and open its SSH-port window."""
        if stream_id is not None:
            self.streams[vm.multipass_name] = str(stream_id)
        options = self.options
        if options.hold_ssh_proxy:
            self.unpublished[vm.multipass_name] = None
        elif options.ssh_proxy_delay_s > 0:
            loop = asyncio.get_running_loop()
            self.unpublished[vm.multipass_name] = loop.call_later(
                options.ssh_proxy_delay_s, self._publish, vm.multipass_name
            )

    # --- routes ---------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        body = await parse_body(request, CurrentVMCreate)
        if isinstance(body, web.Response):
            return body
        if self.options.payments and body.stream_id in (None, ""):
            return detail(STREAM_REQUIRED, 400)
        if request.query.get("async", "").lower() in _TRUE:
            job = Job(job_id=str(uuid.uuid4()), body=body)
            self.jobs[job.job_id] = job
            self.pending[body.name] = job
            job.task = asyncio.ensure_future(self._run_job(job))
            return json_response(
                {"job_id": job.job_id, "vm_id": job.vm_id, "status": "creating"}, 202
            )
        vm = await self.create_vm(body)
        return json_response(self.vm_info(vm))

    async def _run_job(self, job: Job) -> None:
        name = job.vm_id
        try:
            await self._job_wait(job)
            if self.options.fail_jobs:
                raise ProviderError(
                    f"Failed to create VM {name}: the devnet was told to fail jobs (fail_jobs)"
                )
            await self.create_vm(job.body)
        except ProviderError as error:
            message = str(error)
            if not message.startswith(f"Failed to create VM {name}"):
                message = f"Failed to create VM {name}: {message}"
            job.finish("failed", message)
        except asyncio.CancelledError:
            job.finish("failed", f"Failed to create VM {name}: cancelled")
            raise
        else:
            job.finish("ready")
        finally:
            if self.pending.get(name) is job:
                del self.pending[name]

    async def _job_wait(self, job: Job) -> None:
        options = self.options
        if not options.hold_jobs and options.job_delay_s <= 0:
            return
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._job_gates[gate] = job
        job.waiting = True
        try:
            await asyncio.wait([gate], timeout=None if options.hold_jobs else options.job_delay_s)
        finally:
            job.waiting = False
            self._job_gates.pop(gate, None)
            gate.cancel()

    async def _list(self, request: web.Request) -> web.Response:
        answer = [self.vm_info(vm) for vm in self.vms.values()]
        answer += [self._pending_info(job) for job in self.pending.values()]
        return json_response(answer)

    async def _get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        job = self.pending.get(name)
        if job is not None:
            return json_response(self._pending_info(job))
        vm = self.vms.get(name)
        if vm is None:
            return self._not_found(name)
        return json_response(self.vm_info(vm))

    async def _access(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        job = self.pending.get(name)
        vm = self.vms.get(name)
        if job is not None or (vm is not None and vm.multipass_name in self.unpublished):
            return json_response(
                {
                    "vm_id": name,
                    # Not known before the VM is made.
                    "multipass_name": vm.multipass_name if job is None and vm else None,
                    "status": "creating",
                    "ssh_port": None,
                },
                202,
            )
        if vm is None:
            return detail(UNEXPECTED, 500)  # deployed quirk, kept: not a 404
        return json_response(
            {
                "ssh_host": self.spec.ip_address,
                "ssh_port": vm.ssh_port,
                "vm_id": vm.name,
                "multipass_name": vm.multipass_name,
            }
        )

    async def _stop(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        vm = self.vms.get(name)
        if vm is None:
            return self._not_found(name)
        await self.stop_vm(vm)
        self._publish(vm.multipass_name)  # a stopped VM shows the port it keeps
        return json_response(self.vm_info(vm))

    async def _delete(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        job = self.pending.get(name)
        if job is not None and job.task is not None:
            # A job still waiting ends as failed; one making its VM finishes first,
            # and that VM is deleted below.
            if job.waiting:
                job.task.cancel()
            await asyncio.wait([job.task])
        vm = self.vms.get(name)
        if vm is not None:  # deployed quirk: an unknown name is a 200 as well
            await self.delete_vm(vm)
            self._publish(vm.multipass_name)
            self.streams.pop(vm.multipass_name, None)
        return json_response(None)

    async def _job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return detail("job not found", 404)
        return json_response(job.answer())

    async def _provider_info(self, request: web.Request) -> web.Response:
        payments = self.options.payments
        return json_response(
            {
                "provider_id": self.reported_id,
                "stream_payment_address": (
                    payment_address(self.provider_id) if payments else ZERO_ADDRESS
                ),
                "glm_token_address": DEVNET_GLM_TOKEN if payments else ZERO_ADDRESS,
                "ip_address": self.spec.ip_address,
                "country": self.spec.country,
                "platform": PLATFORM,
            }
        )

    async def _summary(self, request: web.Request) -> web.Response:
        total = {"cpu": self.spec.cpu, "memory": self.spec.memory, "storage": self.spec.storage}
        vms = [
            {
                "id": info["id"],
                "status": info["status"],
                "ssh_port": info["ssh_port"],
                "resources": info["resources"],
            }
            for info in (
                [self.vm_info(vm) for vm in self.vms.values()]
                + [self._pending_info(job) for job in self.pending.values()]
            )
        ]
        return json_response(
            {
                "status": "running",
                "resources": {"total": total, "available": self.free()},
                "pricing": self.pricing.model_dump(),
                "vms": vms,
                "env": {},
            }
        )

    def _stream_state(self, vm: DevnetVM, stream_id: str) -> dict[str, Any]:
        now = int(time.time())
        started = int(datetime.fromisoformat(vm.created_at).replace(tzinfo=UTC).timestamp())
        pricing = self.pricing
        monthly = (
            pricing.glm_per_core_month * vm.resources["cpu"]
            + pricing.glm_per_gb_ram_month * vm.resources["memory"]
            + pricing.glm_per_gb_storage_month * vm.resources["storage"]
        )
        rate = int(monthly * 10**18 / _MONTH_S)
        deposit = rate * _MONTH_S
        stop = started + _MONTH_S
        streamed = rate * max(0, min(now, stop) - started)
        return {
            "vm_id": vm.name,
            "stream_id": stream_id,
            "chain": {
                "token": DEVNET_GLM_TOKEN,
                "sender": ZERO_ADDRESS[:-1] + "1",
                "recipient": payment_address(self.provider_id),
                "startTime": started,
                "stopTime": stop,
                "ratePerSecond": rate,
                "deposit": deposit,
                "withdrawn": 0,
                "halted": False,
            },
            "computed": {
                "now": now,
                "remaining_seconds": max(0, stop - now),
                "withdrawable": streamed,
            },
            "verified": True,
            "reason": "ok",
        }

    async def _stream(self, request: web.Request) -> web.Response:
        if not self.options.payments:
            return detail(PAYMENTS_OFF, 400)
        name = request.match_info["name"]
        vm = self.vms.get(name)
        if vm is None:
            return self._not_found(name)
        stream_id = self.streams.get(vm.multipass_name)
        if stream_id is None:
            return detail("stream not found", 404)
        return json_response(self._stream_state(vm, stream_id))

    async def _streams(self, request: web.Request) -> web.Response:
        if not self.options.payments:
            return detail(PAYMENTS_OFF, 400)
        return json_response(
            [
                self._stream_state(vm, self.streams[vm.multipass_name])
                for vm in self.vms.values()
                if vm.multipass_name in self.streams
            ]
        )

    async def _admin_shutdown(self, request: web.Request) -> web.Response:
        # Unauthenticated on deployed providers; here at least only loopback callers.
        if not (
            is_loopback_peer(request.remote)
            and is_loopback_host_header(request.headers.get("Host"))
        ):
            return detail("Forbidden", 403)
        # As a stopped provider: offline until the devnet is told otherwise. The
        # port is closed before the answer goes out, on this connection only.
        self.set_faults(self.faults.model_copy(update={"offline": True}))
        if request.transport is not None:
            self.transports.discard(request.transport)
        await self.go_offline()
        response = json_response({"status": "shutting down"})
        response.force_close()
        return response


# --- wiring into the devnet ------------------------------------------------------------


async def _absent_route(request: web.Request) -> web.Response:
    # What a legacy provider answers for the routes only the current generation has.
    return detail(NOT_FOUND, 404)


def add_current_routes(app: web.Application) -> None:
    """Register the routes only the current generation has (legacy providers: 404).

    Call before the app's runner is set up. (``/vms/jobs/access`` still reaches
    the access route of a VM named ``jobs``, registered first; job ids are UUIDs.)
    """
    app.router.add_get("/api/v1/vms/jobs/{job_id}", _absent_route, name="job", allow_head=False)
    app.router.add_get(
        "/api/v1/provider/info", _absent_route, name="provider_info", allow_head=False
    )
    app.router.add_get("/api/v1/summary", _absent_route, name="summary", allow_head=False)
    app.router.add_get("/api/v1/vms/{name}/stream", _absent_route, name="stream", allow_head=False)
    app.router.add_get("/api/v1/payments/streams", _absent_route, name="streams", allow_head=False)
    app.router.add_post("/api/v1/admin/shutdown", _absent_route, name="admin_shutdown")


def plan_generations(
    specs: Sequence[ProviderSpec],
    current: int,
    options: CurrentOptions | None = None,
    provider_options: Mapping[str, CurrentOptions] | None = None,
) -> dict[str, CurrentOptions]:
    """Which providers are current (the last ``current`` of them) and with what options.

    ``ValueError`` for a count out of range or options for a provider that is legacy
    or unknown.
    """
    if not 0 <= current <= len(specs):
        raise ValueError(f"current must be between 0 and the provider count ({len(specs)})")
    chosen = [spec.provider_id for spec in specs[len(specs) - current :]]
    stray = set(provider_options or {}) - set(chosen)
    if stray:
        raise ValueError(
            f"current-generation options for providers that are not current: "
            f"{', '.join(sorted(stray))} (the current ones are the last {current})"
        )
    default = options or CurrentOptions()
    return {pid: (provider_options or {}).get(pid, default) for pid in chosen}


def make_node(
    spec: ProviderSpec,
    index: int,
    vms_dir: Path,
    faults: Faults,
    on_change: Callable[[ProviderNode], Awaitable[None]],
    options: CurrentOptions | None,
    request_logged: asyncio.Condition | None = None,
) -> ProviderNode:
    """A legacy provider, or a current one when it has options (see ``plan_generations``)."""
    if options is None:
        return ProviderNode(spec, vms_dir, faults, on_change, request_logged)
    return CurrentProviderNode(
        spec,
        vms_dir,
        faults,
        on_change,
        index=index,
        options=options,
        request_logged=request_logged,
    )


class _Nodes(Protocol):
    def node(self, provider_id: str) -> ProviderNode: ...


class Release(BaseModel):
    """Body of the admin release route: which waits to end now."""

    model_config = ConfigDict(extra="forbid")

    jobs: bool = True
    ssh_proxy: bool = True


def add_current_admin_routes(app: web.Application, devnet: _Nodes) -> None:
    """Devnet-only admin routes (on discovery, loopback only, like golem_devnet.admin)::

    PUT  /devnet/providers/{provider_id}/current   body: CurrentOptions (replaces)
    POST /devnet/providers/{provider_id}/release   body: {"jobs": bool, "ssh_proxy": bool}
    """

    def lookup(request: web.Request) -> CurrentProviderNode | web.Response:
        provider_id = request.match_info["provider_id"]
        try:
            return current_node(devnet.node(provider_id))
        except KeyError:
            return detail("Provider not found", 404)
        except ValueError as error:
            return detail(str(error), 409)

    async def put_options(request: web.Request) -> web.Response:
        node = lookup(request)
        if isinstance(node, web.Response):
            return node
        options = await parse_body(request, CurrentOptions)
        if isinstance(options, web.Response):
            return options
        node.set_options(options)
        return json_response(
            {"provider_id": node.provider_id, "current": options.model_dump(mode="json")}
        )

    async def release(request: web.Request) -> web.Response:
        node = lookup(request)
        if isinstance(node, web.Response):
            return node
        body = await parse_body(request, Release)
        if isinstance(body, web.Response):
            return body
        jobs = await node.release_jobs() if body.jobs else []
        names = node.release_ssh_proxy() if body.ssh_proxy else []
        return json_response({"provider_id": node.provider_id, "jobs": jobs, "ssh_proxy": names})

    app.router.add_put(
        "/devnet/providers/{provider_id}/current", _loopback_only(put_options, changes_state=True)
    )
    app.router.add_post(
        "/devnet/providers/{provider_id}/release", _loopback_only(release, changes_state=True)
    )


def current_node(node: ProviderNode) -> CurrentProviderNode:
    """``node`` as a current provider; ``ValueError`` if it is legacy."""
    if not isinstance(node, CurrentProviderNode):
        raise ValueError(f"{node.provider_id} is a legacy provider")
    return node


__all__ = [
    "GENERATIONS",
    "CurrentOptions",
    "CurrentProviderNode",
    "Generation",
    "Pricing",
    "add_current_admin_routes",
    "add_current_routes",
    "current_node",
    "make_node",
    "plan_generations",
]
