"""`python -m bench [NAME ...]` (`make bench`): run every benchmark, or the ones named, one after another.

Each runs in its own interpreter (`python -m bench.NAME`), so none inherits another's stack, clients or
environment, and none shares the machine with another. Afterwards the figures of every benchmark that
has results (`bench/results/NAME.json`, from this run or an earlier one) are gathered into
`bench/results.json` and the table `bench/results.md`, each benchmark marked with the run it came from.
`python -m bench --table` only gathers. A missed budget is marked in the table (**MISS**) and does not
fail the run: it exits 1 only when a benchmark could not run (it wrote no results of this run).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS_DIR, atomic_write

# In the order `make bench` runs them; `soak` is long and has its own `make soak`.
# peers before cpu: bench.cpu prints Celery's CPU per job from bench.peers beside its own figures.
BENCHMARKS = (
    "cost",
    "latency",
    "peers",
    "cpu",
    "throughput",
    "startup",
    "coldstart",
    "muscle",
    "cloudtasks",
    "pipeline",
    "fairness",
    "soak",
)
SUMMARY_JSON = Path(__file__).resolve().parent / "results.json"
SUMMARY_TABLE = Path(__file__).resolve().parent / "results.md"


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    if names == ["--table"]:
        gather()
        return 0
    names = names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    outcomes: list[tuple[str, str, float]] = []
    for name in names:
        print(f"== bench.{name}", flush=True)
        started, began = time.monotonic(), time.time()
        code = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=REPO, check=False).returncode
        outcomes.append((name, outcome(name, code, began), time.monotonic() - started))
    print("== summary (details in bench/results/NAME.txt, every figure in bench/results.md)")
    for name, result, seconds in outcomes:
        print(f"{name:<12}{result:<34}{seconds:7.0f} s")
    gather()
    return 0 if not any(result.startswith(COULD_NOT_RUN) for _, result, _ in outcomes) else 1


COULD_NOT_RUN = "COULD NOT RUN"


def outcome(name: str, code: int, began: float) -> str:
    """What a benchmark's run came to: it wrote results of this run (budgets met or missed), or not."""
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists() or path.stat().st_mtime < began:
        return f"{COULD_NOT_RUN} (exit {code})"
    missed = [f["key"] for f in json.loads(path.read_text())["figures"] if f.get("passed") is False]
    if missed:
        return f"ran; missed {len(missed)} budget(s)"
    return "ran; budgets met" if code == 0 else f"ran (exit {code})"


def gather() -> dict[str, Any]:
    """Write bench/results.json and bench/results.md from every bench/results/NAME.json there is."""
    runs: dict[str, Any] = {}
    for name in BENCHMARKS:
        path = RESULTS_DIR / f"{name}.json"
        if path.exists():
            runs[name] = json.loads(path.read_text())
    metrics: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        for fig in run["figures"]:
            metric, _, part = fig["key"].partition(".")
            entry = {k: v for k, v in fig.items() if k != "key" and v not in (None, "")}
            entry["benchmark"] = name
            metrics.setdefault(metric, {})[part or "value"] = entry
    summary = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": {n: {k: r[k] for k in ("started", "code", "cores", "load")} for n, r in runs.items()},
        "metrics": metrics,
    }
    atomic_write(SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    atomic_write(SUMMARY_TABLE, table(summary))
    print(f"wrote {SUMMARY_JSON.relative_to(REPO)} and {SUMMARY_TABLE.relative_to(REPO)}")
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        "# jobrelay benchmark results",
        "",
        f"Gathered {summary['generated']} by `python -m bench` from `bench/results/*.json`; how to read them:",
        "`bench/README.md`. Ratios compare numbers measured in the same run.",
        "",
        "| metric | figure | value | budget | verdict |",
        "|---|---|---|---|---|",
    ]
    for metric, figures in summary["metrics"].items():
        for part, fig in figures.items():
            budget = fig.get("budget")
            if budget is None and fig.get("at_least") is not None:
                budget = f">= {fig['at_least']}"
            verdict = "" if "passed" not in fig else ("pass" if fig["passed"] else "**MISS**")
            value = fig["value"]
            shown = f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
            unit = f" {fig['unit']}" if fig.get("unit") else ""
            lines.append(f"| {metric} | {part} | {shown}{unit} | {'' if budget is None else budget} | {verdict} |")
    lines += ["", "| benchmark | run started | commit | load (1/5/15 min) |", "|---|---|---|---|"]
    for name, run in summary["runs"].items():
        load = " / ".join(f"{x:.2f}" for x in run["load"])
        lines.append(f"| {name} | {run['started']} | {run['code']} | {load} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
