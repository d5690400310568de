"""One command on many VMs: ``golem vm exec --all -- true`` over 100 VMs on 10 devnet
providers, side by side with 100 OpenSSH ``ssh ... true`` runs, 10 at a time
(``xargs -P 10``), with the same keys and host-key pins (through the config
``golem vm ssh-config`` writes).

    python -m bench.exec [--vms 100] [--providers 10] [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench._devnet import DevnetThread, create_fleet
from bench.report import machine, table, update_section
from bench.startup import bench_env, golem_executable
from requestor.settings import load_settings

SECTION = "exec"
TARGET_S = 3.0


def _timed(argv: Sequence[str], env: dict[str, str], stdin: str | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        list(argv), env=env, input=stdin, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.exec", description=__doc__)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--providers", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args(argv)
    if shutil.which("ssh") is None or shutil.which("xargs") is None:
        raise SystemExit("bench.exec needs the OpenSSH client (ssh) and xargs")
    golem = golem_executable()

    with tempfile.TemporaryDirectory(prefix="golem-bench-exec-") as folder:
        tmp = Path(folder)
        home = tmp / "home"
        home.mkdir()
        env = bench_env(home)
        # The smallest devnet provider has 4 CPU and 40 GB: scale it to hold its share.
        per_provider = -(-options.vms // options.providers)
        scale = max(1, -(-per_provider // 4))
        with DevnetThread(tmp / "devnet", options.providers, capacity_scale=scale) as net:
            env["GOLEM_REQUESTOR_DISCOVERY_URL"] = net.discovery_url
            saved_home = os.environ.get("HOME")
            os.environ["HOME"] = str(home)  # the fleet's key must not be the user's own
            try:
                print(f"creating {options.vms} VMs on {options.providers} providers…", flush=True)
                names = asyncio.run(
                    create_fleet(
                        load_settings(env), [p.provider_id for p in net.providers], options.vms
                    )
                )
            finally:
                if saved_home is not None:
                    os.environ["HOME"] = saved_home
            config = tmp / "openssh_config"
            done = subprocess.run(
                [golem, "vm", "ssh-config"], env=env, capture_output=True, text=True, check=True
            )
            config.write_text(done.stdout)
            openssh = (
                f"xargs -P 10 -I NAME ssh -F {config} -o BatchMode=yes golem-NAME true"
            ).split()
            hosts = "".join(f"{name}\n" for name in names)

            load = os.getloadavg()[0]
            golem_runs, openssh_runs = [], []
            _timed([golem, "vm", "exec", "--all", "--", "true"], env)  # warm-up
            _timed(openssh, env, hosts)
            for _ in range(options.runs):
                golem_runs.append(_timed([golem, "vm", "exec", "--all", "--", "true"], env))
                openssh_runs.append(_timed(openssh, env, hosts))

    golem_median, openssh_median = statistics.median(golem_runs), statistics.median(openssh_runs)
    rows = [
        [
            f"`golem vm exec --all -- true` ({options.vms} VMs)",
            f"{golem_median:.2f} s",
            f"{min(golem_runs):.2f}–{max(golem_runs):.2f} s",
            "1.0×",
        ],
        [
            f"`xargs -P 10 ssh ... true` × {options.vms} (OpenSSH)",
            f"{openssh_median:.2f} s",
            f"{min(openssh_runs):.2f}–{max(openssh_runs):.2f} s",
            f"{openssh_median / golem_median:.2f}×",
        ],
    ]
    verdict = "meets" if golem_median < TARGET_S else "MISSES"
    markdown = "\n\n".join(
        [
            "## One command on many VMs",
            f"{options.vms} VMs on {options.providers} devnet providers; golem with its "
            "default `--concurrency 100` (at most 10 per provider), OpenSSH as 10 parallel "
            "`ssh` processes through the config `golem vm ssh-config` prints (the same keys "
            f"and pinned host keys). Whole processes, wall time, median of {options.runs} "
            "after a warm-up. The last column is time relative to golem's.",
            table(["what", "wall time", "spread", "time vs golem"], rows, "lrrr"),
            f"golem {verdict} the target of {TARGET_S:g} s. Machine: {machine()}, load "
            f"average {load:.1f} when the timing began (the devnet's SSH servers run in this "
            "process: a busy machine slows both sides). "
            "Command: `python -m bench.exec`.",
        ]
    )
    print(markdown)
    if not options.no_write:
        update_section(SECTION, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
