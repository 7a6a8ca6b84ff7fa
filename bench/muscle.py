"""The Elastic Muscle pool: jobs per second, and how long prod work waits while dev work fills the pool.

    .venv/bin/python -m bench.muscle [JOBS]

Starts the local stack with the pool on one VM of SLOTS (4) job slots: dev's `muscle_concurrency` is 4,
so dev work alone can fill the VM (with the default 6 slots dev would leave 2 free and prod would never
wait). The job is the allow-listed `selfcheck` script (infra/scripts.yaml; allowed in dev, stg and prod,
so the repo's infra/ is used as is), submitted through the API like any pool job (class D, route
muscle: API -> Pub/Sub -> pool -> a `python3` subprocess). The services get PATH without pyenv's
shims: on this machine `python3` is otherwise a bash shim that forks a dozen processes per job (the
output prints both spawn times); a pool VM's image has a plain interpreter.

Phases, in one run:
1. idle: PROBES prod jobs (`selfcheck`, 1 line, no pause), one at a time on an idle pool;
2. throughput: JOBS short dev jobs (the same script) in one batch call; jobs/s from the submit until a
   Firestore count query sees them all final (dev's cap 4 = the VM's 4 slots); the median time a job
   holds its slot and the script's own time show where a slot's turnover goes;
3. loaded: dev jobs of 2-6 lines, one a second (ends spread out), keep all 4 slots busy with at least
   DEV_BACKLOG more waiting (topped up before every probe); 2 x PROBES prod jobs go in one at a time,
   each only once every slot runs dev work;
4. idle again: the dev backlog is cancelled, and once the pool is empty PROBES more prod jobs.
A probe's start latency = the document's `started_at` (written by the pool when it claims the job) -
the wall-clock time just before the submit (same machine clock). Each probe waits a random 0-1 s
(idle) or 0-2 s (loaded) first, so it lands at a random point of the pool's 0.5 s poll and of the dev
jobs' runs; back-to-back probes would line up with both and measure the alignment. Idle pools phases
1 and 4 (ABA: a drift in load shows as a difference between them). Read the loaded / idle ratio
across runs. For contrast the output shows how long the dev jobs of phase 3 waited, and checks that
no prod probe waited longer than the longest dev job runs (prod goes before the dev backlog).

Memory: `bench.common.TreeMemory` samples the pool's whole process tree (the pool process and the
scripts it runs; a VM holds both) every 100 ms through all phases, and reports the peak of the tree's
sum of RSS (the `memory.pool_mb` figure, budget 200 MB), of PSS and of VmHWM; the pool process alone
and the largest process under it are printed too. A script's process that has not exec'd yet (forked
from the pool, it shows the pool's whole memory as its own) is left out of the sums; without that
rule one run under load 24 summed 255 MB of RSS for a pool of 86 MB running 4 scripts of ~10 MB.
Writes bench/results/muscle.txt and .json.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import requests
from google.cloud import firestore

from bench.common import FINAL, ApiClient, Report, Sampler, TreeMemory, count_jobs, local_stack, percentile, tree_pids
from jobrelay.local.stack import Stack

SLOTS = 4
JOBS = 300
PROBES = 10  # prod probes per idle phase; the loaded phase runs twice as many
DEV_LINES = (2, 6)  # a dev job prints between this many lines, one a second (so their ends spread out)
DEV_BACKLOG = 6
IDLE_JITTER = 1.0  # seconds; a random pause before each probe (see probe())
LOADED_JITTER = 2.0
MEMORY_BUDGET_MB = 200.0


def selfcheck(lines: int, pause: float, tag: str) -> dict[str, Any]:
    return {
        "type": "script",
        "payload": {"script": "selfcheck", "args": {"lines": str(lines), "pause": str(pause), "exit_code": "0"}},
        "labels": {"bench": tag},
    }


def at(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class User(ApiClient):
    """ApiClient plus reading a job back."""

    def get(self, job_id: str) -> dict[str, Any]:
        r = self.session.get(f"{self.base}/jobs/{job_id}", timeout=30)
        r.raise_for_status()
        job: dict[str, Any] = r.json()
        return job

    def wait(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job["status"] in FINAL:
                return job
            time.sleep(0.05)
        raise RuntimeError(f"job {job_id} not final after {timeout:.0f} s")

    def cancel(self, job_id: str) -> None:
        self.session.post(f"{self.base}/jobs/{job_id}:cancel", timeout=30)


def count(db: firestore.Client, tag: str, statuses: list[str]) -> int:
    return count_jobs(db, "bench", tag, statuses)


def probe(prod: User, tag: str, jitter: float) -> float:
    """After a random pause, submit one prod job and wait until it is final; seconds from submit to start.

    The pause makes the submit fall at a random point of the pool's 0.5 s poll and of the running dev
    jobs; probes one right after another would otherwise line up with both and measure the alignment.
    """
    time.sleep(random.uniform(0, jitter))
    t0 = time.time()
    job = prod.submit(selfcheck(1, 0, tag))
    done = prod.wait(job["id"])
    if done["status"] != "succeeded":
        raise RuntimeError(f"prod probe {job['id']} ended {done['status']}: {done.get('error')}")
    return at(done["started_at"]) - t0


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not after {timeout:.0f} s")


def pool_running(stack: Stack) -> int:
    """Jobs the pool runs now, from its health endpoint."""
    r = requests.get(f"{stack.url('muscle')}/healthz", timeout=5)
    return int(r.json()["running"])


class DevLoad:
    """Dev users keeping the pool full: a backlog of long-ish dev jobs, topped up on request."""

    def __init__(self, stack: Stack, db: firestore.Client, tag: str) -> None:
        self.stack, self.db, self.tag = stack, db, tag
        self.ids: list[str] = []
        self.user = User(stack, uid=f"muscle-dev-{tag}", env="dev")

    def top_up(self) -> None:
        waiting = count(self.db, self.tag, ["queued"])
        if waiting < DEV_BACKLOG:
            specs = [selfcheck(random.randint(*DEV_LINES), 1, self.tag) for _ in range(2 * DEV_BACKLOG - waiting)]
            self.ids.extend(j["id"] for j in self.user.batch(specs))

    def saturated(self) -> bool:
        return count(self.db, self.tag, ["running"]) >= SLOTS and pool_running(self.stack) >= SLOTS

    def cancel_waiting(self) -> int:
        waiting = [
            s.id
            for s in self.db.collection("jobs")
            .where(filter=firestore.FieldFilter("labels.bench", "==", self.tag))
            .where(filter=firestore.FieldFilter("status", "==", "queued"))
            .stream()
        ]
        for job_id in waiting:
            self.user.cancel(job_id)
        return len(waiting)

    def waits(self) -> list[float]:
        """Seconds from created to started of every dev job that started."""
        out = []
        for s in (
            self.db.collection("jobs")
            .where(filter=firestore.FieldFilter("labels.bench", "==", self.tag))
            .select(["created_at", "started_at"])
            .stream()
        ):
            doc = s.to_dict() or {}
            if doc.get("started_at") and doc.get("created_at"):
                out.append((doc["started_at"] - doc["created_at"]).total_seconds())
        return out


class PoolAlone(Sampler):
    """Peak RSS of the pool process by itself, and of the largest single process under it, sampled."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(0.1)
        self.stack = stack
        self.peak_mb = 0.0
        self.child_peak_mb = 0.0
        self.scripts_peak = 0

    def sample(self) -> None:
        proc = self.stack.services["muscle"].proc
        pids = tree_pids(proc.pid) if proc is not None else []
        if pids:
            self.peak_mb = max(self.peak_mb, rss_mb(pids[0]))
            self.child_peak_mb = max([self.child_peak_mb, *(rss_mb(pid) for pid in pids[1:])])
            self.scripts_peak = max(self.scripts_peak, len(pids) - 1)


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0) / 1024
    except OSError:
        return 0.0


