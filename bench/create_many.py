"""Several VMs in one create: ``golem vm create NAME --count 12`` against 12
``golem vm create NAME`` in a row, on 3 devnet providers, without and with
injected provider latency.

    python -m bench.create_many [--vms 12] [--latency-ms 300] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench._devnet import DevnetThread
from bench.report import machine, table, update_section
from bench.startup import bench_env, golem_executable

SECTION = "create-many"
SMALL_VM = ("--cpu", "1", "--memory", "1", "--storage", "10")


def _timed(argv: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def _measure(golem: str, vms: int, latency_ms: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="golem-bench-create-") as folder:
        tmp = Path(folder)
        home = tmp / "home"
        home.mkdir()
        env = bench_env(home)
        scale = max(1, -(-vms // 4))  # the smallest provider has 4 CPU
        with DevnetThread(tmp / "devnet", 3, capacity_scale=scale) as net:
            env["GOLEM_REQUESTOR_DISCOVERY_URL"] = net.discovery_url
            net.set_all_faults(latency_ms=latency_ms)
            _timed([golem, "vm", "create", "warm-up", *SMALL_VM], env)
            started = time.perf_counter()
            for index in range(1, vms + 1):
                _timed([golem, "vm", "create", f"one-{index}", *SMALL_VM], env)
            in_a_row = time.perf_counter() - started
            at_once = _timed([golem, "vm", "create", "many", "--count", str(vms), *SMALL_VM], env)
    return in_a_row, at_once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.create_many", description=__doc__)
    parser.add_argument("--vms", type=int, default=12)
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args(argv)
    golem = golem_executable()
    load = os.getloadavg()[0]
    rows = []
    for latency in (0, options.latency_ms):
        print(f"{options.vms} creates, {latency} ms latency…", flush=True)
        in_a_row, at_once = _measure(golem, options.vms, latency)
        rows.append(
            [
                f"{latency} ms",
                f"{in_a_row:.2f} s",
                f"{at_once:.2f} s",
                f"{in_a_row / at_once:.1f}×",
            ]
        )
    markdown = "\n\n".join(
        [
            "## Several VMs in one create",
            f"{options.vms} VMs (1 CPU, 1 GB, 10 GB) on 3 devnet providers: "
            f"{options.vms} `golem vm create NAME` in a row against one "
            f"`golem vm create NAME --count {options.vms}` (spread over the providers, "
            "created concurrently, each waiting for its SSH and pinning its host key). "
            "Whole processes, wall time, one run each; the latency is injected before every "
            "provider answer.",
            table(["provider latency", "in a row", "one create", "faster"], rows, "lrrr"),
            f"Machine: {machine()}, load average {load:.1f} at the start. "
            "Command: `python -m bench.create_many`.",
        ]
    )
    print(markdown)
    if not options.no_write:
        update_section(SECTION, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
