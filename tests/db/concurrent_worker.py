"""One of many processes hammering one database at once (see test_concurrency.py).

Usage: ``python concurrent_worker.py DB_PATH|POSTGRESQL_URL WORKER_ID ROUNDS READY_DIR``

Imports first, announces itself with ``READY_DIR/ready-ID``, waits for
``READY_DIR/go`` so that every worker opens the (fresh) database at the same
moment, then for each round: inserts its own VM, increments the shared counter
VM's ``cpu`` in a read-modify-write transaction, and reads its own rows back.
Prints one JSON line on success; any error goes to stderr with exit code 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from pathlib import Path

from sqlalchemy import func, select

from requestor.db.engine import Database
from requestor.db.models import VM, VMStatus

COUNTER = "shared-counter"


def _vm(name: str, cpu: int = 1) -> VM:
    return VM(
        name=name,
        provider_ip="127.0.0.1",
        provider_vm_name=name,
        cpu=cpu,
        memory=1,
        storage=10,
        status=VMStatus.RUNNING,
    )


async def work(location: Path | str, worker: int, rounds: int) -> dict[str, int]:
    prefix = f"w{worker:02d}-"
    async with Database(location) as db:
        for i in range(rounds):
            async with db.write() as session:
                session.add(_vm(f"{prefix}{i:03d}"))
            # Read-modify-write of one shared row: a lost update shows in the total.
            async with db.write() as session:
                counter = await session.scalar(select(VM).where(VM.name == COUNTER))
                if counter is None:
                    session.add(_vm(COUNTER, cpu=1))
                else:
                    counter.cpu += 1
            async with db.read() as session:
                mine = await session.scalar(
                    select(func.count()).select_from(VM).where(VM.name.startswith(prefix))
                )
            if mine != i + 1:
                raise AssertionError(f"worker {worker} sees {mine} own rows after {i + 1} inserts")
        async with db.read() as session:
            total = await session.scalar(select(func.count()).select_from(VM))
    return {"worker": worker, "rounds": rounds, "seen_total": int(total or 0)}


def main(argv: list[str]) -> int:
    worker, rounds, ready_dir = int(argv[1]), int(argv[2]), Path(argv[3])
    location: Path | str = argv[0] if argv[0].startswith("postgresql") else Path(argv[0])
    (ready_dir / f"ready-{worker}").touch()
    deadline = time.monotonic() + 60
    while not (ready_dir / "go").exists():
        if time.monotonic() > deadline:
            print("never got the go signal", file=sys.stderr)
            return 1
        time.sleep(0.005)
    try:
        result = asyncio.run(work(location, worker, rounds))
    except BaseException:
        traceback.print_exc()
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
