"""Throughput of one API process and one worker process, and the peak memory of each, on the local stack.

    .venv/bin/python -m bench.throughput [SINGLE_JOBS [BATCH_JOBS]]

Starts the local stack without the pool (API, worker, dead-letter service; no scheduler) on a copy of
infra/ whose classes dispatch at 500/s per shard queue (`bench.common.raised_infra`): the figure is
what one API and one worker can do, not the configured rate of class A. The API is
functions-framework's gunicorn (one worker process, THREADS or 4 x cores threads), the worker is
`jobrelay.serve` (one gunicorn worker, 64 threads); the output states what ran. After a warm-up,
two phases of no-op `echo` jobs in dev, each timed from the first submit until a Firestore count
query (every 0.25 s) sees every job of the phase `succeeded`:
- single: CLIENTS threads, each a different user on its own keep-alive session, POST
  `/v1/envs/dev/jobs` one job at a time (the submit latency they saw is printed too);
- batch: BATCH_CLIENTS threads POST `/v1/envs/dev/jobs:batch` with CHUNK specs per call, a new user
  per call (a user may submit 600 jobs a minute, infra/environments.yaml).
Jobs per second = jobs / (all succeeded - first submit); "accepted" = jobs / time until the last
submit was answered. The CPU seconds each service's process tree used per phase show where the two
cores went, and give the capacity per CPU second: jobs / (API + worker CPU seconds), what one vCPU of
Cloud Run would carry, and the same with the emulators' CPU counted too.

Memory: while everything runs, `bench.common.TreeMemory` samples every 100 ms the whole process tree
of the API and of the worker (gunicorn master + its worker; a Cloud Run instance holds both) and
keeps the peak of the tree's sum: RSS (shared pages of the forked worker counted twice; the figure,
conservative), PSS (shared pages split; what the tree occupies) and VmHWM (each process's own peak;
an upper bound that also covers spikes between samples). Budget: each tree under 200 MB (a Cloud Run
instance starts at 512 MiB). The pool's memory is measured by bench.muscle, where the pool is busy.
Writes what it prints to bench/results/throughput.txt and the figures to bench/results/throughput.json.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.cloud import firestore

from bench.common import (
    ENV,
    FINAL,
    REPO,
    ApiClient,
    Report,
    TreeMemory,
    count_jobs,
    local_stack,
    percentile,
    raised_infra,
    tree_cpu_seconds,
)
from jobrelay.local.stack import Stack

SINGLE_JOBS = 3000
CLIENTS = 16
BATCH_JOBS = 6000
CHUNK = 250
BATCH_CLIENTS = 4
PER_USER = 500  # under the 600 submits a minute one user may make
MEMORY_BUDGET_MB = 200.0
DRAIN_TIMEOUT = 300.0
STALL_SECONDS = 60.0
SERVICES = ("api", "worker")
EMULATORS = ("firestore", "cloudtasks")  # their CPU is printed too


@dataclass
class Phase:
    """One timed run of jobs: when it began, when the last submit was answered, what was submitted."""

    name: str
    tag: str
    jobs: int
    ids: list[str] = field(default_factory=list)
    submit_seconds: list[float] = field(default_factory=list)
    started: float = 0.0
    submitted: float = 0.0
    done: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def seconds(self) -> float:
        return self.done - self.started

    @property
    def rate(self) -> float:
        return len(self.ids) / self.seconds if self.seconds > 0 else 0.0


def echo(tag: str, i: int) -> dict[str, Any]:
    return {"type": "echo", "payload": {"message": str(i)}, "labels": {"bench": tag}}


def count(db: firestore.Client, tag: str, statuses: list[str]) -> int:
    return count_jobs(db, "bench", tag, statuses)


def run_clients(n: int, target: Callable[[int], None]) -> None:
    """Run `target(k)` in n threads; re-raise the first error any of them hit."""
    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            target(k)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]}") from errors[0]


def single(stack: Stack, phase: Phase) -> None:
    """CLIENTS users, one thread each, submitting one job per request until `phase.jobs` are in."""
    per_client = -(-phase.jobs // CLIENTS)

    def client(k: int) -> None:
        api = ApiClient(stack, uid=f"tp-{phase.tag}-{k}")
        for i in range(k * per_client, min(phase.jobs, (k + 1) * per_client)):
            if i % PER_USER == 0 and i != k * per_client:
                api = ApiClient(stack, uid=f"tp-{phase.tag}-{k}-{i}")
            t0 = time.perf_counter()
            job = api.submit(echo(phase.tag, i))
            took = time.perf_counter() - t0
            with phase.lock:
                phase.ids.append(job["id"])
                phase.submit_seconds.append(took)

    run_clients(CLIENTS, client)


def batch(stack: Stack, phase: Phase) -> None:
    """BATCH_CLIENTS threads taking CHUNK-sized calls in turn, a new user for each call."""
    calls = list(range(0, phase.jobs, CHUNK))

    def client(k: int) -> None:
        for start in calls[k::BATCH_CLIENTS]:
            api = ApiClient(stack, uid=f"tp-{phase.tag}-{start}")
            specs = [echo(phase.tag, i) for i in range(start, min(phase.jobs, start + CHUNK))]
            t0 = time.perf_counter()
            jobs = api.batch(specs)
            took = time.perf_counter() - t0
            with phase.lock:
                phase.ids.extend(j["id"] for j in jobs)
                phase.submit_seconds.append(took)

    run_clients(BATCH_CLIENTS, client)


def run_phase(stack: Stack, db: firestore.Client, phase: Phase, submit: Callable[[Stack, Phase], None]) -> None:
    """Submit the phase's jobs and wait until every one is final; fills the phase's times and CPU."""
    roots = {name: stack.services[name].proc for name in SERVICES}
    roots.update({name: stack.emulators[name] for name in EMULATORS})
    cpu0 = {name: tree_cpu_seconds(p.pid) for name, p in roots.items() if p is not None}
    submitter = threading.Thread(target=submit, args=(stack, phase), daemon=True)
    phase.started = time.monotonic()
    submitter.start()
    while submitter.is_alive():
        submitter.join(0.1)
    phase.submitted = time.monotonic()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    last, moved = -1, time.monotonic()
    while time.monotonic() < deadline:
        succeeded = count(db, phase.tag, ["succeeded"])
        if succeeded >= len(phase.ids):
            break
        if succeeded != last:
            last, moved = succeeded, time.monotonic()
        elif time.monotonic() - moved > STALL_SECONDS:
            break  # no job succeeded for a while: something is broken; reported with the statuses
        if count(db, phase.tag, sorted(FINAL)) >= len(phase.ids):
            break  # some ended otherwise; reported with the statuses
        time.sleep(0.25)
    phase.done = time.monotonic()
    phase.cpu = {name: tree_cpu_seconds(p.pid) - cpu0[name] for name, p in roots.items() if p is not None}
    for status in ("succeeded", "dead_lettered", "cancelled", "skipped", "queued", "running", "retrying"):
        n = count(db, phase.tag, [status])
        if n:
            phase.statuses[status] = n


def describe(rep: Report, phase: Phase, unit: str) -> None:
    calls = len(phase.submit_seconds)
    lat = phase.submit_seconds
    rep.add(
        f"{phase.name}: {len(phase.ids)} jobs in {phase.seconds:.1f} s -> {phase.rate:.0f} jobs/s until all succeeded; "
        f"accepted {len(phase.ids) / (phase.submitted - phase.started):.0f} jobs/s "
        f"(last answer after {phase.submitted - phase.started:.1f} s, drain {phase.done - phase.submitted:.1f} s)"
    )
    rep.add(
        f"  {calls} {unit}; latency per call p50 {percentile(lat, 50) * 1000:.0f} ms, "
        f"p99 {percentile(lat, 99) * 1000:.0f} ms"
    )
    cpu = ", ".join(f"{name} {sec:.1f} s ({sec / phase.seconds:.2f} cores)" for name, sec in phase.cpu.items())
    rep.add(f"  CPU used by the process trees: {cpu} (machine: {os.cpu_count()} cores)")
    rep.add("  statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(phase.statuses.items())))


def describe_processes(rep: Report, stack: Stack) -> None:
    """What serves the API and the worker: the command, and gunicorn's workers and threads as configured."""
    cores = os.cpu_count() or 1
    for name in SERVICES:
        svc = stack.services[name]
        command = " ".join(Path(a).name if a.startswith("/") else a for a in svc.argv)
        if "functions_framework" in svc.argv:
            workers = svc.env.get("WORKERS", "1")
            threads = svc.env.get("THREADS") or f"{4 * cores} (functions-framework: 4 x {cores} cores)"
        else:
            module = svc.argv[svc.argv.index("-m") + 1] if "-m" in svc.argv else ""
            source = REPO.joinpath(*module.split("."), "__main__.py")
            found = re.search(r"threads=(\d+)", source.read_text()) if source.exists() else None
            workers = "1 (jobrelay.serve)"
            threads = f"{found.group(1)} ({source.relative_to(REPO)})" if found else "see jobrelay/serve.py"
        rep.add(f"{name}: `{command}` -> gunicorn, workers {workers}, threads {threads}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    single_jobs = int(args[0]) if args else SINGLE_JOBS
    batch_jobs = int(args[1]) if len(args) > 1 else BATCH_JOBS
    run = time.strftime("t%H%M%S")
    rep = Report("throughput", "jobrelay throughput and memory (one API process, one worker process)")
    rep.add(
        f"no-op echo jobs in {ENV}; single: {single_jobs} jobs, {CLIENTS} concurrent clients (users), one job "
        f"per POST /jobs; batch: {batch_jobs} jobs, {BATCH_CLIENTS} concurrent clients, {CHUNK} per POST "
        f"/jobs:batch, a new user per call; jobs/s = jobs / (all succeeded in Firestore - first submit)"
    )
    tmp = tempfile.TemporaryDirectory(prefix="jobrelay-throughput-infra-")
    rep.add(raised_infra(Path(tmp.name)))
    with tmp, local_stack(services=("api", "worker", "deadletter"), infra_dir=Path(tmp.name)) as stack:
        describe_processes(rep, stack)
        db = firestore.Client(project=stack.infra.env(ENV).project)
        with TreeMemory(stack, SERVICES) as memory:
            warm = Phase("warm-up", f"{run}w", 200)
            run_phase(stack, db, warm, single)
            rep.add(f"warm-up: {len(warm.ids)} jobs, {warm.rate:.0f} jobs/s (not counted)")
            one = Phase("single", f"{run}s", single_jobs)
            run_phase(stack, db, one, single)
            describe(rep, one, "POST /jobs")
            many = Phase("batch", f"{run}b", batch_jobs)
            run_phase(stack, db, many, batch)
            describe(rep, many, f"POST /jobs:batch of {CHUNK}")
        for name in SERVICES:
            p = memory.peak[name]
            rep.add(f"  {memory.line(name)}")
            if p["processes"] < 2:
                rep.add(f"  warning: {name}'s tree had {p['processes']:.0f} process(es); expected master + worker")
        rep.add(f"  ({memory.samples} samples, every {memory.interval * 1000:.0f} ms)")
        restarts = {name: stack.services[name].restarts for name in SERVICES}

    ok = True
    rep.add()
    rep.add(f"single {one.rate:.0f} jobs/s, batch {many.rate:.0f} jobs/s (batch / single {many.rate / one.rate:.2f}x)")
    all_done = all(ph.statuses.get("succeeded", 0) == len(ph.ids) for ph in (one, many))
    if not all_done:
        rep.add("NOT every job succeeded: see the statuses above")
    if any(restarts.values()):
        rep.add(f"services restarted during the run: {restarts}")
    rep.figure("throughput.single_jobs_per_s", round(one.rate, 1), unit="jobs/s", note="class rates raised: capacity")
    rep.figure("throughput.batch_jobs_per_s", round(many.rate, 1), unit="jobs/s", note="class rates raised: capacity")
    for ph in (one, many):
        ours = ph.cpu.get("api", 0.0) + ph.cpu.get("worker", 0.0)
        everything = ours + sum(ph.cpu.get(name, 0.0) for name in EMULATORS)
        per_cpu = len(ph.ids) / ours if ours else 0.0
        per_all = len(ph.ids) / everything if everything else 0.0
        rep.add(
            f"{ph.name}: {per_cpu:.0f} jobs per CPU second of API + worker ({ours:.1f} s), "
            f"{per_all:.0f} counting the emulators too ({everything:.1f} s)"
        )
        rep.figure(f"throughput.{ph.name}_jobs_per_cpu_s", round(per_cpu, 1), unit="jobs/CPU-s", note="API + worker")
        rep.figure(f"throughput.{ph.name}_jobs_per_cpu_s_with_emulators", round(per_all, 1), unit="jobs/CPU-s")
    for name in SERVICES:
        p = memory.peak[name]
        key = f"memory.{name}_mb"
        note = f"peak sum of RSS over the process tree; PSS {p['pss']:.0f} MB, VmHWM sum {p['hwm']:.0f} MB"
        passed = rep.figure(key, round(p["rss"], 1), unit="MB", budget=MEMORY_BUDGET_MB, note=note)
        rep.figure(f"memory.{name}_pss_mb", round(p["pss"], 1), unit="MB", note="peak sum of PSS over the tree")
        ok &= passed
        rep.add(
            f"{key:<22}{p['rss']:7.1f} MB (tree RSS sum; PSS {p['pss']:.0f})  budget {MEMORY_BUDGET_MB:.0f}  "
            f"{'PASS' if passed else 'FAIL'}"
        )
    rep.add(f"result: {'PASS' if ok and all_done else 'FAIL'}")
    rep.write()
    if not all_done:
        return 1  # the run itself went wrong: not a missed budget
    return 0


if __name__ == "__main__":
    sys.exit(main())
