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
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

import requests
import yaml
from google.cloud import firestore

from jobrelay.infra_files import load_infra
from jobrelay.local import authemu
from jobrelay.local.stack import Stack, StackOptions
from jobrelay.settings import DEFAULT_INFRA_DIR, QUEUE_MAX_DISPATCHES_PER_SECOND

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
        at_least: float | None = None,
        note: str = "",
    ) -> bool:
        """Record one figure for results.json, e.g. `figure("submit_latency_ratio.p50", 1.4, budget=1.3)`.

        `key` is dotted: the part before the first dot names the metric, the rest the figure within it.
        With a budget the figure passes when `value <= budget`, with `at_least` when `value >= at_least`;
        returns whether it passed (True without either).
        """
        passed = None
        if budget is not None:
            passed = bool(value <= budget + 1e-9)
        elif at_least is not None:
            passed = bool(value >= at_least - 1e-9)
        entry: dict[str, Any] = {"key": key, "value": value, "unit": unit, "budget": budget, "passed": passed}
        if at_least is not None:
            entry["at_least"] = at_least
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
    """The commit measured, `-dirty` when the work tree differed from it outside the recorded results."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":(exclude)bench/results", ":(exclude)bench/results.*"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if changed else head


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


def raised_infra(directory: Path) -> str:
    """A copy of infra/ whose classes dispatch as fast as Cloud Tasks allows; returns what changed.

    With the configured rates (class A 1,000/s over its shards, B 100/s ...) a throughput run on a
    fast machine would measure the setting; raised to 500/s per shard queue, it measures what the
    API and the worker can do (capacity).
    """
    shutil.copytree(DEFAULT_INFRA_DIR, directory, dirs_exist_ok=True)
    path = directory / "classes.yaml"
    data = yaml.safe_load(path.read_text())
    was = []
    for name, job_class in data["classes"].items():
        shards = job_class.get("shards", 1)
        rates = job_class["rate_limits"]
        was.append(f"{name} {rates['max_dispatches_per_second']:g}/s")
        rates["max_dispatches_per_second"] = QUEUE_MAX_DISPATCHES_PER_SECOND * shards
        rates["max_concurrent_dispatches"] = max(rates["max_concurrent_dispatches"], 1000 * shards)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_infra(directory)  # fails here, not in a service, if the copy is wrong
    return (
        "infra: a copy of infra/ with every class's rate raised to 500 dispatches/s per shard queue "
        f"(capacity, not the configured rate: infra/classes.yaml has {', '.join(was)})"
    )


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


class EmulatorSignIn(requests.auth.AuthBase):
    """`uid` signed in through the stack's Auth emulator; signs in again before the hour-long token expires."""

    def __init__(self, stack: Stack, env: str, uid: str) -> None:
        self.host, self.project, self.uid = stack.auth_host, stack.infra.env(env).project, uid
        self.signed: authemu.SignedIn | None = None

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.signed is None or self.signed.expires_at - time.time() < 300:
            self.signed = authemu.sign_in(self.host, self.project, self.uid)
        r.headers["Authorization"] = f"Bearer {self.signed.id_token}"
        return r


class ApiClient:
    """A signed-in user of one env calling the local API over one keep-alive session."""

    def __init__(self, stack: Stack, uid: str, env: str = ENV, api_url: str | None = None) -> None:
        self.base = f"{api_url or stack.url('api')}/v1/envs/{env}"
        self.session = requests.Session()
        self.session.auth = EmulatorSignIn(stack, env, uid)

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


# -- memory and CPU of a service's whole process tree (bench.throughput, bench.muscle) --------------


def _proc_kb(pid: int, fields: tuple[str, ...], name: str = "status") -> dict[str, int]:
    """`fields` (kB) of /proc/PID/status or smaps_rollup; {} when the process is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in fields:
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def tree_pids(root: int) -> list[int]:
    """`root` and every process below it (a gunicorn master and its workers, a pool and its scripts)."""
    import psutil

    try:
        proc = psutil.Process(root)
        return [root, *(p.pid for p in proc.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by the live processes of `root`'s tree."""
    import psutil

    total = 0.0
    for pid in tree_pids(root):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


