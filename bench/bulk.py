"""Bulk operations at scale: ``golem vm stop --all`` over 200 VMs on 20 devnet
providers that each answer with 200 ms of injected latency, against a sequential
loop of single ``golem vm stop NAME`` calls; and ``golem vm list --refresh``;
then the same bulk stop and refresh with the state in a shared PostgreSQL
database (team mode: each VM claimed, read again, recorded).

    python -m bench.bulk [--vms 200] [--providers 20] [--latency-ms 200]
                         [--sequential N] [--runs 3] [--no-postgresql] [--no-write]

``--sequential N`` times the loop over N VMs (default 40, so ``make bench`` stays
within a few minutes on a busy 2-core machine) and scales it to the fleet; the
table says which. PostgreSQL is the test suite's throwaway server (on loopback,
without fsync); where it cannot be started, its rows say why.
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
from dataclasses import dataclass
from pathlib import Path

from bench._devnet import DevnetThread, PostgresUnavailable, create_fleet, start_server
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


@dataclass
class Timings:
    bulk: list[float]
    refresh: list[float]
    per_vm: float | None = None  # the sequential loop's time per call
    looped: int = 0  # VMs in that loop


def _measure(
    golem: str, options: argparse.Namespace, tmp: Path, database_url: str | None, sequential: int
) -> Timings:
    """A fresh devnet and fleet; the bulk stop and refresh ``options.runs`` times,
    then the sequential loop over ``sequential`` VMs (none: 0)."""
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
        if database_url is not None:
            env["GOLEM_REQUESTOR_DATABASE_URL"] = database_url
        os.environ["HOME"] = str(home)  # the fleet's key must not be the user's own
        where = "PostgreSQL" if database_url else "SQLite"
        print(f"creating {options.vms} VMs on {options.providers} providers ({where})…", flush=True)
        names = asyncio.run(
            create_fleet(load_settings(env), [p.provider_id for p in net.providers], options.vms)
        )
        net.set_all_faults(latency_ms=options.latency_ms)

        timings = Timings([], [])
        for _ in range(options.runs):
            _timed(golem, ["vm", "start", "--all"], env)
            timings.bulk.append(_timed(golem, ["vm", "stop", "--all"], env))
            timings.refresh.append(_timed(golem, ["vm", "list", "--refresh"], env))

        if sequential:
            _timed(golem, ["vm", "start", "--all"], env)
            loop_names = names[:sequential]
            started = time.perf_counter()
            for name in loop_names:
                _timed(golem, ["vm", "stop", name], env)
            timings.per_vm = (time.perf_counter() - started) / len(loop_names)
            timings.looped = len(loop_names)
    return timings


def _postgresql(
    golem: str, options: argparse.Namespace, tmp: Path
) -> tuple[Timings | None, str | None]:
    """The PostgreSQL timings, or None and why they could not be taken."""
    try:
        server = start_server()
    except PostgresUnavailable as e:
        return None, str(e)
    try:
        url = server.url(server.create_database())
        return _measure(golem, options, tmp, url, 0), None
    finally:
        server.stop()


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk", description=__doc__)
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--providers", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--sequential", type=int, default=40, help="VMs in the sequential loop (default: 40)"
    )
    parser.add_argument(
        "--no-postgresql", action="store_true", help="Skip the shared-database (team mode) rows"
    )
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args(argv)
    golem = golem_executable()

    with tempfile.TemporaryDirectory(prefix="golem-bench-bulk-") as folder:
        tmp = Path(folder)
        (tmp / "sqlite").mkdir()
        local = _measure(
            golem,
            options,
            tmp / "sqlite",
            None,
            min(options.sequential or options.vms, options.vms),
        )
        shared: Timings | None = None
        why_not = "not measured (--no-postgresql)"
        if not options.no_postgresql:
            (tmp / "postgresql").mkdir()
            shared, reason = _postgresql(golem, options, tmp / "postgresql")
            why_not = f"not measured: {reason}"

    assert local.per_vm is not None
    bulk_median, refresh_median = statistics.median(local.bulk), statistics.median(local.refresh)
    sequential_total = local.per_vm * options.vms
    measured = (
        f"measured over all {options.vms}"
        if local.looped == options.vms
        else f"measured over {local.looped}, scaled to {options.vms}"
    )
    rows = [
        [
            f"`golem vm stop --all` ({options.vms} VMs)",
            f"{bulk_median:.2f} s",
            _spread(local.bulk),
            f"median of {options.runs}",
        ],
        [
            f"sequential `golem vm stop NAME` × {options.vms}",
            f"{sequential_total:.1f} s",
            f"{local.per_vm * 1000:.0f} ms per call",
            measured,
        ],
        [
            f"`golem vm list --refresh` ({options.vms} VMs)",
            f"{refresh_median:.2f} s",
            _spread(local.refresh),
            f"median of {options.runs}",
        ],
    ]
    if shared is not None:
        rows += [
            [
                f"`golem vm stop --all` ({options.vms} VMs), PostgreSQL",
                f"{statistics.median(shared.bulk):.2f} s",
                _spread(shared.bulk),
                f"median of {options.runs}; team mode: each VM claimed, read again, recorded",
            ],
            [
                f"`golem vm list --refresh` ({options.vms} VMs), PostgreSQL",
                f"{statistics.median(shared.refresh):.2f} s",
                _spread(shared.refresh),
                f"median of {options.runs}",
            ],
        ]
    else:
        rows.append([f"`golem vm stop --all` ({options.vms} VMs), PostgreSQL", "-", "-", why_not])
    markdown = "\n\n".join(
        [
            "## Bulk operations",
            f"{options.vms} VMs on {options.providers} devnet providers, each answering with "
            f"{options.latency_ms} ms of injected latency; default `--concurrency 100`, "
            "10 connections per provider. Whole processes, wall time. Target: the bulk stop "
            "of 200 under 2 s. The PostgreSQL rows keep the state in a shared database "
            "(`GOLEM_REQUESTOR_DATABASE_URL`): the test suite's throwaway server on "
            "loopback (no fsync), so they show golem's own cost, not a remote server's "
            "round trips.",
            table(["what", "wall time", "spread", "note"], rows, "lrrl"),
            f"Bulk is **{sequential_total / bulk_median:.0f}×** faster than the sequential "
            f"loop. Machine: {machine()}. Command: `python -m bench.bulk` (in `make bench`).",
        ]
    )
    print(markdown)
    if not options.no_write:
        update_section(SECTION, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
