"""The read-only commands load only what they use (``python -X importtime``):
``vm list`` reads local state through sqlite3 when the schema is at head, and
``vm providers`` needs no local state at all."""

from __future__ import annotations

import dataclasses

from tests.conftest import GolemEnv
from tests.support.threaded import DevnetThread
from tests.test_startup import imported_packages

ORM = {"sqlalchemy", "alembic", "aiosqlite", "greenlet"}


def test_vm_list_at_head_imports_no_orm_and_no_http(golem_env: GolemEnv) -> None:
    first, _ = imported_packages(golem_env, "vm", "list")  # creates the database
    assert "sqlalchemy" in first  # the check sees the ORM when it is used
    packages, out = imported_packages(golem_env, "vm", "list")
    assert "Your VMs (0 total)" in out
    assert packages & (ORM | {"aiohttp", "asyncssh", "pydantic"}) == set()


def test_vm_providers_needs_no_local_state(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    env = dataclasses.replace(
        golem_env, env={**golem_env.env, "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    )
    packages, out = imported_packages(env, "vm", "providers", "--json")
    assert devnet.providers[0].provider_id in out
    assert "aiohttp" in packages
    assert packages & ORM == set()
    assert not golem_env.db_path.exists()
