"""CPU seconds per 1,000 jobs: jobrelay's API plus worker against a bare process making the same Google calls.

    .venv/bin/python -m bench.cpu [JOBS [ROUNDS]]

What a job costs in CPU besides its Google calls (the cloud bills the API's and the worker's CPU).
Starts the local stack on a copy of infra/ with every class's dispatch rate raised (no queue holds
jobs back) and `bench.bare` beside it: one process that creates each job's document and task and
serves the task's delivery (read, claim, finish): the calls alone, with the same clients. In ABBA
rounds (bare, jobrelay, jobrelay, bare ...) of JOBS no-op jobs each (default 1,000), per mode:
- batch: jobrelay gets `POST /jobs:batch` of CHUNK specs (one user per call, from this process);
  the bare process commits CHUNK document creates at once, then creates their tasks concurrently;
- single: jobrelay gets one `POST /jobs` per job from SENDERS threads; the bare process creates one
  document and then its task at a time, in SENDERS threads (no HTTP on its submit side at all).
A round runs from the first submit until a count query sees every job succeeded. CPU = user +
system seconds of the process trees over the round (jobrelay: the API's and the worker's gunicorn
master and worker; bare: its one process); the emulators' CPU is printed apart. Budget (batch):
API + worker <= 1.25x the bare process. Celery's figure from bench.peers (worker + Redis) is
printed beside it for context. Writes bench/results/cpu.txt and cpu.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from google.cloud import firestore

from bench import floor
from bench.common import (
    ENV,
    REPO,
    RESULTS_DIR,
    ApiClient,
    Report,
    count_jobs,
    local_stack,
    median,
    raised_infra,
    tree_cpu_seconds,
)
from bench.latency import floor_service_env
from jobrelay.local import procs
from jobrelay.local.stack import Stack

JOBS = 1000
ROUNDS = 4  # per mode and subject, ABBA
CHUNK = 250
SENDERS = 8
BUDGET = 1.25
TIMEOUT = 180.0


@dataclass
class Round:
    jobs: int
    seconds: float
    cpu: dict[str, float]  # process tree -> CPU seconds over the round


@dataclass
class Measured:
    rounds: dict[tuple[str, str], list[Round]] = field(default_factory=dict)  # (mode, subject) -> rounds


def wait_all(db: firestore.Client, collection: str, tag: str, n: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        q = db.collection(collection).where(filter=firestore.FieldFilter("labels.bench", "==", tag))
        q = q.where(filter=firestore.FieldFilter("status", "==", "succeeded"))
        if int(q.count().get()[0][0].value) >= n:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{tag}: not all {n} jobs succeeded within {TIMEOUT:.0f} s")


class Subjects:
    def __init__(self, stack: Stack, bare_url: str, bare_pid: int) -> None:
        self.stack = stack
        self.db = firestore.Client(project=stack.infra.env(ENV).project)
        self.bare_url = bare_url
        self.trees = {
            "bare": {"bare": bare_pid},
            "jobrelay": {name: service_pid(stack, name) for name in ("api", "worker")},
        }
        self.emulators = {name: stack.emulators[name].pid for name in ("firestore", "cloudtasks")}
        self.run_id = time.strftime("c%H%M%S")

    def cpu(self, subject: str) -> dict[str, float]:
        trees = {**self.trees[subject], **self.emulators}
        return {name: tree_cpu_seconds(pid) for name, pid in trees.items()}

    def round(self, mode: str, subject: str, n: int, k: int) -> Round:
        tag = f"{self.run_id}-{mode}-{subject}-{k}"
        before = self.cpu(subject)
        started = time.perf_counter()
        if subject == "bare":
            body = {"n": n, "tag": tag, "batch": CHUNK if mode == "batch" else 1, "threads": SENDERS}
            requests.post(f"{self.bare_url}/v1/submit", json=body, timeout=TIMEOUT).raise_for_status()
            wait_all(self.db, floor.COLLECTION, tag, n)
        else:
            self.jobrelay(mode, tag, n)
            if count_jobs(self.db, "bench", tag, ["succeeded"]) < n:
                wait_all(self.db, "jobs", tag, n)
        seconds = time.perf_counter() - started
        after = self.cpu(subject)
        return Round(n, seconds, {name: after[name] - before[name] for name in after})

    def jobrelay(self, mode: str, tag: str, n: int) -> None:
        def spec(i: int) -> dict[str, object]:
            return {"type": "echo", "payload": {"message": ""}, "labels": {"bench": tag}}

        if mode == "batch":
            for b, start in enumerate(range(0, n, CHUNK)):
                ApiClient(self.stack, uid=f"{tag}-{b}").batch([spec(i) for i in range(start, min(n, start + CHUNK))])
            return
        errors: list[BaseException] = []

        def sender(k: int) -> None:
            try:
                api = ApiClient(self.stack, uid=f"{tag}-s{k}")
                for i in range(k, n, SENDERS):
                    api.submit(spec(i))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(SENDERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"a sender failed: {errors[0]}") from errors[0]


def service_pid(stack: Stack, name: str) -> int:
    proc = stack.services[name].proc
    if proc is None:
        raise RuntimeError(f"{name} is not running")
    return proc.pid


def start_bare(stack: Stack) -> tuple[procs.Proc, str]:
    port = procs.free_port()
    env = stack.infra.env(ENV)
    queues = ",".join(
        f"projects/{env.project}/locations/{env.region}/queues/{q}" for q in stack.infra.classes["A"].queues
    )
    run_url = f"http://127.0.0.1:{port}/v1/run"
    proc = procs.start(
        "bare",
        [sys.executable, "-m", "bench.bare", str(port)],
        env={**floor_service_env(stack, run_url), "FLOOR_QUEUES": queues},
        log_path=stack.logs / "bare.log",
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    procs.wait_until(lambda: requests.get(url, timeout=1).ok, timeout=30, what="bare process", proc=proc)
    return proc, url


def measure(jobs: int, rounds: int, rep: Report) -> Measured:
    out = Measured()
    with tempfile.TemporaryDirectory(prefix="jobrelay-cpu-infra-") as tmp:
        rep.add(raised_infra(Path(tmp)))
        with local_stack(services=("api", "worker", "deadletter"), infra_dir=Path(tmp)) as stack:
            bare, url = start_bare(stack)
            try:
                subjects = Subjects(stack, url, bare.pid)
                for mode in ("batch", "single"):
                    subjects.round(mode, "jobrelay", 200, -1)  # warm-up, not counted
                    subjects.round(mode, "bare", 200, -1)
                    for k in range(rounds):
                        order = ("bare", "jobrelay") if k % 2 == 0 else ("jobrelay", "bare")
                        for subject in order:
                            r = subjects.round(mode, subject, jobs if mode == "batch" else jobs // 2, k)
                            out.rounds.setdefault((mode, subject), []).append(r)
                            rep.add(
                                f"{mode:<7}{subject:<9}round {k + 1}: {r.jobs} jobs in {r.seconds:5.1f} s; CPU s "
                                + ", ".join(f"{name} {sec:.2f}" for name, sec in r.cpu.items())
                            )
                restarts = sum(s.restarts for s in stack.services.values())
                rep.add(f"service restarts: {restarts}")
            finally:
                bare.stop()
    return out


def per_1000(rounds: list[Round], names: tuple[str, ...]) -> float:
    """Median over the rounds of CPU seconds per 1,000 jobs, summed over `names`."""
    return median(1000 * sum(r.cpu[n] for n in names) / r.jobs for r in rounds)


def celery_figure() -> float | None:
    path = RESULTS_DIR / "peers.json"
    if not path.exists():
        return None
    for fig in json.loads(path.read_text())["figures"]:
        if fig["key"] == "peers.celery_cpu_s_per_1000_jobs":
            return float(fig["value"])
    return None


def report(rep: Report, m: Measured) -> None:
    rep.add()
    rep.add("CPU seconds per 1,000 jobs, median of the rounds (same run):")
    for mode in ("batch", "single"):
        bare = per_1000(m.rounds[(mode, "bare")], ("bare",))
        ours = per_1000(m.rounds[(mode, "jobrelay")], ("api", "worker"))
        api = per_1000(m.rounds[(mode, "jobrelay")], ("api",))
        worker = per_1000(m.rounds[(mode, "jobrelay")], ("worker",))
        emulators = {s: per_1000(m.rounds[(mode, s)], ("firestore", "cloudtasks")) for s in ("bare", "jobrelay")}
        ratio = ours / bare
        budget = BUDGET if mode == "batch" else None
        verdict = "" if budget is None else ("  pass" if ratio <= budget else "  MISS")
        rep.add(
            f"  {mode:<7}bare {bare:5.2f}   jobrelay API + worker {ours:5.2f} (API {api:.2f}, worker {worker:.2f})"
            f"   ratio {ratio:.2f}" + (f" (budget {budget})" if budget else " (context)") + verdict
        )
        rep.add(
            f"          emulators behind them: {emulators['bare']:.2f} (bare) vs {emulators['jobrelay']:.2f} (jobrelay)"
        )
        rep.figure(f"cpu_per_1000_jobs.{mode}_bare_s", round(bare, 3), unit="s")
        rep.figure(
            f"cpu_per_1000_jobs.{mode}_jobrelay_s",
            round(ours, 3),
            unit="s",
            note=f"API {api:.2f} + worker {worker:.2f}",
        )
        rep.figure(
            f"cpu_per_1000_jobs.{mode}_ratio",
            round(ratio, 3),
            unit="x",
            budget=budget,
            note="API + worker / bare process",
        )
    celery = celery_figure()
    if celery is not None:
        rep.add(f"  Celery worker + Redis (bench.peers, its latest run; context): {celery:.2f}")
        rep.figure("cpu_per_1000_jobs.celery_s", celery, unit="s", note="from bench/results/peers.json")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    jobs = int(args[0]) if args else JOBS
    rounds = int(args[1]) if len(args) > 1 else ROUNDS
    rep = Report("cpu", "CPU per job: jobrelay's API + worker against the bare Google calls")
    report(rep, measure(jobs, rounds, rep))
    rep.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
