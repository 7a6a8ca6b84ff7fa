"""Concurrency keys: does one tenant's backlog delay another's jobs, and what does a key cost per job?

    .venv/bin/python -m bench.fairness [A_JOBS [B_JOBS [COUNTED_JOBS]]]

Part 1, fairness, on the local stack (API and worker; no scheduler). Every round of tenant B is the
same: a new user of B submits B_JOBS (20) echo jobs with one key (limit 4) in one `jobs:batch` call,
so the submit pattern does not depend on how fast the API answers, and each job's wait is
`started_at - created_at` from its own document (end to end: `finished_at - created_at`). First
WARM_ROUNDS rounds on a third key warm the stack (the services' first deliveries create their
clients and channels, the first key documents, the emulators' first paths); then B's round alone;
then, in one run, tenant A submits A_JOBS (5,000) echo jobs with key `A` (limit 4) in batches of 200
(a user per batch: a user may submit 600 a minute) from a background thread, and once A's backlog is
there (1,000 submitted) B's round again; once A has drained, B's round alone once more (the drift
of the shared machine between the two "alone" rounds). Goal: B's p95 wait with A's backlog at most
2x its p95 alone. A's jobs are checked from their own start and finish times never to overlap more
than 4.

Part 2, operations per job, in this process with every Google client counted (bench.cost's method:
`JobService.submit` and `Runner.deliver` behind a small HTTP server Cloud Tasks delivers to):
COUNTED_JOBS (200) echo jobs with no key; with a key each (nobody waits); and in one batch behind
one key of limit 4 (all but 4 wait, each freed slot handed over). Firestore reads, writes and
deletes and Cloud Tasks creates per job; the snapshot listener of `type_states` is a stream the
counter does not see (a read per document at start and per change, per process: see ADR 0023).
Writes bench/results/fairness.txt and bench/results/fairness.json.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud import firestore

from bench.common import ENV, ApiClient, Report, local_stack, percentile
from bench.cost import Deliveries, counted_deployment, wait_succeeded
from jobrelay import clients
from jobrelay.auth import Caller
from jobrelay.local.opcount import counting
from jobrelay.local.stack import Stack

A_JOBS, B_JOBS, COUNTED_JOBS = 5000, 20, 200
LIMIT, A_BATCH, BACKLOG = 4, 200, 1000
WARM_ROUNDS = 2  # rounds of B's pattern on a third key before the first measured one
GOAL = 2.0  # B's p95 wait under A's backlog, at most this many times its p95 alone
TIMEOUT = 1800.0


def docs(db: firestore.Client, ids: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), 300):
        refs = [db.collection("jobs").document(j) for j in ids[i : i + 300]]
        out += [s.to_dict() or {} for s in db.get_all(refs)]
    return out


def wait_final(db: firestore.Client, ids: list[str], timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = docs(db, ids)
        if all(d.get("status") == "succeeded" for d in got):
            return got
        if time.monotonic() > deadline:
            left = sum(1 for d in got if d.get("status") != "succeeded")
            raise RuntimeError(f"{left} of {len(ids)} jobs not succeeded after {timeout:.0f}s")
        time.sleep(0.5 if len(ids) < 100 else 3.0)


def seconds(doc: dict[str, Any], a: str, b: str) -> float:
    start, end = doc[a], doc[b]
    return float((end - start).total_seconds()) if isinstance(start, datetime) else 0.0


def max_overlap(jobs: list[dict[str, Any]]) -> int:
    events = sorted([(d["attempt_started_at"], 1) for d in jobs] + [(d["finished_at"], -1) for d in jobs])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@dataclass(frozen=True)
class Round:
    """One round of tenant B: its jobs' documents once all succeeded, and how long the submit took."""

    jobs: list[dict[str, Any]]
    submit_seconds: float

    def waits(self) -> list[float]:
        return [seconds(d, "created_at", "started_at") for d in self.jobs]

    def e2e(self) -> list[float]:
        return [seconds(d, "created_at", "finished_at") for d in self.jobs]


def b_round(stack: Stack, db: firestore.Client, key: str) -> Round:
    """Tenant B's B_JOBS jobs on `key` (limit 4), one batch from a new user, waited for."""
    b = ApiClient(stack, f"tenant-b-{secrets.token_hex(3)}")
    spec = {"type": "echo", "payload": {"message": "b"}, "concurrency": {"key": key, "limit": LIMIT}}
    started = time.monotonic()
    ids = [j["id"] for j in b.batch([spec] * B_JOBS)]
    submitted = time.monotonic() - started
    return Round(wait_final(db, ids), submitted)


