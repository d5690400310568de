"""Twenty ``golem`` processes on one database at once, starting on a fresh file:
no "database is locked", no lost row, no lost update (see concurrent_worker.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import GolemEnv
from tests.db import query, race_workers

WORKERS = 20
ROUNDS = 20


def test_twenty_processes_race_on_a_fresh_db_without_losing_anything(
    tmp_path: Path, golem_env: GolemEnv
) -> None:
    db_path = tmp_path / "state" / "vms.db"  # fresh: they race on the first migration too
    assert not db_path.exists()
    outputs = race_workers(str(db_path), WORKERS, ROUNDS, tmp_path / "signals", golem_env.env)
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
