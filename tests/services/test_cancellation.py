"""Cancellation propagates out of the service layer: a bulk action inside an
``asyncio.timeout`` ends with TimeoutError (it used to un-cancel its caller and
return as if nothing happened), after its writes finished, with the caller's
report saying what was done and what was cancelled, and local state agreeing."""

from __future__ import annotations

import asyncio

import pytest

from requestor.services.actions import Action, BulkReport, Result, run_action, select_vms
from requestor.services.runtime import open_services
from requestor.settings import load_settings
from tests.conftest import GolemEnv, run_golem
from tests.helpers import SMALL_VM, db_rows
from tests.support.threaded import DevnetThread


async def test_a_timeout_around_a_bulk_action_cancels_it(
    golem_env: GolemEnv, devnet: DevnetThread
) -> None:
    env = {"GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    quick, hung = devnet.providers[0], devnet.providers[1]
    for name, provider in (("quick", quick), ("hung", hung)):
        args = ("vm", "create", name, "--provider-id", provider.provider_id, *SMALL_VM)
        done = await asyncio.to_thread(run_golem, golem_env, *args, extra_env=env)
        assert done.returncode == 0, done.stderr
    devnet.set_faults(hung.provider_id, hang=True)

    settings = load_settings({**golem_env.env, **env})
    report = BulkReport(Action.STOP)
    async with open_services(settings) as services:
        vms = (await select_vms(services, [], all_vms=True)).vms
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as scope:
                # The deadline passes as soon as the first VM is done: the other
                # provider hangs, so its VM is still in flight.
                await run_action(
                    services,
                    Action.STOP,
                    vms,
                    report=report,
                    on_outcome=lambda _o: scope.reschedule(loop.time()),
                )

    assert report.interrupted
    results = {o.name: o.result for o in report.outcomes}
    assert results == {"quick": Result.DONE, "hung": Result.CANCELLED}
    rows = db_rows(golem_env.db_path)
    assert (rows["quick"]["status"], rows["hung"]["status"]) == ("stopped", "running")
