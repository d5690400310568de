"""A database locked by another process after a provider already acted: golem
waits briefly, then says which remote actions happened and that `golem vm list
--refresh` records them (exit 1), never a bare "locked" after 30 s."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from requestor.services.create import CreateRequest, create_vm
from requestor.services.runtime import open_services
from requestor.settings import load_settings
from tests.conftest import GOLEM, GolemEnv, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread

# Old golem waited SQLite's 30 s busy timeout; a few seconds is the promise.
PROMPT = 15.0


@contextmanager
def write_lock(db_path: Path) -> Iterator[None]:
    """Hold SQLite's write lock, as another golem process in a long write would."""
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@pytest.fixture
def net(golem_env: GolemEnv, devnet: DevnetThread, monkeypatch: pytest.MonkeyPatch) -> DevnetThread:
    monkeypatch.setenv("GOLEM_REQUESTOR_DISCOVERY_URL", devnet.discovery_url)
    golem_env.env["GOLEM_REQUESTOR_DISCOVERY_URL"] = devnet.discovery_url
    provider_id = devnet.providers[0].provider_id

    async def create_all() -> None:
        async with open_services(load_settings(dict(os.environ))) as services:
            for name in ("web-1", "web-2"):
                request = CreateRequest(
                    name=name, cpu=1, memory=1, storage=10, provider_id=provider_id
                )
                await create_vm(services, request)

    asyncio.run(create_all())
    return devnet


def _truth(devnet: DevnetThread) -> dict[str, str]:
    return {vm["name"]: vm["status"] for s in devnet.summaries() for vm in s["vms"]}


@pytest.mark.parametrize(
    ("args", "said", "provider_status"),
    [
        (("stop", "web-*"), "web-1 stopped, web-2 stopped", "stopped"),
        (("destroy", "web-*", "--yes"), "web-1 destroyed, web-2 destroyed", None),
    ],
)
def test_a_remote_action_that_cannot_be_recorded_is_reported(
    golem_env: GolemEnv,
    net: DevnetThread,
    args: tuple[str, ...],
    said: str,
    provider_status: str | None,
) -> None:
    names = {n: r["provider_vm_name"] for n, r in db_rows(golem_env.db_path).items()}
    with write_lock(golem_env.db_path):
        started = time.monotonic()
        result = run_golem(golem_env, "vm", *args)
        elapsed = time.monotonic() - started
        # Checked while the lock is still held: nothing could have been written.
        assert {r["status"] for r in db_rows(golem_env.db_path).values()} == {"running"}
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < PROMPT, elapsed
    assert "stayed locked by another golem process" in result.stderr
    assert said in result.stderr
    assert "golem vm list --refresh" in result.stderr
    assert "Traceback" not in result.stderr
    truth = _truth(net)
    for provider_vm_name in names.values():
        assert truth.get(provider_vm_name) == provider_status

    # Once the lock is gone, a refresh records what the providers did.
    refreshed = run_golem(golem_env, "vm", "list", "--refresh")
    statuses = {n: r["status"] for n, r in db_rows(golem_env.db_path).items()}
    if provider_status is None:
        assert refreshed.returncode == 0
        assert set(statuses.values()) == {"gone"}
    else:
        assert set(statuses.values()) == {provider_status}


def test_refresh_results_that_cannot_be_recorded_are_reported(
    golem_env: GolemEnv, net: DevnetThread
) -> None:
    with write_lock(golem_env.db_path):
        started = time.monotonic()
        result = run_golem(golem_env, "vm", "list", "--refresh")
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < PROMPT, elapsed
    assert "web-1 is running, web-2 is running" in result.stderr


def test_a_create_whose_result_cannot_be_recorded_says_so(
    golem_env: GolemEnv, net: DevnetThread
) -> None:
    provider = net.providers[1]
    net.hold(provider.provider_id, "POST /vms")
    process = subprocess.Popen(
        [str(GOLEM), "vm", "create", "db-1", "--provider-id", provider.provider_id, *SMALL_VM],
        env=golem_env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The record is written (creating) before the POST; hold the lock after it.
        net.wait_for_request(provider.provider_id, route="POST /vms")
        assert db_rows(golem_env.db_path)["db-1"]["status"] == "creating"
        with write_lock(golem_env.db_path):
            started = time.monotonic()
            net.release(provider.provider_id, "POST /vms")
            _out, err = process.communicate(timeout=60)
            elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, err
    assert elapsed < PROMPT, elapsed
    assert "stayed locked" in err and "create db-1" in err
    assert "golem vm list --refresh" in err
    result = run_golem(golem_env, "vm", "list", "--refresh")
    assert result.returncode == 0, result.stderr
    assert db_rows(golem_env.db_path)["db-1"]["status"] == "running"
