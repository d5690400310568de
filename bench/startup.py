"""Start-up time of ``golem``: median wall time of whole processes, as a user sees it.

Measures ``python -c pass`` (the floor: the same interpreter, nothing imported),
``golem --version``, ``golem --help`` and ``golem vm list`` with 100 VMs in a
throwaway database (local state only: no network). Each command runs
``--warmups`` times unmeasured, then ``--runs`` times measured.

    python -m bench.startup [--runs 15] [--warmups 2] [--vms 100] [--no-write]
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
from dataclasses import dataclass
from pathlib import Path

from bench.report import machine, table, update_section

SECTION = "startup"
# Loopback, and nothing listens there: a command that tried the network would fail fast.
LOOPBACK_DISCOVERY = "http://127.0.0.1:9"


@dataclass
class Timing:
    label: str
    samples: list[float]  # seconds

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def min_ms(self) -> float:
        return min(self.samples) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.samples) * 1000


def golem_executable() -> str:
    """The ``golem`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("golem")
    if beside.exists():
        return str(beside)
    found = shutil.which("golem")
    if found is None:
        raise SystemExit("golem is not installed in this environment (pip install -e .)")
    return found


def bench_env(home: Path) -> dict[str, str]:
    """Throwaway HOME and base dir, loopback discovery, no colours, bytecode cached."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLEM_REQUESTOR_")}
    env.update(
        {
            "HOME": str(home),
            "GOLEM_REQUESTOR_BASE_DIR": str(home / ".golem"),
            "GOLEM_REQUESTOR_DISCOVERY_URL": LOOPBACK_DISCOVERY,
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "120",
        }
    )
    env.pop("PYTHONPATH", None)
    # As for an installed golem: bytecode is cached (the warm-ups write it), here in a
    # throwaway folder so the checkout is not touched.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    return env


def time_command(
    argv: Sequence[str], env: dict[str, str], runs: int, warmups: int, label: str | None = None
) -> Timing:
    """Wall time of whole runs of ``argv``; a failing run stops the benchmark."""
    samples = []
    for index in range(warmups + runs):
        started = time.perf_counter()
        done = subprocess.run(
            list(argv),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
            timeout=120,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"{' '.join(argv)} exited {done.returncode}:\n"
                f"{done.stderr.decode(errors='replace')}"
            )
        if index >= warmups:
            samples.append(elapsed)
    return Timing(label or " ".join(argv), samples)


async def fill_database(db_path: Path, count: int) -> None:
    """``count`` VMs written with the real Database and models (schema at head)."""
    from requestor.db.engine import Database
    from requestor.db.models import VM, VMStatus

    statuses = [VMStatus.RUNNING, VMStatus.STOPPED, VMStatus.RUNNING, VMStatus.ERROR]
    async with Database(db_path) as db, db.write() as session:
        for i in range(count):
            session.add(
                VM(
                    name=f"bench-vm-{i:03d}",
                    provider_ip=f"127.0.{i // 200}.{i % 200 + 1}",
                    provider_vm_name=f"golem-bench-{i:03d}",
                    cpu=1 + i % 4,
                    memory=1 + i % 8,
                    storage=10 + i,
                    status=statuses[i % len(statuses)],
                    ssh_host=f"127.0.{i // 200}.{i % 200 + 1}",
                    ssh_port=50800 + i,
                )
            )


def check_vm_list(golem: str, env: dict[str, str], count: int) -> None:
    done = subprocess.run(
        [golem, "vm", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0 or done.stdout.count('"bench-vm-') != count:
        raise SystemExit(
            f"golem vm list does not show the {count} VMs:\n"
            f"{done.stdout[-1000:]}{done.stderr[-2000:]}"
        )


def render(timings: list[Timing], runs: int, warmups: int, vms: int) -> str:
    floor = timings[0].median_ms
    rows = [
        (
            f"`{t.label}`",
            f"{t.median_ms:.0f}",
            f"{t.median_ms - floor:+.0f}",
            f"{t.min_ms:.0f}",
            f"{t.max_ms:.0f}",
        )
        for t in timings
    ]
    return "\n".join(
        [
            "## Start-up",
            "",
            f"Median wall time of the whole process, {runs} runs after {warmups} warm-ups "
            f"each (`python -m bench.startup`). `vm list` reads {vms} VMs from local state "
            "(no network). Bytecode is cached, as for an installed golem. The third column "
            "is the median minus `python -c pass`: what golem itself costs.",
            "",
            table(["command", "median ms", "vs python ms", "min ms", "max ms"], rows),
            "",
            f"Machine: {machine()}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.startup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print the table only; do not update docs/benchmarks.md",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    golem = golem_executable()
    with tempfile.TemporaryDirectory(prefix="golem-bench-") as folder:
        home = Path(folder)
        env = bench_env(home)
        asyncio.run(fill_database(home / ".golem" / "vms.db", args.vms))
        check_vm_list(golem, env, args.vms)
        commands = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("golem --version", [golem, "--version"]),
            ("golem --help", [golem, "--help"]),
            (f"golem vm list ({args.vms} VMs)", [golem, "vm", "list"]),
        ]
        timings = []
        for label, command in commands:
            timings.append(time_command(command, env, args.runs, args.warmups, label))
            print(f"  {label}: median {timings[-1].median_ms:.0f} ms", flush=True)

    markdown = render(timings, args.runs, args.warmups, args.vms)
    print(markdown)
    if not args.no_write:
        print(f"\nUpdated {update_section(SECTION, markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