class TenantA:
    """Tenant A's jobs on one key, submitted in batches of A_BATCH from a background thread."""

    def __init__(self, stack: Stack, run: str, n: int) -> None:
        self.stack, self.run, self.n = stack, run, n
        self.ids: list[str] = []
        self.error: list[BaseException] = []
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._submit, name="tenant-a", daemon=True)
        self.thread.start()

    def _submit(self) -> None:
        try:
            spec = {
                "type": "echo",
                "payload": {"message": "a"},
                "concurrency": {"key": f"A-{self.run}", "limit": LIMIT},
            }
            for i in range(0, self.n, A_BATCH):
                user = ApiClient(self.stack, f"tenant-a-{self.run}-{i // A_BATCH}")
                self.ids.extend(j["id"] for j in user.batch([spec] * min(A_BATCH, self.n - i)))
        except BaseException as exc:  # reported by submitted()
            self.error.append(exc)

    def wait_backlog(self, backlog: int) -> int:
        while len(self.ids) < min(backlog, self.n) and self.thread.is_alive():
            time.sleep(0.1)
        return len(self.ids)

    def submitted(self) -> float:
        self.thread.join()
        if self.error:
            raise self.error[0]
        return time.monotonic() - self.started


def fairness(rep: Report, stack: Stack, a_jobs: int) -> bool:
    db = clients.firestore_client(stack.infra.env(ENV).project)
    run = secrets.token_hex(3)
    for i in range(WARM_ROUNDS):
        b_round(stack, db, f"warm-up-{run}-{i}")
    alone = b_round(stack, db, f"B-alone-{run}")
    a = TenantA(stack, run, a_jobs)
    backlog_at_b = a.wait_backlog(BACKLOG)
    contended = b_round(stack, db, f"B-{run}")
    a_submitted = a.submitted()
    a_done = wait_final(db, a.ids)
    a_seconds = time.monotonic() - a.started
    after = b_round(stack, db, f"B-after-{run}")
    b_last_end = max(d["finished_at"] for d in contended.jobs)
    a_first = [d for d in docs(db, a.ids[:backlog_at_b]) if d.get("started_at")]
    a_waiting_when_b_done = sum(1 for d in a_first if d["started_at"] > b_last_end)

    rep.add(
        f"part 1: fairness ({B_JOBS} jobs of tenant B in one batch, key limit {LIMIT}; "
        f"tenant A {a_jobs} jobs, limit {LIMIT})"
    )
    rep.add(f"warm-up: {WARM_ROUNDS} rounds of the same {B_JOBS} jobs on a third key first")
    rep.add(f"{'B jobs':<36}{'wait p50':>10}{'wait p95':>10}{'e2e p50':>10}{'e2e p95':>10}{'submit':>8}  (seconds)")
    rows = (
        ("alone", "alone (warm stack)", alone),
        ("contended", f"with A's backlog ({backlog_at_b} queued)", contended),
        ("after", "alone again, once A had drained", after),
    )
    p95: dict[str, float] = {}
    for key, label, got in rows:
        waits, e2e = got.waits(), got.e2e()
        p50, p95[key] = percentile(waits, 50), percentile(waits, 95)
        line = f"{label:<36}{p50:>10.3f}{p95[key]:>10.3f}{percentile(e2e, 50):>10.3f}{percentile(e2e, 95):>10.3f}"
        rep.add(f"{line}{got.submit_seconds:>8.2f}")
        rep.figure(f"fairness.b_wait_p50_{key}", round(p50, 3), unit="s")
        rep.figure(f"fairness.b_wait_p95_{key}", round(p95[key], 3), unit="s")
    ratio = p95["contended"] / max(p95["alone"], 1e-3)
    passed = rep.figure("fairness.b_wait_p95_ratio", round(ratio, 2), unit="x", budget=GOAL)
    rep.add(f"B's p95 wait with A's backlog / alone: {ratio:.2f}x (goal <= {GOAL:g}x)  {'PASS' if passed else 'MISS'}")
    rep.add(
        f"A jobs of the first {backlog_at_b} still to start when B's last job had finished: {a_waiting_when_b_done}"
    )
    overlap = max_overlap(a_done)
    passed &= rep.figure("fairness.a_max_running", overlap, unit="jobs", budget=LIMIT)
    rep.add(
        f"tenant A: {a_jobs} jobs submitted in {a_submitted:.1f}s, all succeeded after {a_seconds:.1f}s "
        f"({a_jobs / a_seconds:.1f} jobs/s through one key of limit {LIMIT}); at most {overlap} ran at once"
    )
    rep.figure("fairness.a_jobs_per_second", round(a_jobs / a_seconds, 1), unit="jobs/s")
    rep.add()
    return passed


