"""A session whose client goes away mid-output leaves nothing for the garbage
collector to close after the devnet's loop is gone (it used to: an unread pipe
of the killed child, which failed noisily in a later, unrelated test)."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from requestor.settings import load_settings
from tests.conftest import GOLEM, GolemEnv
from tests.support.fleet import create_fleet
from tests.support.threaded import DevnetThread


def test_no_transport_outlives_the_devnet_loop(
    golem_env: GolemEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaked: list[Any] = []
    net = DevnetThread(tmp_path / "devnet", 1).start()
    try:
        env = {**golem_env.env, "GOLEM_REQUESTOR_DISCOVERY_URL": net.discovery_url}
        asyncio.run(create_fleet(load_settings(env), [net.providers[0].provider_id], 1))
        for _ in range(3):  # far more output than a pipe buffer, and nobody reads it
            subprocess.run(
                f"'{GOLEM}' vm ssh vm-000 -- 'head -c 50000000 /dev/zero' | head -c 10",
                shell=True,
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
    finally:
        net.stop()
    monkeypatch.setattr(sys, "unraisablehook", leaked.append)
    for _ in range(3):
        gc.collect()
    assert [repr(u.object) for u in leaked] == []
