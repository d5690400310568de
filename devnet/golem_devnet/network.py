"""``Devnet``: a discovery service and N provider nodes in one asyncio loop, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import shlex
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import aiohttp
from aiohttp import web

from golem_devnet.admin import add_admin_routes
from golem_devnet.current import (
    CurrentOptions,
    add_current_admin_routes,
    add_current_routes,
    make_node,
    plan_generations,
)
from golem_devnet.discovery import (
    DEFAULT_AD_TTL_S,
    AdvertisementStore,
    Clock,
    DiscoveryService,
)
from golem_devnet.faults import Faults, RouteName
from golem_devnet.provider import (
    API_PORT,
    ProviderNode,
    ProviderSpec,
    RequestRecord,
    make_provider_app,
)

DEFAULT_BASE_ADDRESS = "127.0.0.11"
DEFAULT_DISCOVERY_HOST = "127.0.0.10"  # discovery_address_for(DEFAULT_BASE_ADDRESS)
DEFAULT_DISCOVERY_PORT = 9001
# What "localhost" resolves to: with GOLEM_REQUESTOR_FORCE_LOCALHOST the requestor
# reaches every provider at localhost:7466, so a --localhost devnet has one provider here.
LOCALHOST_ADDRESS = "127.0.0.1"
DEFAULT_READVERTISE_S = 60.0
MAX_PROVIDERS = 1000
# Hung requests are cut this long after shutdown starts.
_SHUTDOWN_TIMEOUT_S = 0.5


class DevnetError(Exception):
    """The devnet cannot start as asked."""


class UnknownProviderError(ValueError):
    """Faults were given for a provider id the devnet does not have."""


class AddressInUseError(DevnetError):
    def __init__(self, address: str) -> None:
        super().__init__(f"Devnet address {address} is in use")
        self.address = address


class StateDirInUseError(DevnetError):
    def __init__(self, state_dir: Path) -> None:
        super().__init__(f"Another devnet is using the state dir {state_dir}")
        self.state_dir = state_dir


class AddressUnavailableError(DevnetError):
    def __init__(self, address: str) -> None:
        super().__init__(f"Devnet address {address} cannot be bound on this machine")
        self.address = address


def _require_loopback(address: str) -> None:
    try:
        loopback = ipaddress.IPv4Address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"{address} is not an IPv4 loopback address: the devnet stays on 127.0.0.0/8"
        )


def provider_addresses(base_address: str, count: int) -> list[str]:
    """``count`` loopback addresses from ``base_address`` up, skipping .0 and .255 of each /24."""
    address = ipaddress.IPv4Address(base_address)
    found: list[str] = []
    while len(found) < count:
        last = int(address) & 0xFF
        if last not in (0, 255):
            _require_loopback(str(address))
            found.append(str(address))
        address += 1
    return found


def discovery_address_for(base_address: str) -> str:
    """The address just below the first provider's: 127.0.0.10 for 127.0.0.11."""
    _require_loopback(base_address)
    address = ipaddress.IPv4Address(base_address) - 1
    if not address.is_loopback or int(address) & 0xFF == 0:
        raise ValueError(f"no discovery address below {base_address}: use a base like 127.0.0.11")
    return str(address)


def _bind_error(error: OSError, address: str) -> DevnetError | OSError:
    if error.errno == errno.EADDRINUSE:
        return AddressInUseError(address)
    if error.errno == errno.EADDRNOTAVAIL:
        return AddressUnavailableError(address)
    return error


