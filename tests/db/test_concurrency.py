"""Twenty ``golem`` processes on one database at once, starting on a fresh file:
no "database is locked", no lost row, no lost update (see concurrent_worker.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import GolemEnv
from tests.db import query

WORKERS = 20
ROUNDS = 20
WORKER = Path(__file__).with_name("concurrent_worker.py")


def test_twenty_processes_race_on_a_fresh_db_without_losing_anything(
    tmp_path: Path, golem_env: GolemEnv
) -> None:
    db_path = tmp_path / "state" / "vms.db"  # fresh: they race on the first migration too
    signals = tmp_path / "signals"
    signals.mkdir()
    env = golem_env.env  # PYTHONPATH has the repo and the loopback-only network guard
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(db_path), str(worker), str(ROUNDS), str(signals)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for worker in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(signals.glob("ready-*"))) < WORKERS:
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), "a worker died before the start"
            time.sleep(0.02)
        assert not db_path.exists()
        (signals / "go").touch()
        outputs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    failures = [
        f"worker {i} exited {p.returncode}:\n{err}"
        for i, (p, (_out, err)) in enumerate(zip(procs, outputs, strict=True))
        if p.returncode != 0 or err.strip()
    ]
    assert failures == []
    assert not any("locked" in out + err for out, err in outputs)
    results = [json.loads(out) for out, _err in outputs]
    assert sorted(r["worker"] for r in results) == list(range(WORKERS))

    names = {row[0] for row in query(db_path, "SELECT name FROM vms")}
    expected = {f"w{w:02d}-{i:03d}" for w in range(WORKERS) for i in range(ROUNDS)}
    assert names == expected | {"shared-counter"}
    assert query(db_path, "SELECT cpu FROM vms WHERE name = 'shared-counter'") == [
        (WORKERS * ROUNDS,)
    ]
    assert query(db_path, "SELECT count(*) FROM alembic_version") == [(1,)]
