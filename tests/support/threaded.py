"""Run a ``Devnet`` in a background thread with its own event loop.

For synchronous callers: tests that drive the CLI (which calls ``asyncio.run``
itself) or spawn subprocesses, and bench scripts (run from the repository root,
``python -m bench.run``). Every method is thread-safe::

    with DevnetThread(tmp_path / "devnet", providers=3) as net:
        run_cli(env=net.env)
        net.set_faults(net.providers[0].provider_id, offline=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from golem_devnet.current import CurrentOptions, current_node
from golem_devnet.discovery import Clock
from golem_devnet.faults import Faults, RouteName, route_name
from golem_devnet.network import AddressInUseError, Devnet
from golem_devnet.provider import RequestRecord

T = TypeVar("T")
_START_ATTEMPTS = 8
# A provider by its index in ``providers`` or by its id.
ProviderRef = int | str


# The /24 blocks random_base_address draws from: 127.1.0.0/24 to 127.254.255.0/24.
_BLOCKS = 254 * 256
# Blocks kept free after each draw: a devnet of many providers spills past its first
# /24 (1000 providers fill four), and must not spill into another worker's share.
_SPILL_BLOCKS = 8


def random_base_address() -> str:
    """A first-provider address in a random 127.x.y.0/24, so parallel runs do not collide.

    127.0.0.x is left to the ``golem devnet up`` a developer may have running. Under
    pytest-xdist each worker draws from its own share of the blocks (by its
    ``PYTEST_XDIST_WORKER`` number), so two workers of one run never pick the same
    addresses: a test that stops a provider and sees its port refuse cannot meet
    another worker's provider there. Other runs on the machine may still pick a
    taken block; ``DevnetThread`` then draws again.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...
    share = _BLOCKS // workers
    block = int(worker.removeprefix("gw")) * share + random.randrange(share - _SPILL_BLOCKS)
    second, third = divmod(block, 256)
    return f"127.{second + 1}.{third}.11"


@dataclass(frozen=True)
class ProviderHandle:
    provider_id: str
    ip_address: str
    api_url: str  # http://{ip_address}:7466/api/v1
    country: str
    cpu: int
    memory: int
    storage: int
    generation: str = "legacy"  # or "current" (golem_devnet.current)