class Devnet:
    """Start with ``async with Devnet(state_dir=...)`` or ``start()``/``stop()``.

    Everything binds to loopback: discovery on ``discovery_host:discovery_port``
    (port 0 picks a free one; the host defaults to the address just below
    ``base_address``), provider ``i`` on the i-th address from ``base_address`` at
    port 7466, VM SSH ports from 50800 on each provider's address.

    The ``golem devnet up --localhost`` layout, for ``.env.dev``
    (``GOLEM_REQUESTOR_FORCE_LOCALHOST``): ``providers=1``,
    ``base_address=LOCALHOST_ADDRESS``, ``discovery_host=DEFAULT_DISCOVERY_HOST``.
    """

    def __init__(
        self,
        state_dir: Path,
        providers: int = 3,
        *,
        base_address: str = DEFAULT_BASE_ADDRESS,
        discovery_host: str | None = None,
        discovery_port: int = DEFAULT_DISCOVERY_PORT,
        ad_ttl_s: float = DEFAULT_AD_TTL_S,
        readvertise_s: float = DEFAULT_READVERTISE_S,
        faults: Faults | None = None,
        provider_faults: Mapping[str, Faults] | None = None,
        capacity_scale: int = 1,
        clock: Clock | None = None,
        current: int = 0,
        current_options: CurrentOptions | None = None,
        provider_current_options: Mapping[str, CurrentOptions] | None = None,
    ) -> None:
        if not 1 <= providers <= MAX_PROVIDERS:
            raise ValueError(f"providers must be between 1 and {MAX_PROVIDERS}")
        if capacity_scale < 1:
            raise ValueError("capacity_scale must be at least 1")
        self.state_dir = Path(state_dir)
        self.discovery_host = discovery_host or discovery_address_for(base_address)
        _require_loopback(self.discovery_host)
        self.discovery_port = discovery_port
        self.readvertise_s = readvertise_s
        self.specs = [
            ProviderSpec.for_index(index, address, capacity_scale)
            for index, address in enumerate(provider_addresses(base_address, providers))
        ]
        known = {spec.provider_id for spec in self.specs}
        unknown = set(provider_faults or {}) - known
        if unknown:
            raise UnknownProviderError(f"unknown provider ids: {', '.join(sorted(unknown))}")
        default = faults or Faults()
        self._initial_faults = {
            spec.provider_id: (provider_faults or {}).get(spec.provider_id, default)
            for spec in self.specs
        }
        # The last ``current`` providers speak the current generation (golem_devnet.current).
        self._current = plan_generations(
            self.specs, current, current_options, provider_current_options
        )
        # clock: discovery's time (advertisement expiry and stamps); tests move it.
        self.store = AdvertisementStore(ttl_s=ad_ttl_s, clock=clock)
        self.discovery_service = DiscoveryService(self.store)
        self.readvertise_rounds = 0
        self._readvertised = asyncio.Condition()
        self._request_logged = asyncio.Condition()
        self.nodes: list[ProviderNode] = []
        self._by_address: dict[str, ProviderNode] = {}
        self._by_id: dict[str, ProviderNode] = {}
        self._discovery_runner: web.AppRunner | None = None
        self._provider_runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._advertise_locks: dict[str, asyncio.Lock] = {}
        self._readvertiser: asyncio.Task[None] | None = None
        self._lock_file: IO[bytes] | None = None

    # --- what a client needs ------------------------------------------------------

    @property
    def discovery_url(self) -> str:
        return f"http://{self.discovery_host}:{self.discovery_port}"

    def env(self) -> dict[str, str]:
        """The environment a second shell needs to use this devnet."""
        return {
            "GOLEM_REQUESTOR_DISCOVERY_URL": self.discovery_url,
            "GOLEM_REQUESTOR_BASE_DIR": str(self.state_dir / "requestor"),
        }

    def env_lines(self) -> list[str]:
        return [f"export {name}={shlex.quote(value)}" for name, value in self.env().items()]

    def write_env_file(self) -> Path:
        path = self.state_dir / "env"
        path.write_text("\n".join(self.env_lines()) + "\n")
        return path

    def node(self, provider_id: str) -> ProviderNode:
        return self._by_id[provider_id]

    # --- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> Devnet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self._lock_state_dir()
        app = self.discovery_service.make_app()
        add_admin_routes(app, self)
        add_current_admin_routes(app, self)
        self._discovery_runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
        )
        await self._discovery_runner.setup()
        site = web.TCPSite(self._discovery_runner, self.discovery_host, self.discovery_port)
        try:
            await site.start()
        except OSError as error:
            raise _bind_error(error, f"{self.discovery_host}:{self.discovery_port}") from None
        self.discovery_port = self._discovery_runner.addresses[0][1]

        # The lock says no other devnet uses these folders: VMs of an earlier run are dead.
        shutil.rmtree(self.state_dir / "vms", ignore_errors=True)
        (self.state_dir / "vms").mkdir(parents=True, exist_ok=True)

        provider_app = make_provider_app(self._by_address.get)
        add_current_routes(provider_app)
        self._provider_runner = web.AppRunner(
            provider_app,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await self._provider_runner.setup()
        for index, spec in enumerate(self.specs):
            node = make_node(
                spec,
                index,
                self.state_dir / "vms",
                self._initial_faults[spec.provider_id],
                self._advertise,
                self._current.get(spec.provider_id),
                self._request_logged,
            )
            self.nodes.append(node)
            self._by_address[spec.ip_address] = node
            self._by_id[spec.provider_id] = node
            if not node.faults.offline:
                await self._listen(node)

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64),
            timeout=aiohttp.ClientTimeout(total=10, sock_connect=5),
        )
        await asyncio.gather(*(self._advertise(node) for node in self.nodes))
        self._readvertiser = asyncio.ensure_future(self._readvertise_forever())

    async def stop(self) -> None:
        """Close every listener and connection and kill every VM shell; safe to repeat."""
        if self._readvertiser is not None:
            self._readvertiser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readvertiser
            self._readvertiser = None
        await asyncio.gather(*(node.shutdown() for node in self.nodes), return_exceptions=True)
        for runner in (self._provider_runner, self._discovery_runner):
            if runner is not None:
                await runner.cleanup()
        self._provider_runner = self._discovery_runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        for node in self.nodes:
            node.site = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _lock_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        handle = open(self.state_dir / "devnet.lock", "ab")  # noqa: SIM115 (held until stop)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StateDirInUseError(self.state_dir) from None
        self._lock_file = handle

    async def _listen(self, node: ProviderNode) -> None:
        assert self._provider_runner is not None
        try:
            await node.listen(self._provider_runner)
        except OSError as error:
            raise _bind_error(error, f"{node.spec.ip_address}:{API_PORT}") from None

    # --- advertising ----------------------------------------------------------------

    async def _advertise(self, node: ProviderNode) -> None:
        """POST the node's free resources to discovery, as a provider does."""
        if self._session is None:
            return
        lock = self._advertise_locks.setdefault(node.provider_id, asyncio.Lock())
        # Serialised per provider so the last POST always carries the latest state.
        async with lock:
            headers = {"X-Provider-ID": node.provider_id, "X-Provider-Signature": "devnet"}
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with self._session.post(
                    f"{self.discovery_url}/api/v1/advertisements",
                    json=node.advertisement(),
                    headers=headers,
                ) as response:
                    await response.read()

    async def _readvertise_forever(self) -> None:
        while True:
            await asyncio.sleep(self.readvertise_s)
            await asyncio.gather(*(self._advertise(node) for node in self.nodes))
            self.readvertise_rounds += 1
            async with self._readvertised:
                self._readvertised.notify_all()

    async def wait_for_readvertise(self, rounds: int = 1) -> None:
        """Return once ``rounds`` more periodic re-advertising rounds have finished
        (every provider has posted), counted from now."""
        target = self.readvertise_rounds + rounds
        async with self._readvertised:
            await self._readvertised.wait_for(lambda: self.readvertise_rounds >= target)

    # --- the admin backend ------------------------------------------------------------

    def provider_summaries(self) -> list[dict[str, Any]]:
        return [node.summary() for node in self.nodes]

    def provider_summary(self, provider_id: str) -> dict[str, Any] | None:
        node = self._by_id.get(provider_id)
        return node.summary() if node else None

    async def set_faults(self, provider_id: str, faults: Faults) -> None:
        node = self._by_id[provider_id]
        was_offline = node.faults.offline
        node.set_faults(faults)
        if faults.offline and not was_offline:
            await node.go_offline()
        elif was_offline and not faults.offline:
            await self._listen(node)

    async def set_all_faults(self, faults: Faults) -> None:
        for node in self.nodes:
            await self.set_faults(node.provider_id, faults)

    def requests(self, provider_id: str, after: int = 0) -> list[RequestRecord]:
        """What the provider has received, oldest first (``seq`` above ``after``);
        ``KeyError`` for an unknown provider."""
        return [record for record in self._by_id[provider_id].requests if record.seq > after]

    async def wait_for_requests(self, predicate: Callable[[Devnet], bool]) -> None:
        """Return once ``predicate(self)`` holds, looking again whenever any provider
        logs or answers a request (e.g. "20 stop requests are held")."""
        async with self._request_logged:
            await self._request_logged.wait_for(lambda: predicate(self))

    async def wait_for_request(
        self,
        provider_id: str,
        route: RouteName | None = None,
        vm: str | None = None,
        after: int = 0,
        answered: bool = False,
    ) -> RequestRecord:
        """The first request on ``route`` for ``vm`` (None: any) that the provider has
        received (with ``answered``: and handled), or the next one to; put a timeout
        around it."""
        return await self._by_id[provider_id].wait_for_request(route, vm, after, answered)

    async def rotate_host_key(self, provider_id: str, vm_name: str) -> str:
        """Give a VM a new host key, as a provider that re-created it would.

        ``vm_name`` is the name the VM was created with on that provider. The running
        VM shows the new key to new connections, and keeps it across stop/start.
        Answers the new OpenSSH public key line; ``KeyError`` for an unknown
        provider or VM.
        """
        node = self._by_id.get(provider_id)
        if node is None:
            raise KeyError(f"unknown provider id {provider_id!r}")
        return node.rotate_host_key(vm_name)
