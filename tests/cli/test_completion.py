"""``golem completion bash|zsh|fish``: the printed script, run by a real bash,
completes commands, options, VM names from local state and provider ids from
the last ``golem vm providers``, without any network call."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from requestor.settings import load_settings
from tests.conftest import GOLEM, GolemEnv, assert_ok, run_golem
from tests.support.fleet import create_fleet
from tests.support.threaded import DevnetThread

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _bash_complete(golem_env: GolemEnv, script: Path, *words: str) -> list[str]:
    """What bash's COMPREPLY holds after the script's function completes ``words``
    (the last one is what is being typed)."""
    quoted = " ".join(f"'{word}'" for word in words)
    program = (
        f"source '{script}'\n"
        f"COMP_WORDS=(golem {quoted})\n"
        f"COMP_CWORD={len(words)}\n"
        "_golem_completion golem\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**golem_env.env, "PATH": f"{GOLEM.parent}:{golem_env.env['PATH']}"}
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.fixture
def script(golem_env: GolemEnv, tmp_path: Path) -> Path:
    done = run_golem(golem_env, "completion", "bash")
    assert_ok(done)
    assert "_GOLEM_COMPLETE=bash_complete" in done.stdout
    path = tmp_path / "golem.bash"
    path.write_text(done.stdout)
    return path


def test_bash_completes_commands_options_vm_names_and_provider_ids(
    golem_env: GolemEnv, devnet: DevnetThread, script: Path
) -> None:
    env = {**golem_env.env, "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    ids = [p.provider_id for p in devnet.providers]
    asyncio.run(create_fleet(load_settings(env), ids, 2, prefix="web"))
    asyncio.run(create_fleet(load_settings(env), ids, 1, prefix="db"))

    assert _bash_complete(golem_env, script, "") == ["completion", "config", "db", "devnet", "vm"]
    assert _bash_complete(golem_env, script, "vm", "pro") == ["providers"]
    assert "--wait-timeout" in _bash_complete(golem_env, script, "vm", "ssh", "--")
    assert sorted(_bash_complete(golem_env, script, "vm", "ssh", "")) == [
        "db-000",
        "web-000",
        "web-001",
    ]
    assert sorted(_bash_complete(golem_env, script, "vm", "stop", "we")) == ["web-000", "web-001"]
    assert _bash_complete(golem_env, script, "vm", "cp", "./x", "d") == ["db-000:"]

    # Provider ids: none before a listing was seen, then discovery's, with no
    # network call at completion (discovery is stopped by then).
    assert _bash_complete(golem_env, script, "vm", "create", "x", "--provider", "") == []
    assert_ok(run_golem(golem_env, "vm", "providers", "--no-probe", extra_env=env))
    devnet.stop()
    offered = _bash_complete(golem_env, script, "vm", "list", "--provider", "")
    assert sorted(offered) == sorted(ids)
    assert _bash_complete(golem_env, script, "vm", "create", "x", "--provider-id", ids[1]) == [
        ids[1]
    ]


def test_the_completion_protocol_offers_vm_names(golem_env: GolemEnv, devnet: DevnetThread) -> None:
    """The call one Tab makes (click's protocol), as the script makes it. Its
    import weight is checked in tests/test_startup.py; its wall time is measured
    in README.md ("Shell completion"), not asserted: a shared machine's load is
    not golem's."""
    env = {**golem_env.env, "GOLEM_REQUESTOR_DISCOVERY_URL": devnet.discovery_url}
    asyncio.run(create_fleet(load_settings(env), [devnet.providers[0].provider_id], 3))
    call = {
        **env,
        "COMP_WORDS": "golem vm ssh ",
        "COMP_CWORD": "3",
        "_GOLEM_COMPLETE": "bash_complete",
    }
    done = subprocess.run(
        [str(GOLEM)], capture_output=True, text=True, env=call, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["plain,vm-000", "plain,vm-001", "plain,vm-002"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_use_the_same_protocol(golem_env: GolemEnv, shell: str) -> None:
    done = run_golem(golem_env, "completion", shell)
    assert_ok(done)
    assert f"_GOLEM_COMPLETE={shell}_complete" in done.stdout.replace('"', "")


def test_an_unknown_shell_is_a_usage_error(golem_env: GolemEnv) -> None:
    done = run_golem(golem_env, "completion", "tcsh")
    assert done.returncode == 2
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in done.stderr
