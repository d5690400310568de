"""Issue 11's figures, each beside its reference, measured in one run.

Every golem command and its reference run in alternation (golem, reference,
golem, ... and the order reversed every other round, so a machine that gets
busier or quieter mid-run weighs on both alike); the table shows medians of
whole processes (wall time), as a user sees them:

* ``golem vm ssh NAME -- true`` against a bare asyncssh client (bench/_bare_ssh.py,
  its own Python process, same key and pinned host key) and OpenSSH's ``ssh``;
* ``golem vm cp`` of one large random file and of a tree of small files, up and
  down, against OpenSSH 9's ``scp`` / ``scp -r`` (SFTP underneath, as golem) on
  the same devnet VM with the same key and host key;
* ``golem vm list`` with 100 VMs in local state, and ``golem vm providers`` with
  100 advertisements, against ``python -c pass``; and whether ``vm providers``
  imports SQLAlchemy or Alembic (``python -X importtime``).

Everything talks to 127.0.0.0/8 only; every command has a timeout.

    python -m bench.targets [--runs 10] [--copy-runs 5] [--size-mb 200]
                            [--tree-files 1000] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench._devnet import DevnetThread
from bench.report import machine, table, update_section
from bench.startup import bench_env, fill_database, golem_executable

SECTION = "targets"
VM = "bench-vm"
ADS = 100
LISTED_VMS = 100
TIMEOUT_S = 300.0  # one command; a hung copy stops the benchmark instead of the machine
BARE_SSH = Path(__file__).with_name("_bare_ssh.py")

Prepare = Callable[[], None]


@dataclass
class Case:
    """One command, timed whole; ``prepare`` runs untimed before each run."""

    label: str
    argv: list[str]
    prepare: Prepare | None = None


def _run(case: Case, env: dict[str, str]) -> float:
    if case.prepare is not None:
        case.prepare()
    started = time.perf_counter()
    done = subprocess.run(
        case.argv,
        env=env,
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT_S,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(case.argv)} failed ({done.returncode}):\n"
            f"{done.stderr.decode(errors='replace')[-2000:]}"
        )
    return elapsed


def interleaved(
    cases: Sequence[Case], env: dict[str, str], runs: int, warmups: int = 1
) -> list[list[float]]:
    """Samples per case: each round runs every case once, alternating the order."""
    for _ in range(warmups):
        for case in cases:
            _run(case, env)
    samples: list[list[float]] = [[] for _ in cases]
    for round_ in range(runs):
        order = list(range(len(cases)))
        if round_ % 2:
            order.reverse()
        for index in order:
            samples[index].append(_run(cases[index], env))
    return samples


def _remove(path: Path) -> Prepare:
    def prepare() -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()

    return prepare


def _connection(db_path: Path) -> tuple[str, int, str, str, str]:
    connection = sqlite3.connect(db_path)
    try:
        row = connection.execute(
            "SELECT ssh_host, ssh_port, ssh_user, ssh_key_path, host_key FROM vms WHERE name = ?",
            (VM,),
        ).fetchone()
    finally:
        connection.close()
    return str(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4])


def _big_file(path: Path, size_mb: int) -> None:
    with path.open("wb") as handle:
        for _ in range(size_mb):
            handle.write(os.urandom(1 << 20))


def _tree(root: Path, files: int) -> int:
    """``files`` small files (100 B to 16 KB) in 2-level folders; returns the bytes written."""
    rng = random.Random(11)
    total = 0
    per_folder = 25
    for index in range(files):
        folder = root / f"dir{index // (2 * per_folder):03d}"
        if index % (2 * per_folder) >= per_folder:
            folder = folder / "inner"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"file{index:05d}.txt"
        size = rng.randint(100, 16_000)
        path.write_bytes(rng.randbytes(size))
        path.chmod(rng.choice([0o644, 0o600, 0o755]))
        total += size
    return total


def _post_ads(discovery_url: str, provider_ip: str, count: int) -> None:
    """Fill discovery up to ``count`` ads. They all name the one devnet provider's address
    (so every probe gets a real answer, on loopback); the devnet checks only that the
    provider headers are present."""
    for index in range(count):
        body = json.dumps(
            {
                "ip_address": provider_ip,
                "country": "SE",
                "resources": {"cpu": 4 + index % 8, "memory": 8, "storage": 100},
            }
        ).encode()
        request = urllib.request.Request(
            f"{discovery_url}/api/v1/advertisements",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Provider-ID": f"bench-ad-{index:03d}",
                "X-Provider-Signature": "bench",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def _heavy_imports(golem: str, argv: Sequence[str], env: dict[str, str]) -> list[str]:
    """Top-level packages among SQLAlchemy and Alembic that a golem command imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", golem, *argv],
        env=env,
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT_S,
    )
    if done.returncode != 0:
        raise SystemExit(f"golem {' '.join(argv)} failed:\n{done.stderr.decode()[-2000:]}")
    found = set()
    for line in done.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:"):
            continue
        module = line.rsplit("|", 1)[-1].strip()
        top = module.split(".", 1)[0]
        if top in ("sqlalchemy", "alembic"):
            found.add(top)
    return sorted(found)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _time(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _spread(samples: list[float]) -> str:
    return f"{_time(min(samples))}–{_time(max(samples))}"


@dataclass
class Row:
    what: str
    golem: list[float]
    reference_label: str
    reference: list[float]
    kind: str  # "time": golem/reference must be <= target; "pace": reference/golem >= target
    target: float | None  # None: shown for context, no target
    note: str = ""

    @property
    def ratio(self) -> float:
        g, r = _median(self.golem), _median(self.reference)
        return g / r if self.kind == "time" else r / g

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio <= self.target if self.kind == "time" else self.ratio >= self.target

    def cells(self) -> list[str]:
        if self.kind == "time":
            ratio = f"{self.ratio:.2f}× the time"
            bound = "≤"
        else:
            ratio = f"{self.ratio:.2f}× the pace"
            bound = "≥"
        target = "(context)" if self.target is None else f"{bound} {self.target:g}×"
        golem = f"{_time(_median(self.golem))} ({_spread(self.golem)})"
        reference = f"{self.reference_label}: {_time(_median(self.reference))}"
        return [
            self.what,
            golem + self.note,
            reference,
            ratio,
            target,
            {True: "**met**", False: "not met", None: "—"}[self.met],
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.targets", description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="rounds for commands")
    parser.add_argument("--copy-runs", type=int, default=5, help="rounds for copies")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--tree-files", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args(argv)
    if shutil.which("ssh") is None or shutil.which("scp") is None:
        raise SystemExit("bench.targets needs the OpenSSH client (ssh and scp)")
    golem = golem_executable()
    python = sys.executable
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="golem-bench-targets-") as folder:
        tmp = Path(folder)
        home = tmp / "home"
        home.mkdir()
        env = bench_env(home)

        # vm list reads local state only: its own home, filled through the real models.
        list_home = tmp / "list-home"
        list_home.mkdir()
        list_env = bench_env(list_home)
        asyncio.run(fill_database(list_home / ".golem" / "vms.db", LISTED_VMS))

        with DevnetThread(tmp / "devnet", 1) as net:
            env["GOLEM_REQUESTOR_DISCOVERY_URL"] = net.discovery_url
            provider = net.providers[0]
            _run(
                Case(
                    "create",
                    [
                        golem,
                        *("vm", "create", VM, "--provider-id", provider.provider_id),
                        *("--cpu", "1", "--memory", "1", "--storage", "10"),
                    ],
                ),
                env,
            )
            host, port, user, key, host_key = _connection(home / ".golem" / "vms.db")
            known_hosts = tmp / "known_hosts"
            known_hosts.write_text(f"[{host}]:{port} {host_key}\n")
            openssh = [
                *("-i", key, "-F", "/dev/null"),
                *("-o", f"UserKnownHostsFile={known_hosts}"),
                *("-o", "StrictHostKeyChecking=yes"),
                *("-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"),
            ]
            at = f"{user}@{host}"

            print(f"ssh -- true: {options.runs} rounds…", flush=True)
            ssh_true = interleaved(
                [
                    Case("golem", [golem, "vm", "ssh", VM, "--", "true"]),
                    Case(
                        "bare",
                        [python, str(BARE_SSH), host, str(port), user, key, str(known_hosts)],
                    ),
                    Case("openssh", ["ssh", *openssh, "-p", str(port), at, "true"]),
                ],
                env,
                options.runs,
            )

            print(f"1-byte file: {options.runs} rounds…", flush=True)
            tiny = tmp / "tiny.bin"
            tiny.write_bytes(b"x")
            scp = ["scp", "-q", *openssh, "-P", str(port)]
            tiny_up = interleaved(
                [
                    Case("golem", [golem, "vm", "cp", str(tiny), f"{VM}:tiny.bin"]),
                    Case("scp", [*scp, str(tiny), f"{at}:tiny-scp.bin"]),
                ],
                env,
                options.runs,
            )

            print(f"{options.size_mb} MB file: {options.copy_runs} rounds…", flush=True)
            big = tmp / "big.bin"
            _big_file(big, options.size_mb)
            back, back_scp = tmp / "back.bin", tmp / "back-scp.bin"
            file_up = interleaved(
                [
                    Case("golem", [golem, "vm", "cp", str(big), f"{VM}:big.bin"]),
                    Case("scp", [*scp, str(big), f"{at}:big-scp.bin"]),
                ],
                env,
                options.copy_runs,
            )
            # Each download starts with no local copy (removed untimed), for both.
            file_down = interleaved(
                [
                    Case("golem", [golem, "vm", "cp", f"{VM}:big.bin", str(back)], _remove(back)),
                    Case("scp", [*scp, f"{at}:big-scp.bin", str(back_scp)], _remove(back_scp)),
                ],
                env,
                options.copy_runs,
            )
            big.unlink()
            for path in (back, back_scp):
                _remove(path)()

            print(f"tree of {options.tree_files} files: {options.copy_runs} rounds…", flush=True)
            # Two identical trees under different names, so golem's and scp's copies on
            # the VM never mix; uploads go to the login folder and overwrite themselves.
            sources = tmp / "sources"
            tree_bytes = _tree(sources / "tree-golem", options.tree_files)
            shutil.copytree(sources / "tree-golem", sources / "tree-scp")
            down, down_scp = tmp / "down-golem", tmp / "down-scp"
            tree_up = interleaved(
                [
                    Case("golem", [golem, "vm", "cp", "-r", str(sources / "tree-golem"), f"{VM}:"]),
                    Case("scp", [*scp, "-r", str(sources / "tree-scp"), f"{at}:"]),
                ],
                env,
                options.copy_runs,
            )
            tree_down = interleaved(
                [
                    Case(
                        "golem",
                        [golem, "vm", "cp", "-r", f"{VM}:tree-golem", str(down)],
                        _remove(down),
                    ),
                    Case("scp", [*scp, "-r", f"{at}:tree-scp", str(down_scp)], _remove(down_scp)),
                ],
                env,
                options.copy_runs,
            )

            print(
                f"vm list ({LISTED_VMS} VMs), vm providers ({ADS} ads): {options.runs} rounds…",
                flush=True,
            )
            _post_ads(net.discovery_url, provider.ip_address, ADS - 1)
            providers_check = subprocess.run(
                [golem, "vm", "providers", "--json"],
                env=env,
                capture_output=True,
                check=False,
                timeout=TIMEOUT_S,
            )
            shown = len(json.loads(providers_check.stdout or b"[]"))
            if providers_check.returncode != 0 or shown != ADS:
                raise SystemExit(
                    f"golem vm providers shows {shown} providers, not {ADS}:\n"
                    f"{providers_check.stderr.decode(errors='replace')[-2000:]}"
                )
            python_pass = Case("python", [python, "-c", "pass"])
            start_up = interleaved(
                [python_pass, Case("golem", [golem, "vm", "list"])], list_env, options.runs, 2
            )
            providers = interleaved(
                [python_pass, Case("golem", [golem, "vm", "providers"])], env, options.runs, 2
            )
            heavy = _heavy_imports(golem, ["vm", "providers"], env)

    mb = options.size_mb
    tree_mb = tree_bytes / 1e6
    rows = [
        Row(
            "`golem vm ssh NAME -- true`",
            ssh_true[0],
            "bare asyncssh client",
            ssh_true[1],
            "time",
            1.3,
        ),
        Row(
            "`golem vm cp` 1-byte file up: the fixed cost of a copy",
            tiny_up[0],
            "`scp`",
            tiny_up[1],
            "time",
            None,
        ),
        Row(f"`golem vm cp` {mb} MB file up", file_up[0], "`scp`", file_up[1], "pace", 0.7),
        Row(f"`golem vm cp` {mb} MB file down", file_down[0], "`scp`", file_down[1], "pace", 0.7),
        Row(
            f"`golem vm cp -r` {options.tree_files} files ({tree_mb:.0f} MB) up",
            tree_up[0],
            "`scp -r`",
            tree_up[1],
            "pace",
            0.7,
        ),
        Row(
            f"`golem vm cp -r` {options.tree_files} files ({tree_mb:.0f} MB) down",
            tree_down[0],
            "`scp -r`",
            tree_down[1],
            "pace",
            0.7,
        ),
        Row(
            f"`golem vm list` ({LISTED_VMS} VMs)",
            start_up[1],
            "`python -c pass`",
            start_up[0],
            "time",
            10,
        ),
    ]
    providers_row = [
        f"`golem vm providers` ({ADS} ads)",
        f"{_time(_median(providers[1]))} ({_spread(providers[1])})",
        f"`python -c pass`: {_time(_median(providers[0]))}",
        f"{_median(providers[1]) / _median(providers[0]):.2f}× the time",
        "imports neither SQLAlchemy nor Alembic",
        ("not met: imports " + " and ".join(heavy)) if heavy else "**met**",
    ]
    openssh_ms = _median(ssh_true[2]) * 1000
    markdown = "\n\n".join(
        [
            "## Targets (issue 11), each beside its reference",
            "One run of `python -m bench.targets`: golem and its reference alternate "
            "(the order reversed every other round), medians of whole processes, wall "
            f"time; {options.runs} rounds for commands, {options.copy_runs} for copies, "
            "after warm-ups. One devnet VM (an asyncssh server behind the provider's TCP "
            "proxy, on loopback, in the benchmark's own process); golem, the bare client "
            "and OpenSSH 9 use the same key, address and pinned host key. `scp` runs in its "
            "default SFTP mode, as `golem vm cp` does; `scp -r` does not keep modes and "
            "times, golem does. A pace ratio is scp's time over golem's (1.0× = as fast).",
            table(
                ["what", "golem (median, range)", "reference", "ratio", "target", "status"],
                [*(row.cells() for row in rows), providers_row],
                "lrlrll",
            ),
            f"OpenSSH's `ssh ... true` on the same VM: {openssh_ms:.0f} ms. "
            f"Machine: {machine()}. Took {time.perf_counter() - started:.0f} s. "
            "Command: `python -m bench.targets`.",
        ]
    )
    print(markdown)
    if not options.no_write:
        update_section(SECTION, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
