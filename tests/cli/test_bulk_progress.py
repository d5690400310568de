"""The live progress of a bulk action, as a user at a terminal sees it (the
stop and the destroy on both backends: they take db_backend)."""

from __future__ import annotations

import asyncio

import pexpect

from requestor.settings import load_settings
from tests.conftest import GOLEM, GolemEnv
from tests.helpers import db_rows, state_rows
from tests.plugins.postgres import DbBackend
from tests.support.fleet import create_fleet
from tests.support.threaded import DevnetThread


def test_bulk_progress_is_drawn_on_a_terminal(
    db_backend: DbBackend, golem_env: GolemEnv, devnet: DevnetThread
) -> None:
    env = {
        **golem_env.env,
        "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url,
        "TERM": "xterm-256color",
        "COLUMNS": "120",
    }
    env.pop("NO_COLOR", None)
    ids = [p.provider_id for p in devnet.providers]
    asyncio.run(create_fleet(load_settings(env), ids, 6))
    # Every stop is parked until the live line has been seen: it is drawn while
    # golem waits, whatever the speed of the machine.
    for provider_id in ids:
        devnet.hold(provider_id, "stop")

    child = pexpect.spawn(
        str(GOLEM),
        ["vm", "stop", "--all", "--concurrency", "2"],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )
    child.expect("Stopping")  # the live line: what it does, a bar, done/total, failures
    child.expect(r"0/6")
    child.expect("failed")
    devnet.clear_faults()
    child.expect("stop: 6 stopped of 6")  # then the per-VM table and the summary
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    rows = state_rows(db_backend.url or golem_env.db_path)
    assert {row["status"] for row in rows.values()} == {"stopped"}


def test_destroy_all_asks_at_a_terminal_with_the_count(
    db_backend: DbBackend, golem_env: GolemEnv, devnet: DevnetThread
) -> None:
    env = {**golem_env.env, "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    asyncio.run(create_fleet(load_settings(env), [devnet.providers[0].provider_id], 3))

    child = pexpect.spawn(
        str(GOLEM),
        ["vm", "destroy", "--all"],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )
    child.expect(r"Destroy 3 VM\(s\) \((vm-00\d, ){2}vm-00\d\)\? This cannot be undone")
    child.sendline("n")
    # A declined prompt is the user's choice, not an error: no "Error:", exit 0.
    child.expect("Nothing destroyed.")
    assert "Error" not in child.before  # what came after the answer, up to the line
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert len(state_rows(db_backend.url or golem_env.db_path)) == 3

    child = pexpect.spawn(
        str(GOLEM),
        ["vm", "destroy", "vm-00*"],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )
    child.expect(r"Destroy 3 VM\(s\)")
    child.sendline("y")
    child.expect("destroy: 3 destroyed of 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert state_rows(db_backend.url or golem_env.db_path) == {}
    assert all(not s["vms"] for s in devnet.summaries())


def test_declining_forget_is_nothing_forgotten_and_exit_0(
    golem_env: GolemEnv, devnet: DevnetThread
) -> None:
    env = {**golem_env.env, "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    asyncio.run(create_fleet(load_settings(env), [devnet.providers[0].provider_id], 2))
    child = pexpect.spawn(
        str(GOLEM),
        ["vm", "forget", "--all", "--force"],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )
    child.expect(r"Forget 2 VM\(s\)")
    child.sendline("n")
    child.expect("Nothing forgotten.")
    assert "Error" not in child.before
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert len(db_rows(golem_env.db_path)) == 2