class Sampler:
    """Calls `sample()` every `interval` seconds in a thread while used as a context manager."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        raise NotImplementedError


class TreeMemory(Sampler):
    """Peak memory of each service's whole process tree, sampled every `interval` seconds in a thread.

    A Cloud Run instance (or a pool VM) holds the whole tree, so every figure is a sum over the tree
    taken at one instant, and the peak is the largest such sum seen:
    - rss: sum of VmRSS (pages shared between a gunicorn master and its forked worker count twice:
      an upper bound of what the container's memory counter shows);
    - pss: sum of Pss from smaps_rollup (shared pages split between the processes sharing them:
      what the tree really occupies);
    - hwm: sum of VmHWM of the processes alive at that instant (each one's own peak, so it also
      covers spikes between samples; an upper bound).
    A child that has not exec'd yet (same command line as its parent, under PRE_EXEC_AGE seconds old)
    is a fork or vfork on its way to run a script: it shows its parent's whole memory as its own
    (a vfork child even shares its parent's address space, so its PSS too), so it is left out and
    counted under `pre_exec`. A long-lived fork (a gunicorn worker) is counted.
    `names` are services of `stack`; each one's root pid is looked up at every sample (the supervisor
    may have restarted it).
    """

    FIELDS = ("VmRSS", "VmHWM", "Threads")
    PRE_EXEC_AGE = 1.0

    def __init__(self, stack: Stack, names: tuple[str, ...], interval: float = 0.1) -> None:
        super().__init__(interval)
        self.stack = stack
        self.names = names
        self.peak: dict[str, dict[str, float]] = {
            name: {"rss": 0.0, "pss": 0.0, "hwm": 0.0, "processes": 0, "threads": 0, "pre_exec": 0} for name in names
        }
        self.samples = 0

    def sample(self) -> None:
        for name in self.names:
            proc = self.stack.services[name].proc
            if proc is None or not proc.alive():
                continue
            rss = pss = hwm = threads = pre_exec = 0
            pids = tree_pids(proc.pid)
            for p in pids:
                if p != proc.pid and _pre_exec(p, self.PRE_EXEC_AGE):
                    pre_exec += 1
                    continue
                status = _proc_kb(p, self.FIELDS)
                rss += status.get("VmRSS", 0)
                hwm += status.get("VmHWM", 0)
                threads += status.get("Threads", 0)
                pss += _proc_kb(p, ("Pss",), "smaps_rollup").get("Pss", 0)
            peak = self.peak[name]
            for key, value in (("rss", rss / 1024), ("pss", pss / 1024), ("hwm", hwm / 1024)):
                peak[key] = max(peak[key], value)
            peak["processes"] = max(peak["processes"], len(pids))
            peak["pre_exec"] = max(peak["pre_exec"], pre_exec)
            peak["threads"] = max(peak["threads"], threads)
        self.samples += 1

    def line(self, name: str) -> str:
        p = self.peak[name]
        return (
            f"{name}: peak of the tree's sum: RSS {p['rss']:.0f} MB, PSS {p['pss']:.0f} MB, "
            f"VmHWM {p['hwm']:.0f} MB; up to {p['processes']:.0f} processes ({p['pre_exec']:.0f} not yet exec'd, "
            f"left out), {p['threads']:.0f} threads"
        )


def _pre_exec(pid: int, max_age: float) -> bool:
    """Whether `pid` is a young child that still runs its parent's program (forked, not exec'd yet)."""
    import psutil

    try:
        child = psutil.Process(pid)
        parent = child.parent()
        if parent is None or time.time() - child.create_time() > max_age:
            return False
        return bool(child.cmdline() == parent.cmdline() and child.exe() == parent.exe())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def count_jobs(db: firestore.Client, label: str, tag: str, statuses: list[str]) -> int:
    """Jobs labelled `label: tag` in one of `statuses`, by one aggregation query."""
    query = (
        db.collection("jobs")
        .where(filter=firestore.FieldFilter(f"labels.{label}", "==", tag))
        .where(filter=firestore.FieldFilter("status", "in", statuses))
    )
    aggregation: Any = query.count()
    return int(aggregation.get()[0][0].value)
