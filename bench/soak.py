"""Soak: 10,000 echo jobs through the local stack, the worker SIGKILLed mid-run; nothing lost or run twice.

    .venv/bin/python -m bench.soak [JOBS]

Starts the local stack (API, worker, dead-letter service; the scheduler ticks, so the maintenance pass
runs every minute as in the cloud; leases last 10 s). Submits JOBS (default 10,000) echo jobs in dev
through `POST /v1/envs/dev/jobs:batch`, 500 per call, one user per batch (a user may submit 600 a
minute). Once 15 % have succeeded (while batches still come in) it SIGKILLs the worker; the stack's
supervisor starts it again.
Then it waits until every job is final and checks:
- every submitted job has its document, in a final state (none lost);
- no job was run twice to success: at most one "job <id> succeeded" line per job in the worker's log
  (both lives of it), exactly one per succeeded job whose worker lived to log it;
- status and attempt of every document (jobs that ran again after the kill show attempt > 1).
Prints throughput (jobs/s from the first submit until all are final) and the time to drain (from
the last submit's answer until all are final). Not part of `make test`: it takes a few minutes.
Writes what it prints to bench/results/soak.txt.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from google.cloud import firestore

from bench.common import ENV, FINAL, ApiClient, Report, local_stack
from jobrelay.local.stack import Stack

JOBS = 10_000
CHUNK = 500
KILL_AT = 0.15
LEASE_SECONDS = 10.0
DRAIN_TIMEOUT = 900.0


class Submitter(threading.Thread):
    """Submits every batch in order; records the job ids and when the first and last went in."""

    def __init__(self, stack: Stack, jobs: int, tag: str) -> None:
        super().__init__(name="soak-submitter", daemon=True)
        self.stack, self.jobs, self.tag = stack, jobs, tag
        self.ids: list[str] = []
        self.started = self.finished = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            for n, start in enumerate(range(0, self.jobs, CHUNK)):
                api = ApiClient(self.stack, uid=f"soak-{self.tag}-{n}")
                specs = [
                    {"type": "echo", "payload": {"message": str(i)}, "labels": {"soak": self.tag}}
                    for i in range(start, min(self.jobs, start + CHUNK))
                ]
                self.ids.extend(job["id"] for job in api.batch(specs))
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        self.finished = time.monotonic()


def count(db: firestore.Client, tag: str, statuses: list[str]) -> int:
    query = (
        db.collection("jobs")
        .where(filter=firestore.FieldFilter("labels.soak", "==", tag))
        .where(filter=firestore.FieldFilter("status", "in", statuses))
    )
    aggregation: Any = query.count()
    return int(aggregation.get()[0][0].value)


def succeeded_lines(log: Path) -> Counter[str]:
    """'job <id> succeeded' lines per job id in the worker's log (every life of the worker)."""
    seen: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            message = json.loads(line).get("message", "")
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut short by the kill, or not one of ours
        parts = message.split()
        if len(parts) == 3 and parts[0] == "job" and parts[2] == "succeeded":
            seen[parts[1]] += 1
    return seen


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    jobs = int(args[0]) if args else JOBS
    tag = time.strftime("s%H%M%S")
    rep = Report("soak", "jobrelay soak with a worker crash")
    rep.add(
        f"{jobs} echo jobs in {ENV}, batches of {CHUNK}; worker SIGKILLed at {KILL_AT:.0%} succeeded; "
        f"lease {LEASE_SECONDS:g} s; maintenance pass every minute"
    )
    with local_stack(services=("api", "worker", "deadletter"), tick_seconds=5.0, lease_seconds=LEASE_SECONDS) as stack:
        db = firestore.Client(project=stack.infra.env(ENV).project)
        submitter = Submitter(stack, jobs, tag)
        submitter.start()
        killed_at: float | None = None
        restart_seconds = 0.0
        deadline = time.monotonic() + DRAIN_TIMEOUT
        final = 0
        while time.monotonic() < deadline:
            if submitter.error is not None:
                raise RuntimeError(f"submitting failed: {submitter.error}") from submitter.error
            succeeded = count(db, tag, ["succeeded"])
            if killed_at is None and succeeded >= KILL_AT * jobs:
                old = stack.kill("worker")
                killed_at = time.monotonic()
                rep.add(
                    f"worker (pid {old}) SIGKILLed at {succeeded} succeeded, "
                    f"{killed_at - submitter.started:.1f} s after the first submit"
                )
                stack.wait_restarted("worker", old)
                restart_seconds = time.monotonic() - killed_at
                rep.add(f"worker back (restarted by the supervisor) after {restart_seconds:.1f} s")
                continue
            final = count(db, tag, sorted(FINAL))
            if not submitter.is_alive() and final >= len(submitter.ids):
                break
            time.sleep(1.0)
        done = time.monotonic()
        submitter.join(5)
        docs = {
            s.id: s.to_dict() or {}
            for s in db.collection("jobs")
            .where(filter=firestore.FieldFilter("labels.soak", "==", tag))
            .select(["status", "attempt"])
            .stream()
        }
        lines = succeeded_lines(stack.logs / "worker.log")
        restarts = stack.services["worker"].restarts

    ids = submitter.ids
    statuses = Counter(str(docs.get(i, {}).get("status", "missing")) for i in ids)
    attempts = Counter(int(docs[i].get("attempt", 0)) for i in ids if i in docs)
    lost = [i for i in ids if docs.get(i, {}).get("status") not in FINAL]
    twice = [i for i in ids if lines[i] > 1]
    unlogged = [i for i in ids if docs.get(i, {}).get("status") == "succeeded" and lines[i] == 0]
    logged_not_done = [i for i in ids if lines[i] and docs.get(i, {}).get("status") != "succeeded"]
    total = done - submitter.started
    rep.add(
        f"submitted {len(ids)} jobs in {submitter.finished - submitter.started:.1f} s "
        f"({len(ids) / (submitter.finished - submitter.started):.0f} jobs/s accepted)"
    )
    rep.add(
        f"all final after {total:.1f} s: throughput {len(ids) / total:.0f} jobs/s; "
        f"drain after the last submit {done - submitter.finished:.1f} s; worker restarts {restarts}"
    )
    rep.add("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    rep.add("attempts: " + ", ".join(f"{k}: {v}" for k, v in sorted(attempts.items())))
    checks = [
        ("every job submitted was accepted", len(ids) == jobs, f"{len(ids)} of {jobs}"),
        ("none lost (every job final)", not lost, f"{len(lost)} not final {lost[:5]}"),
        ("none run twice to success (log)", not twice, f"{len(twice)} with 2+ success lines {twice[:5]}"),
        ("every success line is a succeeded job", not logged_not_done, f"{len(logged_not_done)}"),
        ("the worker was killed and came back", killed_at is not None and restarts >= 1, f"restarts {restarts}"),
    ]
    passed = True
    for what, ok, detail in checks:
        passed &= ok
        rep.add(f"{what:<40}{'PASS' if ok else 'FAIL'}   ({detail})")
    rep.add(f"succeeded jobs without a success line (worker killed between write and log): {len(unlogged)}")
    rep.add(f"result: {'PASS' if passed else 'FAIL'}")
    rep.write()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