def plain_path() -> str:
    """PATH without pyenv's shims, so a script's `python3` is an interpreter, as on a pool VM's image.

    Here `python3` on PATH is a pyenv shim: a bash script that starts about a dozen more processes
    (pyenv-exec, pyenv-which, hooks) before the interpreter, on every job.
    """
    parts = [d for d in os.environ.get("PATH", "").split(os.pathsep) if "/.pyenv/shims" not in d]
    return os.pathsep.join(parts)


def spawn_seconds(path: str, n: int = 10) -> float:
    """Median seconds to run `python3 -c pass` with this PATH."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["python3", "-c", "pass"], env={**os.environ, "PATH": path}, check=True)
        times.append(time.perf_counter() - t0)
    return percentile(times, 50)


def breakdown(db: firestore.Client, tag: str) -> dict[str, float]:
    """Median seconds per job of a tag: waiting (created -> started), running (started -> finished), script."""
    waits, runs, script = [], [], []
    for s in (
        db.collection("jobs")
        .where(filter=firestore.FieldFilter("labels.bench", "==", tag))
        .select(["created_at", "started_at", "finished_at", "result"])
        .stream()
    ):
        doc = s.to_dict() or {}
        if doc.get("started_at") and doc.get("finished_at"):
            waits.append((doc["started_at"] - doc["created_at"]).total_seconds())
            runs.append((doc["finished_at"] - doc["started_at"]).total_seconds())
        result = doc.get("result")
        if isinstance(result, dict) and "seconds" in result:
            script.append(float(result["seconds"]))
    return {"wait": percentile(waits, 50), "run": percentile(runs, 50), "script": percentile(script, 50)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    jobs = int(args[0]) if args else JOBS
    run = time.strftime("m%H%M%S")
    lo, hi = DEV_LINES
    rep = Report("muscle", "jobrelay Elastic Muscle pool: throughput and prod start latency under dev load")
    rep.add(
        f"one pool VM with {SLOTS} slots (dev cap {SLOTS}); job: script `selfcheck` (a python3 subprocess); "
        f"{jobs} short dev jobs for throughput; prod probes: {PROBES} idle, {2 * PROBES} while {SLOTS} dev jobs "
        f"of {lo}-{hi} x 1 s run with >= {DEV_BACKLOG} waiting, {PROBES} idle again; infra/ as in the repo "
        f"(selfcheck is allowed in prod)"
    )
    path = plain_path()
    shim, plain = spawn_seconds(os.environ.get("PATH", "")), spawn_seconds(path)
    rep.add(
        f"services get PATH without pyenv's shims: `python3 -c pass` takes {plain * 1000:.0f} ms so, "
        f"{shim * 1000:.0f} ms through the shim (median of 10, measured now)"
    )
    with local_stack(
        services=("api", "worker", "deadletter", "muscle"),
        muscle_slots=SLOTS,
        drain_grace_seconds=2.0,
        pool_min_backoff=1,
        extra_env={"PATH": path},
    ) as stack:
        caps = {e: stack.infra.env(e).muscle_concurrency for e in ("prod", "stg", "dev")}
        argv = " ".join(stack.services["muscle"].argv[1:])
        rep.add(f"per-env caps (infra/environments.yaml): {caps}; pool process: python {argv}")
        dev_db = firestore.Client(project=stack.infra.env("dev").project)
        prod = User(stack, uid=f"muscle-prod-{run}", env="prod")
        with TreeMemory(stack, ("muscle",)) as memory, PoolAlone(stack) as alone:
            probe(prod, f"{run}w", 0)  # warm-up
            idle = [probe(prod, f"{run}i", IDLE_JITTER) for _ in range(PROBES)]

            tag = f"{run}t"
            dev = User(stack, uid=f"muscle-tp-{run}", env="dev")
            started = time.monotonic()
            ids = [j["id"] for j in dev.batch([selfcheck(1, 0, tag) for _ in range(jobs)])]
            submitted = time.monotonic()
            wait_until(lambda: count(dev_db, tag, sorted(FINAL)) >= len(ids), 300, "throughput jobs final")
            seconds = time.monotonic() - started
            succeeded = count(dev_db, tag, ["succeeded"])
            rate = len(ids) / seconds
            per_job = breakdown(dev_db, tag)

            load = DevLoad(stack, dev_db, f"{run}d")
            loaded: list[float] = []
            unsaturated = 0
            for _ in range(2 * PROBES):
                load.top_up()
                try:
                    wait_until(load.saturated, 60, "dev work in every slot")
                except RuntimeError:
                    unsaturated += 1
                loaded.append(probe(prod, f"{run}l", LOADED_JITTER))
            cancelled = load.cancel_waiting()
            dev_waits = load.waits()
            wait_until(lambda: pool_running(stack) == 0, 120, "pool empty")
            idle += [probe(prod, f"{run}j", IDLE_JITTER) for _ in range(PROBES)]

    idle_before, idle_after = idle[:PROBES], idle[PROBES:]
    p50, p99 = percentile(loaded, 50), percentile(loaded, 99)
    i50, i99 = percentile(idle, 50), percentile(idle, 99)
    rep.add(
        f"throughput: {len(ids)} dev jobs in {seconds:.1f} s -> {rate:.1f} jobs/s until all final "
        f"({succeeded} succeeded; submitted in one batch in {submitted - started:.1f} s)"
    )
    rep.add(
        f"  per job (median): claimed {per_job['run']:.2f} s before finished, the script itself "
        f"{per_job['script']:.2f} s; so a slot turns over every ~{SLOTS / rate:.2f} s"
    )
    rep.add("prod start latency, submit -> started_at (s):      p50     p99     max")
    for name, values in (
        ("idle, before", idle_before),
        ("idle, after", idle_after),
        ("idle, both", idle),
        ("pool full of dev work", loaded),
    ):
        rep.add(
            f"  {name:<26}{len(values):>4} jobs  {percentile(values, 50):6.2f}  "
            f"{percentile(values, 99):6.2f}  {max(values):6.2f}"
        )
    rep.add(f"  loaded / idle: p50 {p50 / i50:.2f}x, p99 {p99 / i99:.2f}x")
    if unsaturated:
        rep.add(f"  {unsaturated} loaded probes went in while not every slot ran dev work (waited 60 s)")
    rep.add(
        f"dev jobs of the loaded phase: {len(load.ids)} submitted, {len(dev_waits)} started, "
        f"{cancelled} cancelled at the end; their wait to start p50 {percentile(dev_waits, 50):.1f} s, "
        f"max {max(dev_waits, default=0):.1f} s"
    )
    prod_first = max(loaded) <= hi + 1.0
    rep.add(
        f"no prod probe waited longer than the longest dev job runs ({hi} s, + 1 s for the pool's 0.5 s poll "
        f"and the claim): {'yes' if prod_first else 'NO'} (max {max(loaded):.2f} s)"
    )
    p = memory.peak["muscle"]
    rep.add(f"memory: {memory.line('muscle')}")
    rep.add(
        "  (a script's process is forked from the pool and shows the pool's whole memory as its own until it "
        "execs: such processes are left out of the sums)"
    )
    rep.add(
        f"  the pool process alone: peak RSS {alone.peak_mb:.0f} MB; up to {alone.scripts_peak} processes below, "
        f"the largest {alone.child_peak_mb:.0f} MB RSS ({memory.samples} samples every {memory.interval * 1000:.0f} ms)"
    )
    rep.figure("muscle.jobs_per_s", round(rate, 2), unit="jobs/s", note=f"{SLOTS} slots, dev only, selfcheck 1 line")
    rep.figure("muscle.prod_start_p50_s", round(p50, 3), unit="s", note="pool full of dev work")
    rep.figure("muscle.prod_start_p99_s", round(p99, 3), unit="s", note="pool full of dev work")
    rep.figure("muscle.prod_start_idle_p50_s", round(i50, 3), unit="s")
    rep.figure("muscle.prod_start_idle_p99_s", round(i99, 3), unit="s")
    rep.figure("muscle.prod_start_ratio_p50", round(p50 / i50, 2), unit="x", note="loaded / idle, same run")
    rep.figure("muscle.prod_start_ratio_p99", round(p99 / i99, 2), unit="x", note="loaded / idle, same run")
    note = f"peak RSS sum over the pool's tree (pool + scripts); PSS {p['pss']:.0f} MB; pool alone {alone.peak_mb:.0f}"
    ok = rep.figure("memory.pool_mb", round(p["rss"], 1), unit="MB", budget=MEMORY_BUDGET_MB, note=note)
    rep.figure("memory.pool_pss_mb", round(p["pss"], 1), unit="MB", note="peak sum of PSS over the tree")
    rep.add(
        f"{'memory.pool_mb':<22}{p['rss']:7.1f} MB (tree RSS sum)  budget {MEMORY_BUDGET_MB:.0f}  "
        f"{'PASS' if ok else 'FAIL'}"
    )
    ok &= succeeded == len(ids)
    rep.add(f"result: {'PASS' if ok else 'FAIL'}")
    rep.write()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
