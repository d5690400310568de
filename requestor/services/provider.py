"""Client for one provider node's API (``http://{ip_address}:7466/api/v1``).

Deployed providers have quirks (see the wire contract); this is the one place
that knows them, so the rest of the code sees plain outcomes and errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from requestor.errors import (
    PROVIDER_GONE_MESSAGE,
    InsufficientResourcesError,
    PaymentRequiredError,
    ProviderProtocolError,
    ProviderRefusedError,
    ProviderUnavailableError,
    UnsupportedOperationError,
    VMGoneError,
)
from requestor.services.http import PROBE, QUICK, SLOW, HttpClient, Response, TransportError
from requestor.text import clean, first_error_text
from requestor.wire.models import CreateJob, CreateVMRequest, ProviderInfo, VMAccess, VMInfo

ModelT = TypeVar("ModelT", bound=BaseModel)

# What deployed providers say when they lack the resources (see the contract).
_NO_RESOURCES_DETAILS = ("insufficient resources", "an unexpected error occurred")
# What a current provider with payments on says to a create without a stream.
_STREAM_REQUIRED = "stream_id required"


class ProviderClient:
    def __init__(self, http: HttpClient, api_url: str, label: str) -> None:
        self._http = http
        self._api = api_url.rstrip("/")
        self.label = clean(label, 80)

    # --- plumbing --------------------------------------------------------------

    async def _call(
        self, method: str, path: str, *, body: Any = None, timeouts: Any = QUICK, retries: int = 0
    ) -> Response:
        try:
            return await self._http.request(
                method, self._api + path, json_body=body, timeouts=timeouts, retries=retries
            )
        except TransportError as error:
            if error.protocol:
                raise ProviderProtocolError(
                    f"Provider {self.label} sent an unusable answer: {error.reason}"
                ) from None
            raise ProviderUnreachable(self.label, error) from None

    def _parse(self, model: type[ModelT], response: Response, what: str) -> ModelT:
        try:
            return model.model_validate(response.data)
        except ValidationError as error:
            raise ProviderProtocolError(
                f"Provider {self.label} sent a {what} that does not fit the contract "
                f"({first_error_text(error, limit=100)})"
            ) from None

    def _refused(self, response: Response, action: str) -> ProviderRefusedError:
        detail = clean(response.detail(), 300) or "no detail"
        refusal = ProviderRefusedError(
            f"Provider {self.label} refused to {action} (HTTP {response.status}: {detail})"
        )
        refusal.status = response.status
        return refusal

    @staticmethod
    def _vm_path(name: str) -> str:
        return "/vms/" + quote(name, safe="")

    # --- the contract ----------------------------------------------------------

    async def probe(self) -> float:
        """Seconds the API took to answer anything; raises ProviderUnreachable."""
        return (await self.survey()).seconds

    async def survey(self) -> Survey:
        """One cheap call that tells whether the API answers (any HTTP answer) and,
        from ``/provider/info``, which generation it is; raises ProviderUnreachable."""
        started = time.perf_counter()
        response = await self._call("GET", "/provider/info", timeouts=PROBE)
        seconds = time.perf_counter() - started
        if response.status in (404, 405):
            return Survey(seconds, detected=True, info=None)
        if not response.ok:
            return Survey(seconds, detected=False, info=None)
        try:
            info = self._parse(ProviderInfo, response, "provider description")
        except ProviderProtocolError:
            return Survey(seconds, detected=False, info=None)
        return Survey(seconds, detected=True, info=info)

    async def create_vm(
        self, request: CreateVMRequest, *, background: bool = False
    ) -> VMInfo | CreateJob:
        """The VM made (synchronous create), or with ``background`` (the current
        generation's ``?async=true``) the job making it; a provider that ignores
        the query answers with the VM, which is fine too."""
        # Never retried: a repeat could create a second VM. Reconcile by name instead.
        response = await self._call(
            "POST",
            "/vms?async=true" if background else "/vms",
            body=request.body(),
            timeouts=SLOW,
        )
        if response.status == 202:
            return self._parse(CreateJob, response, "create job")
        if response.ok:
            return self._parse(VMInfo, response, "VM description")
        detail = response.detail()
        if response.status == 400 and _STREAM_REQUIRED in detail.lower():
            raise PaymentRequiredError(
                f"Provider {self.label} requires a payment stream to create a VM "
                f"(it answered: {clean(detail, 200)})"
            )
        if response.status >= 500 and detail.strip().lower().startswith(_NO_RESOURCES_DETAILS):
            raise InsufficientResourcesError(
                f"Provider {self.label} does not have the resources for this VM "
                f"(it answered: {clean(detail, 200)})"
            )
        raise self._refused(response, "create the VM")

    async def list_vms(self) -> list[VMInfo]:
        """``GET /vms``. Legacy providers may answer ``[]`` while they hold VMs (see
        the contract): an empty list proves nothing."""
        response = await self._call("GET", "/vms", retries=1)
        if not response.ok:
            raise self._refused(response, "list its VMs")
        if not isinstance(response.data, list):
            raise ProviderProtocolError(
                f"Provider {self.label} sent a VM list that does not fit the contract (not a list)"
            )
        return [
            self._parse(VMInfo, Response(response.status, item), "VM description")
            for item in response.data
        ]

    async def job(self, job_id: str) -> CreateJob:
        """An async create's job, as the provider sees it now."""
        response = await self._call("GET", "/vms/jobs/" + quote(job_id, safe=""), retries=1)
        if response.ok:
            return self._parse(CreateJob, response, "create job")
        raise self._refused(response, "report on its create job")

    async def get_vm(self, name: str) -> VMInfo | None:
        """The provider's truth about one VM; None when it does not know it."""
        response = await self._call("GET", self._vm_path(name), retries=1)
        if response.status == 404:
            return None
        if not response.ok:
            raise self._refused(response, "describe the VM")
        return self._parse(VMInfo, response, "VM description")

    async def access(self, name: str) -> VMAccess | None:
        """How to reach the VM's SSH; None while the provider has not published its
        SSH port yet (the current generation answers 202 then)."""
        response = await self._call("GET", self._vm_path(name) + "/access", retries=1)
        if response.status == 202:
            return None
        if response.ok:
            return self._parse(VMAccess, response, "VM access description")
        # Some providers answer 500 rather than 404 for an unknown name.
        if response.status in (404, 500) and await self.get_vm(name) is None:
            raise VMGoneError(f"Provider {self.label} no longer knows this VM")
        raise self._refused(response, "give the VM's SSH access")

    async def stop(self, name: str) -> VMInfo | None:
        return await self._lifecycle(name, "stop")

    async def start(self, name: str) -> VMInfo | None:
        return await self._lifecycle(name, "start")

    async def _lifecycle(self, name: str, action: str) -> VMInfo | None:
        response = await self._call("POST", f"{self._vm_path(name)}/{action}", retries=1)
        if response.ok:
            if response.data is None:
                return None
            return self._parse(VMInfo, response, "VM description")
        if response.status in (404, 405):
            # "Not Found" may mean the route is missing, not the VM: ask the VM itself.
            if await self.get_vm(name) is None:
                raise VMGoneError(f"Provider {self.label} no longer knows this VM")
            raise UnsupportedOperationError(
                f"Provider {self.label} cannot {action} a VM (it has no '{action}' route)",
                hint=(
                    "This provider cannot start a stopped VM. Destroy it and create a new "
                    "one, or choose a provider that supports start."
                    if action == "start"
                    else f"Destroy the VM instead, or ask the provider to support '{action}'."
                ),
            )
        raise self._refused(response, f"{action} the VM")

    async def delete(self, name: str) -> None:
        """Delete; a VM the provider does not know is already what we want."""
        response = await self._call("DELETE", self._vm_path(name), retries=1)
        if response.ok or response.status == 404:
            return
        raise self._refused(response, "destroy the VM")


@dataclass(frozen=True)
class Survey:
    """What one ``/provider/info`` call told: the API answers, and maybe what it is."""

    seconds: float
    # False when the answer said nothing usable (an error status, a malformed body).
    detected: bool
    # None with ``detected``: no such route, the legacy generation.
    info: ProviderInfo | None


class ProviderUnreachable(ProviderUnavailableError):
    """The provider's API gave no usable answer (offline, hanging, garbage)."""

    code = ProviderUnavailableError.code  # the same failure, to a script

    def __init__(self, label: str, error: TransportError, hint: str | None = None) -> None:
        super().__init__(f"{PROVIDER_GONE_MESSAGE}: {label}: {error.reason}", hint)
        self.label = label
        self.transport = error
