"""`python -m bench [NAME ...]` (`make bench`): run every benchmark, or the ones named, one after another.

Each runs in its own interpreter (`python -m bench.NAME`), so none inherits another's stack, clients or
environment, and none shares the machine with another. Exits 1 when any missed a target or failed.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import REPO

BENCHMARKS = ("cost", "latency", "coldstart", "soak", "cloudtasks")


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    outcomes: list[tuple[str, int, float]] = []
    for name in names:
        print(f"== bench.{name}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=REPO, check=False).returncode
        outcomes.append((name, code, time.monotonic() - started))
    print("== summary (details in bench/results/NAME.txt)")
    for name, code, seconds in outcomes:
        print(f"{name:<12}{'met' if code == 0 else 'MISSED or failed':<18}{seconds:7.0f} s")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
