"""``make bench``: run every benchmark module in ``bench/`` (see bench/__init__.py).

python -m bench.run                    # all of them
python -m bench.run startup            # only these
python -m bench.run startup -- --runs 5 --no-write
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable
from typing import cast

import bench

NOT_BENCHMARKS = {"run", "report"}

Main = Callable[[list[str]], int | None]


def discover() -> dict[str, Main]:
    """Every ``bench/<name>.py`` with a ``main(argv)``, by name."""
    found: dict[str, Main] = {}
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in NOT_BENCHMARKS or info.ispkg:
            continue
        module = importlib.import_module(f"bench.{info.name}")
        main = getattr(module, "main", None)
        if callable(main):
            found[info.name] = cast(Main, main)
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        split = argv.index("--")
        names, passed = argv[:split], argv[split + 1 :]
    else:
        names, passed = argv, []
    available = discover()
    unknown = [name for name in names if name not in available]
    if unknown:
        print(
            f"Unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(available)}",
            file=sys.stderr,
        )
        return 2
    failed = []
    for name in names or list(available):
        print(f"== bench.{name}", flush=True)
        started = time.perf_counter()
        try:
            code = available[name](list(passed)) or 0
        except SystemExit as stop:  # argparse, or a benchmark giving up with a message
            code = stop.code if isinstance(stop.code, int) else 1
            if not isinstance(stop.code, int) and stop.code is not None:
                print(stop.code, file=sys.stderr)
        except Exception:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            code = 1
        print(
            f"== bench.{name}: exit {code} in {time.perf_counter() - started:.1f} s\n", flush=True
        )
        if code:
            failed.append(name)
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