class DevnetThread:
    """A started-on-demand devnet; ``start()`` returns once every provider advertises."""

    def __init__(
        self,
        state_dir: Path,
        providers: int = 3,
        *,
        base_address: str | None = None,
        discovery_host: str | None = None,
        discovery_port: int = 0,
        faults: Faults | None = None,
        provider_faults: Mapping[str, Faults] | None = None,
        ad_ttl_s: float | None = None,
        readvertise_s: float | None = None,
        capacity_scale: int = 1,
        clock: Clock | None = None,
        current: int = 0,
        current_options: CurrentOptions | None = None,
        provider_current_options: Mapping[str, CurrentOptions] | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._providers = providers
        self._base_address = base_address
        self._options: dict[str, Any] = {
            "discovery_host": discovery_host,
            "discovery_port": discovery_port,
            "faults": faults,
            "provider_faults": provider_faults,
            "capacity_scale": capacity_scale,
            "clock": clock,
            # The last ``current`` providers speak the current generation.
            "current": current,
            "current_options": current_options,
            "provider_current_options": provider_current_options,
        }
        if ad_ttl_s is not None:
            self._options["ad_ttl_s"] = ad_ttl_s
        if readvertise_s is not None:
            self._options["readvertise_s"] = readvertise_s
        self._startup_timeout_s = startup_timeout_s
        self._devnet: Devnet | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started: Future[None] = Future()

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> DevnetThread:
        self._thread = threading.Thread(target=self._run, name="devnet", daemon=True)
        self._thread.start()
        try:
            self._started.result(timeout=self._startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything and wait; ports are free when this returns. Safe to repeat."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and not loop.is_closed():
            # RuntimeError: the loop has just finished by itself.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def __enter__(self) -> DevnetThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # handed to start()'s caller
            if not self._started.done():
                self._started.set_exception(error)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        devnet = await self._start_devnet()
        self._devnet = devnet
        self._started.set_result(None)
        try:
            await self._stopping.wait()
        finally:
            await devnet.stop()

    async def _start_devnet(self) -> Devnet:
        attempts = 1 if self._base_address else _START_ATTEMPTS
        for attempt in range(attempts):
            base = self._base_address or random_base_address()
            devnet = Devnet(self.state_dir, self._providers, base_address=base, **self._options)
            try:
                await devnet.start()
            except AddressInUseError:
                if attempt == attempts - 1:
                    raise
                continue
            return devnet
        raise AssertionError("unreachable")

    # --- what tests use -------------------------------------------------------------

    @property
    def devnet(self) -> Devnet:
        """The running ``Devnet``; touch it only through ``run``."""
        if self._devnet is None:
            raise RuntimeError("the devnet is not started")
        return self._devnet

    @property
    def discovery_url(self) -> str:
        return self.devnet.discovery_url

    @property
    def admin_url(self) -> str:
        return f"{self.devnet.discovery_url}/devnet"

    @property
    def env(self) -> dict[str, str]:
        """``GOLEM_REQUESTOR_DISCOVERY_URL`` and ``GOLEM_REQUESTOR_BASE_DIR`` for a client."""
        return self.devnet.env()

    @property
    def providers(self) -> list[ProviderHandle]:
        return [
            ProviderHandle(
                spec.provider_id,
                spec.ip_address,
                spec.api_url,
                spec.country,
                spec.cpu,
                spec.memory,
                spec.storage,
                self.devnet.node(spec.provider_id).generation,
            )
            for spec in self.devnet.specs
        ]

    def provider(self, provider_id: str) -> ProviderHandle:
        for handle in self.providers:
            if handle.provider_id == provider_id:
                return handle
        raise KeyError(provider_id)

    def run(self, function: Callable[[Devnet], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run ``await function(devnet)`` on the devnet's loop and return its result."""
        if self._loop is None:
            raise RuntimeError("the devnet is not started")

        async def call() -> T:
            return await function(self.devnet)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)

    def set_faults(self, provider: ProviderRef, **faults: Any) -> Faults:
        """Replace one provider's faults, e.g. ``set_faults(pid, offline=True)`` or
        ``set_faults(0, hold=["POST /vms"])``."""
        provider_id = self._provider_id(provider)
        value = Faults(**faults)

        async def apply(devnet: Devnet) -> None:
            await devnet.set_faults(provider_id, value)

        self.run(apply)
        return value

    def set_all_faults(self, **faults: Any) -> Faults:
        value = Faults(**faults)

        async def apply(devnet: Devnet) -> None:
            await devnet.set_all_faults(value)

        self.run(apply)
        return value

    def faults(self, provider: ProviderRef) -> Faults:
        """A provider's current faults."""
        provider_id = self._provider_id(provider)

        async def read(devnet: Devnet) -> Faults:
            return devnet.node(provider_id).faults

        return self.run(read)

    def hold(self, provider: ProviderRef, *routes: str) -> Faults:
        """Park requests on ``routes`` (``"POST /vms"`` or ``"create"``) at one provider,
        keeping its other faults; ``release`` lets them go."""
        provider_id = self._provider_id(provider)
        current = self.faults(provider_id)
        held = current.hold | {route_name(route) for route in routes}
        return self.set_faults(provider_id, **{**current.model_dump(), "hold": held})

    def release(self, provider: ProviderRef, *routes: str) -> Faults:
        """Stop holding ``routes`` (none named: every route); parked requests go on."""
        provider_id = self._provider_id(provider)
        current = self.faults(provider_id)
        names = {route_name(route) for route in routes}
        held = current.hold - names if names else frozenset()
        return self.set_faults(provider_id, **{**current.model_dump(), "hold": held})

    def requests(
        self,
        provider: ProviderRef,
        *,
        route: str | None = None,
        vm: str | None = None,
        after: int = 0,
    ) -> list[RequestRecord]:
        """The requests a provider (index or id) has received, oldest first (copies:
        a record's ``status`` is filled in on the devnet's thread when answered)."""
        provider_id = self._provider_id(provider)
        name = route_name(route) if route is not None else None

        async def read(devnet: Devnet) -> list[RequestRecord]:
            return [
                dataclasses.replace(r)
                for r in devnet.requests(provider_id, after)
                if r.matches(name, vm, after)
            ]

        return self.run(read)

    def wait_for_request(
        self,
        provider: ProviderRef = 0,
        *,
        route: str | None = None,
        vm: str | None = None,
        after: int = 0,
        answered: bool = False,
        timeout: float = 30.0,
    ) -> RequestRecord:
        """Block until the provider has received a request on ``route`` for ``vm``
        (already logged ones count; ``after`` a ``seq`` skips older ones), and with
        ``answered`` until it has handled it too (a create: the VM is registered).

        Waits on the devnet's condition, not by polling; ``TimeoutError`` after
        ``timeout`` seconds.
        """
        provider_id = self._provider_id(provider)
        name: RouteName | None = route_name(route) if route is not None else None

        async def wait(devnet: Devnet) -> RequestRecord:
            async with asyncio.timeout(timeout):
                record = await devnet.wait_for_request(provider_id, name, vm, after, answered)
                return dataclasses.replace(record)

        return self.run(wait, timeout=timeout + 5)

    def wait_until(self, predicate: Callable[[Devnet], bool], timeout: float = 30.0) -> None:
        """Block until ``predicate(devnet)`` holds; it runs on the devnet's thread, each
        time any provider logs or answers a request (see ``Devnet.requests``)."""

        async def wait(devnet: Devnet) -> None:
            async with asyncio.timeout(timeout):
                await devnet.wait_for_requests(predicate)

        self.run(wait, timeout=timeout + 5)

    def wait_for_readvertise(self, rounds: int = 1, timeout: float = 30.0) -> None:
        """Block until ``rounds`` more periodic re-advertising rounds have finished."""

        async def wait(devnet: Devnet) -> None:
            async with asyncio.timeout(timeout):
                await devnet.wait_for_readvertise(rounds)

        self.run(wait, timeout=timeout + 5)

    def _provider_id(self, provider: ProviderRef) -> str:
        if isinstance(provider, int):
            return self.devnet.specs[provider].provider_id
        return provider

    def clear_faults(self, provider_id: str | None = None) -> None:
        """Make one provider (or, without an id, every provider) healthy again."""
        if provider_id is None:
            self.set_all_faults()
        else:
            self.set_faults(provider_id)

    def rotate_host_key(self, provider_id: str, vm_name: str) -> str:
        """Give a VM a new host key (see ``Devnet.rotate_host_key``); the new public key line."""

        async def rotate(devnet: Devnet) -> str:
            return await devnet.rotate_host_key(provider_id, vm_name)

        return self.run(rotate)

    def summaries(self) -> list[dict[str, Any]]:
        """What ``GET /devnet/providers`` answers: addresses, faults, VMs."""

        async def collect(devnet: Devnet) -> list[dict[str, Any]]:
            return devnet.provider_summaries()

        return self.run(collect)

    # --- the current provider generation (golem_devnet.current) ----------------------

    def set_current_options(self, provider_id: str, **options: Any) -> CurrentOptions:
        """Replace a current provider's options, e.g. ``set_current_options(pid, payments=True)``.

        They apply to creates from now on; ``ValueError`` for a legacy provider.
        """
        value = CurrentOptions(**options)

        async def apply(devnet: Devnet) -> None:
            current_node(devnet.node(provider_id)).set_options(value)

        self.run(apply)
        return value

    def release_jobs(self, provider_id: str, timeout: float = 30.0) -> list[str]:
        """End every async job's wait (``hold_jobs``/``job_delay_s``) on that provider now;
        returns once each is ready or failed, with their job ids."""

        async def release(devnet: Devnet) -> list[str]:
            return await current_node(devnet.node(provider_id)).release_jobs()

        return self.run(release, timeout)

    def release_ssh_proxy(self, provider_id: str) -> list[str]:
        """Publish the SSH port of every VM waiting for it (``hold_ssh_proxy``/
        ``ssh_proxy_delay_s``) on that provider now; answers their names."""

        async def release(devnet: Devnet) -> list[str]:
            return current_node(devnet.node(provider_id)).release_ssh_proxy()

        return self.run(release)

    def wait_job(self, provider_id: str, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until an async create job is ready or failed; answers the job as the
        provider's ``GET /vms/jobs/{job_id}`` would."""

        async def wait(devnet: Devnet) -> dict[str, Any]:
            return await current_node(devnet.node(provider_id)).wait_job(job_id)

        return self.run(wait, timeout)
