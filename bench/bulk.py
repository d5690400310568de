"""Bulk operations at scale: ``golem vm stop --all`` over 200 VMs on 20 devnet
providers that each answer with 200 ms of injected latency, against a sequential
loop of single ``golem vm stop NAME`` calls; and ``golem vm list --refresh``.

    python -m bench.bulk [--vms 200] [--providers 20] [--latency-ms 200]
                         [--sequential N] [--runs 3] [--no-write]

``--sequential N`` times the loop over N VMs (default 40, so ``make bench`` stays
within a few minutes on a busy 2-core machine) and scales it to the fleet; the
table says which.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench._devnet import DevnetThread, create_fleet
from bench.report import machine, table, update_section
from bench.startup import golem_executable
from requestor.settings import load_settings

SECTION = "bulk"


def _timed(golem: str, args: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run([golem, *args], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"golem {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}"
        )
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk", description=__doc__)
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--providers", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--sequential", type=int, default=40, help="VMs in the sequential loop (default: 40)"
    )
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args(argv)
    golem = golem_executable()

    with tempfile.TemporaryDirectory(prefix="golem-bench-bulk-") as folder:
        tmp = Path(folder)
        home = tmp / "home"
        home.mkdir()
        # The smallest devnet provider has 4 CPU and 40 GB: scale it to hold its share.
        per_provider = -(-options.vms // options.providers)
        scale = max(1, -(-per_provider // 4))
        with DevnetThread(tmp / "devnet", options.providers, capacity_scale=scale) as net:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("GOLEM_REQUESTOR_")},
                "HOME": str(home),
                "GOLEM_REQUESTOR_BASE_DIR": str(home / ".golem"),
                "GOLEM_REQUESTOR_DISCOVERY_URL": net.discovery_url,
                "NO_COLOR": "1",
            }
            os.environ["HOME"] = str(home)  # the fleet's key must not be the user's own
            print(f"creating {options.vms} VMs on {options.providers} providers…", flush=True)
            names = asyncio.run(
                create_fleet(
                    load_settings(env), [p.provider_id for p in net.providers], options.vms
                )
            )
            net.set_all_faults(latency_ms=options.latency_ms)

            bulk, refresh = [], []
            for _ in range(options.runs):
                _timed(golem, ["vm", "start", "--all"], env)
                bulk.append(_timed(golem, ["vm", "stop", "--all"], env))
                refresh.append(_timed(golem, ["vm", "list", "--refresh"], env))

            _timed(golem, ["vm", "start", "--all"], env)
            loop_names = names[: options.sequential or len(names)]
            started = time.perf_counter()
            for name in loop_names:
                _timed(golem, ["vm", "stop", name], env)
            loop_seconds = time.perf_counter() - started
            per_vm = loop_seconds / len(loop_names)

    bulk_median, refresh_median = statistics.median(bulk), statistics.median(refresh)
    sequential_total = per_vm * options.vms
    measured = (
        f"measured over all {options.vms}"
        if len(loop_names) == options.vms
        else f"measured over {len(loop_names)}, scaled to {options.vms}"
    )
    rows = [
        [
            f"`golem vm stop --all` ({options.vms} VMs)",
            f"{bulk_median:.2f} s",
            f"{min(bulk):.2f}–{max(bulk):.2f} s",
            f"median of {options.runs}",
        ],
        [
            f"sequential `golem vm stop NAME` × {options.vms}",
            f"{sequential_total:.1f} s",
            f"{per_vm * 1000:.0f} ms per call",
            measured,
        ],
        [
            f"`golem vm list --refresh` ({options.vms} VMs)",
            f"{refresh_median:.2f} s",
            f"{min(refresh):.2f}–{max(refresh):.2f} s",
            f"median of {options.runs}",
        ],
    ]
    markdown = "\n\n".join(
        [
            "## Bulk operations",
            f"{options.vms} VMs on {options.providers} devnet providers, each answering with "
            f"{options.latency_ms} ms of injected latency; default `--concurrency 100`, "
            "10 connections per provider. Whole processes, wall time. Target: the bulk stop "
            "of 200 under 2 s.",
            table(["what", "wall time", "spread", "note"], rows, "lrrl"),
            f"Bulk is **{sequential_total / bulk_median:.0f}×** faster than the sequential "
            f"loop. Machine: {machine()}. Command: `python -m bench.bulk`.",
        ]
    )
    print(markdown)
    if not options.no_write:
        update_section(SECTION, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
