"""What the budget benchmarks share: reports, verdicts, percentiles, the local stack, API callers, waiting.

Every benchmark prints its lines as it goes and writes the same lines to `bench/results/<name>.txt`,
and its figures (`Report.figure`) to `bench/results/<name>.json`; `python -m bench` gathers those into
`bench/results.json` and the table `bench/results.md`. Ratios compare numbers measured in the same run
(the machine is shared, so absolute numbers drift).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import requests

from jobrelay.local.stack import Stack, StackOptions
from jobrelay.local.tokens import emulator_id_token

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENV = "dev"  # the env that offers the test job types (echo)
FINAL = frozenset({"succeeded", "dead_lettered", "cancelled", "skipped"})


class Report:
    """Lines printed as they come and written to bench/results/<name>.txt at the end."""

    def __init__(self, name: str, title: str) -> None:
        self.name = name
        self.title = title
        self.lines: list[str] = []
        self.figures: list[dict[str, Any]] = []
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.load = os.getloadavg()
        self.code = code_version()
        load = ", ".join(f"{x:.2f}" for x in self.load)
        self.add(f"{title}, {time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} cores, load {load}")
        self.add(f"code: {self.code}")

    def add(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def figure(
        self,
        key: str,
        value: float | int,
        *,
        unit: str = "",
        budget: float | None = None,
        note: str = "",
    ) -> bool:
        """Record one figure for results.json, e.g. `figure("submit_latency_ratio.p50", 1.4, budget=1.3)`.

        `key` is dotted: the part before the first dot names the metric, the rest the figure within it.
        With a budget the figure passes when `value <= budget`; returns whether it passed (True without one).
        """
        passed = None if budget is None else bool(value <= budget + 1e-9)
        entry: dict[str, Any] = {"key": key, "value": value, "unit": unit, "budget": budget, "passed": passed}
        if note:
            entry["note"] = note
        self.figures.append(entry)
        return passed is not False

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.txt"
        atomic_write(path, "\n".join(self.lines) + "\n")
        doc = {
            "benchmark": self.name,
            "title": self.title,
            "started": self.started,
            "cores": os.cpu_count(),
            "load": [round(x, 2) for x in self.load],
            "code": self.code,
            "figures": self.figures,
        }
        atomic_write(RESULTS_DIR / f"{self.name}.json", json.dumps(doc, indent=2) + "\n")
        return path


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def code_version() -> str:
    """The commit measured, and whether the work tree differed from it (others edit it too)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def verdict(value: float, budget: float) -> tuple[bool, str]:
    """(passed, 'ratio 0.83 of budget  PASS') for a value that must stay at or under `budget`."""
    ratio = value / budget if budget else math.inf
    ok = value <= budget + 1e-9
    return ok, f"{ratio:5.2f}x budget  {'PASS' if ok else 'FAIL'}"


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    return percentile(values, 50)


@contextlib.contextmanager
def local_stack(services: tuple[str, ...], **options: Any) -> Iterator[Stack]:
    """A local stack with its own state directory (removed afterwards), no scheduler unless asked."""
    options.setdefault("tick_seconds", 0)
    with tempfile.TemporaryDirectory(prefix="jobrelay-bench-") as tmp:
        stack = Stack(StackOptions(state_dir=Path(tmp), services=services, **options))
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


class ApiClient:
    """A signed-in user of one env calling the local API over one keep-alive session."""

    def __init__(self, stack: Stack, uid: str, env: str = ENV) -> None:
        self.base = f"{stack.url('api')}/v1/envs/{env}"
        self.session = requests.Session()
        token = emulator_id_token(stack.infra.env(env).project, uid, lifetime_seconds=6 * 3600)
        self.session.headers["Authorization"] = f"Bearer {token}"

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.session.post(f"{self.base}/jobs", json=spec, timeout=30)
        if r.status_code != 202:
            raise RuntimeError(f"submit answered {r.status_code}: {r.text[:300]}")
        job: dict[str, Any] = r.json()
        return job

    def batch(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = self.session.post(f"{self.base}/jobs:batch", json={"jobs": specs}, timeout=120)
        if r.status_code != 202:
            raise RuntimeError(f"batch answered {r.status_code}: {r.text[:300]}")
        jobs: list[dict[str, Any]] = r.json()["jobs"]
        return jobs
