"""The create path carries a payment stream through to the provider (no flag sets
one yet): with ``stream_id`` a payment-required provider is not refused locally,
and the provider receives it."""

from __future__ import annotations

import pytest

from golem_devnet.current import CurrentOptions
from requestor.errors import PaymentRequiredError
from requestor.services.create import CreateRequest, create_vm
from requestor.services.runtime import open_services
from requestor.settings import load_settings
from tests.conftest import GolemEnv
from tests.helpers import db_rows
from tests.plugins.devnet import DevnetFactory


async def test_a_stream_id_reaches_a_payment_required_provider(
    golem_env: GolemEnv, devnet_factory: DevnetFactory
) -> None:
    net = devnet_factory(providers=1, current=1, current_options=CurrentOptions(payments=True))
    provider = net.providers[0].provider_id
    settings = load_settings({**golem_env.env, "GOLEM_REQUESTOR_DISCOVERY_URL": net.discovery_url})
    size = {"cpu": 1, "memory": 1, "storage": 10, "provider_id": provider, "ssh_wait": 60}

    async with open_services(settings) as services:
        with pytest.raises(PaymentRequiredError):
            await create_vm(services, CreateRequest(name="no-stream", **size))
        assert net.requests(provider, route="create") == []

        result = await create_vm(
            services, CreateRequest(name="streamed", stream_id="stream-7", **size)
        )
    assert result.vm.status.value == "running"
    assert set(db_rows(golem_env.db_path)) == {"streamed"}
    # The devnet refuses a create without stream_id when payments are on.
    assert [r.status for r in net.requests(provider, route="create")] == [202]
