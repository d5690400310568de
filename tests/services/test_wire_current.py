"""The current generation's answers as golem reads them: lenient where a provider
may differ (prices, job statuses), exact where a decision rests on them."""

from __future__ import annotations

import math

import pytest

from requestor.wire.models import Advertisement, CreateJob, JobStatus, ProviderInfo

AD = {
    "provider_id": "p1",
    "ip_address": "127.0.0.1",
    "resources": {"cpu": 4, "memory": 8, "storage": 40},
}
PRICING = {
    "usd_per_core_month": 2.0,
    "usd_per_gb_ram_month": 0.5,
    "usd_per_gb_storage_month": 0.05,
    "glm_per_core_month": 8.0,
    "glm_per_gb_ram_month": 2.0,
    "glm_per_gb_storage_month": 0.2,
}


def test_the_price_of_a_size() -> None:
    ad = Advertisement.model_validate({**AD, "pricing": PRICING})
    price = ad.monthly_price(2, 4, 20)
    assert price is not None
    assert price.usd == pytest.approx(2 * 2.0 + 4 * 0.5 + 20 * 0.05)
    assert price.glm == pytest.approx(2 * 8.0 + 4 * 2.0 + 20 * 0.2)


@pytest.mark.parametrize(
    "pricing",
    [None, "cheap", {"usd_per_core_month": -1}, {"usd_per_core_month": math.inf}, {}],
)
def test_no_usable_price_is_unknown_never_zero(pricing: object) -> None:
    ad = Advertisement.model_validate({**AD, "pricing": pricing})
    assert ad.monthly_price(1, 1, 10) is None  # and the advertisement itself is kept


def test_a_currency_with_a_missing_price_is_unknown() -> None:
    partial = {k: v for k, v in PRICING.items() if k != "glm_per_gb_ram_month"}
    price = Advertisement.model_validate({**AD, "pricing": partial}).monthly_price(1, 1, 10)
    assert price is not None and price.glm is None and price.usd == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("address", "required"),
    [
        (None, False),
        ("", False),
        ("0x" + "0" * 40, False),
        ("0x" + "0" * 39 + "1", True),
        ("0x5b3c", True),
    ],
)
def test_payment_is_required_by_a_non_zero_address(address: str | None, required: bool) -> None:
    info = ProviderInfo.model_validate({"provider_id": "p1", "stream_payment_address": address})
    assert info.requires_payment is required


def test_an_unknown_job_status_is_not_an_end() -> None:
    job = CreateJob.model_validate({"job_id": "j", "status": "queued"})
    assert job.status is JobStatus.CREATING
