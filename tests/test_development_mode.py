"""Development mode (the spec's .env.dev): providers and SSH are reached at localhost."""

from __future__ import annotations

from requestor.settings import load_settings


def test_force_localhost_in_development_rewrites_provider_and_ssh_addresses() -> None:
    settings = load_settings(
        {
            "GOLEM_REQUESTOR_ENVIRONMENT": "development",
            "GOLEM_REQUESTOR_FORCE_LOCALHOST": "true",
            "GOLEM_REQUESTOR_BASE_DIR": "/tmp/golem-test-base",
        }
    )
    assert settings.provider_api_url("127.0.0.11") == "http://localhost:7466/api/v1"
    assert settings.ssh_host("127.0.0.11") == "localhost"


def test_force_localhost_is_ignored_in_production() -> None:
    settings = load_settings(
        {
            "GOLEM_REQUESTOR_FORCE_LOCALHOST": "true",
            "GOLEM_REQUESTOR_BASE_DIR": "/tmp/golem-test-base",
        }
    )
    assert settings.provider_api_url("127.0.0.11") == "http://127.0.0.11:7466/api/v1"
    assert settings.ssh_host("127.0.0.11") == "127.0.0.11"


def test_development_without_force_uses_advertised_addresses() -> None:
    settings = load_settings(
        {
            "GOLEM_REQUESTOR_ENVIRONMENT": "development",
            "GOLEM_REQUESTOR_BASE_DIR": "/tmp/golem-test-base",
        }
    )
    assert settings.provider_api_url("127.0.0.12") == "http://127.0.0.12:7466/api/v1"