# -- part 2: operations per job ----------------------------------------------------------------------


def counted(stack: Stack, n: int, mode: str) -> dict[str, int]:
    """Run `n` echo jobs in `mode` (plain, own_key, shared_key) with counted clients; the counts."""
    watcher = firestore.Client(project=stack.infra.env(ENV).project)  # uncounted: only for waiting
    watcher.collection("jobs").document("warm-up").get()
    deliveries = Deliveries()
    with counting() as ops:
        deployment, server = counted_deployment(stack, deliveries)
        try:
            caller = Caller(uid=f"fairness-{mode}-{time.time_ns()}", kind="user")
            tag = secrets.token_hex(3)
            ids: list[str] = []
            if mode == "shared_key":
                spec = {
                    "type": "echo",
                    "payload": {"message": "x"},
                    "concurrency": {"key": f"shared-{tag}", "limit": LIMIT},
                }
                for first in range(0, n, A_BATCH):
                    batch = {"jobs": [spec] * min(A_BATCH, n - first)}
                    ids += [j.id for j, _ in deployment.service.submit_batch(ENV, caller, batch)]
            else:
                for i in range(n):
                    spec: dict[str, Any] = {"type": "echo", "payload": {"message": str(i)}}
                    if mode == "own_key":
                        spec["concurrency"] = {"key": f"own-{tag}-{i}", "limit": LIMIT}
                    ids.append(deployment.service.submit(ENV, caller, spec)[0].id)
                    deliveries.wait_for(len(ids), timeout=60)
            wait_succeeded(watcher, ids, timeout=600)
            time.sleep(1.0)  # the last hand-overs and answers reach the emulator before the counts are read
            return dict(ops.snapshot())
        finally:
            server.shutdown()
            clients.reset()


MODES = {
    "plain": "no key",
    "own_key": "a key each (nobody waits)",
    "shared_key": f"one key, limit {LIMIT}, batches of {A_BATCH} (all but {LIMIT} wait)",
}


def costs(rep: Report, stack: Stack, n: int) -> None:
    rep.add(f"part 2: operations per job, {n} echo jobs each, every gRPC call of submit and run counted")
    rep.add(f"{'mode':<48}{'reads':>8}{'writes':>8}{'deletes':>9}{'tasks':>7}")
    for mode, label in MODES.items():
        c = counted(stack, n, mode)
        per = {
            k: c.get(k, 0) / n for k in ("firestore.read", "firestore.write", "firestore.delete", "tasks.CreateTask")
        }
        rep.add(
            f"{label:<48}{per['firestore.read']:>8.2f}{per['firestore.write']:>8.2f}"
            f"{per['firestore.delete']:>9.2f}{per['tasks.CreateTask']:>7.2f}"
        )
        for key, name in (("firestore.read", "reads"), ("firestore.write", "writes"), ("firestore.delete", "deletes")):
            rep.figure(f"key_cost.{mode}_{name}", round(per[key], 3), unit="per job")
    rep.add()


def main(argv: list[str] | None = None) -> int:
    args = [int(a) for a in (sys.argv[1:] if argv is None else argv)]
    a_jobs = args[0] if args else A_JOBS
    global B_JOBS
    B_JOBS = args[1] if len(args) > 1 else B_JOBS
    n = args[2] if len(args) > 2 else COUNTED_JOBS
    rep = Report("fairness", "concurrency keys: fairness and cost")
    with local_stack(services=("api", "worker")) as stack:
        passed = fairness(rep, stack, a_jobs)
        costs(rep, stack, n)
    rep.add(f"result: {'PASS' if passed else 'MISS'}")
    rep.write()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
