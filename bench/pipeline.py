"""Pipelines at scale: one step fanning out to N children against N plain jobs, in the same run.

    .venv/bin/python -m bench.pipeline [N]        (default 10,000)

Starts the local stack's emulators; as bench.cost does, the real submit path and the real run path
(`Runner.deliver` behind a small HTTP server the Cloud Tasks emulator delivers to, fan-in checks
included) run in this process with every Google client created inside
`jobrelay.local.opcount.counting()`, which also counts the writes each Firestore document took. Two
phases of no-op `echo` jobs, one after the other on the same emulators:
- plain: N jobs through `JobService.submit_batch`, 500 a call (a new user per call: quotas), one call
  after another; timed from the first submit until a count query sees all N `succeeded`;
- pipeline: `PipelineService.submit` of a pipeline whose one step is a `fanout` of N `echo` children
  (spawned by its handler in batches of 500, as `ctx.spawn` does); timed from the submit until the
  pipeline document says `succeeded`.
Reports the drain time ratio (goal: pipeline <= 1.25x plain), the operations per child against those
per plain job (goal: at most one Firestore write more), the fan-in's lag after the last child, and the
most writes any one document took during the fan-out, with its average rate over the drain (goal:
no document above ~1 write a second). Writes bench/results/pipeline.txt and pipeline.json.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any

from google.cloud import firestore

from bench.common import ENV, Report, count_jobs, local_stack
from bench.cost import Deliveries, counted_deployment
from jobrelay import clients
from jobrelay.auth import Caller
from jobrelay.deployment import Deployment
from jobrelay.local.opcount import OpCounter, counting
from jobrelay.local.stack import Stack

N = 10_000
BATCH = 500
DRAIN_RATIO_BUDGET = 1.25
EXTRA_WRITES_BUDGET = 1.0  # Firestore writes per child beyond a plain job's
HOT_DOCUMENT_BUDGET = 1.0  # writes a second, averaged over the drain, on any one document
DRAIN_TIMEOUT = 900.0
COUNTED = ("firestore.read", "firestore.write", "tasks.CreateTask", "pubsub.publish")


class Phase:
    """One timed run: its operations, the writes per document, deliveries, and how long it took."""

    def __init__(self, name: str, ops: OpCounter, deliveries: Deliveries) -> None:
        self.name = name
        self._ops, self._deliveries = ops, deliveries
        self._counts0, self._docs0 = ops.snapshot(), ops.documents()
        self._deliveries0 = len(deliveries.seconds)
        self.started = time.monotonic()
        self.seconds = 0.0
        self.counts: Counter[str] = Counter()
        self.docs: Counter[str] = Counter()
        self.deliveries = 0

    def end(self) -> None:
        self.seconds = time.monotonic() - self.started
        time.sleep(0.5)  # the last answers reach the emulator before the counts are read
        self.counts = self._ops.snapshot() - self._counts0
        self.docs = self._ops.documents() - self._docs0
        self.deliveries = len(self._deliveries.seconds) - self._deliveries0


def wait(check: Any, what: str, timeout: float = DRAIN_TIMEOUT, every: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise RuntimeError(f"{what} not reached in {timeout:.0f}s")


def plain(deployment: Deployment, watcher: firestore.Client, n: int, tag: str) -> None:
    for first in range(0, n, BATCH):
        caller = Caller(uid=f"bench-{tag}-{first // BATCH}", kind="user")
        specs = [echo(tag, i) for i in range(first, min(n, first + BATCH))]
        deployment.service.submit_batch(ENV, caller, {"jobs": specs})
    wait(lambda: count_jobs(watcher, "bench", tag, ["succeeded"]) >= n, f"{n} plain jobs succeeded")


def pipeline(deployment: Deployment, watcher: firestore.Client, n: int, tag: str) -> dict[str, Any]:
    caller = Caller(uid=f"bench-{tag}", kind="user")
    body = {
        "name": f"bench-{tag}",
        "steps": {"fan": {"type": "fanout", "payload": {"count": n, "child": echo(tag, 0)}, "class": "B"}},
    }
    doc, _ = deployment.pipelines.submit(ENV, caller, body)
    ref = watcher.collection("pipelines").document(doc["id"])
    wait(lambda: (ref.get().to_dict() or {}).get("status") in ("succeeded", "failed", "cancelled"), "pipeline end")
    return ref.get().to_dict() or {}


def echo(tag: str, i: int) -> dict[str, Any]:
    return {"type": "echo", "payload": {"message": str(i)}, "labels": {"bench": tag}}


def last_child_end(watcher: firestore.Client, parent_id: str) -> datetime:
    q = (
        watcher.collection("jobs")
        .where(filter=firestore.FieldFilter("parent_id", "==", parent_id))
        .order_by("finished_at", direction=firestore.Query.DESCENDING)
        .limit(1)
    )
    (snap,) = list(q.stream())
    value: datetime = (snap.to_dict() or {})["finished_at"]
    return value


def run(stack: Stack, n: int, rep: Report) -> bool:
    watcher = firestore.Client(project=stack.infra.env(ENV).project)  # uncounted: only for waiting
    watcher.collection("jobs").document("warm-up").get()
    deliveries = Deliveries()
    with counting() as ops:
        deployment, server = counted_deployment(stack, deliveries)
        try:
            warm = f"warm{time.time_ns()}"
            plain(deployment, watcher, 200, warm)
            tag = f"p{time.time_ns()}"
            base = Phase("plain", ops, deliveries)
            plain(deployment, watcher, n, tag + "a")
            base.end()
            fan = Phase("pipeline", ops, deliveries)
            ended = pipeline(deployment, watcher, n, tag + "b")
            fan.end()
        finally:
            server.shutdown()
            clients.reset()
    return report(rep, n, base, fan, ended, watcher)


def report(rep: Report, n: int, base: Phase, fan: Phase, ended: dict[str, Any], watcher: firestore.Client) -> bool:
    passed = ended.get("status") == "succeeded"
    step = ended.get("steps", {}).get("fan", {})
    rep.add(f"{n} plain echo jobs (jobs:batch of {BATCH}) vs one pipeline whose step fans out to {n} echo children")
    rep.add(f"pipeline {ended.get('id')}: {ended.get('status')}; its step spawned {step.get('children')} children")
    ratio = fan.seconds / base.seconds
    ok = rep.figure("pipeline.drain_ratio", round(ratio, 3), unit="x", budget=DRAIN_RATIO_BUDGET)
    rep.figure("pipeline.plain_drain_seconds", round(base.seconds, 1), unit="s")
    rep.figure("pipeline.fan_out_drain_seconds", round(fan.seconds, 1), unit="s")
    rep.add(
        f"drain: plain {base.seconds:.1f} s ({n / base.seconds:.0f} jobs/s), pipeline {fan.seconds:.1f} s "
        f"({n / fan.seconds:.0f} children/s): ratio {ratio:.3f} (goal <= {DRAIN_RATIO_BUDGET})  "
        f"{'PASS' if ok else 'FAIL'}"
    )
    passed &= ok
    parent_id = step.get("job_id", "")
    if parent_id:
        parent = watcher.collection("jobs").document(parent_id).get().to_dict() or {}
        lag = (parent["finished_at"] - last_child_end(watcher, parent_id)).total_seconds()
        rep.figure("pipeline.fan_in_lag_seconds", round(lag, 2), unit="s")
        rep.add(f"fan-in: the step ended {lag:.2f} s after its last child (check buckets of 1 s)")
    rep.add(f"{'operation':<22}{'plain/job':>11}{'child':>11}{'extra':>9}")
    for key in (*COUNTED, "deliveries"):
        per_job = (base.deliveries if key == "deliveries" else base.counts.get(key, 0)) / n
        per_child = (fan.deliveries if key == "deliveries" else fan.counts.get(key, 0)) / n
        rep.add(f"{key:<22}{per_job:>11.4f}{per_child:>11.4f}{per_child - per_job:>+9.4f}")
        name = key.replace(".", "_").replace("CreateTask", "creates")
        rep.figure(f"pipeline.per_child_{name}", round(per_child, 4), unit="per child")
        rep.figure(f"pipeline.per_plain_job_{name}", round(per_job, 4), unit="per job")
    extra = (fan.counts.get("firestore.write", 0) - base.counts.get("firestore.write", 0)) / n
    ok = rep.figure("pipeline.extra_writes_per_child", round(extra, 4), unit="writes", budget=EXTRA_WRITES_BUDGET)
    rep.add(f"Firestore writes per child beyond a plain job: {extra:+.4f} (goal <= 1)  {'PASS' if ok else 'FAIL'}")
    passed &= ok
    hot, writes = fan.docs.most_common(1)[0] if fan.docs else ("", 0)
    rate = writes / fan.seconds
    rep.figure("pipeline.max_writes_one_document", writes, unit="writes", note=hot)
    ok = rep.figure("pipeline.max_document_writes_per_second", round(rate, 3), unit="/s", budget=HOT_DOCUMENT_BUDGET)
    top = ", ".join(f"{d.rsplit('/', 1)[-1][:40]}={c}" for d, c in fan.docs.most_common(4))
    rep.add(
        f"most writes on one document during the fan-out: {writes} ({hot}), {rate:.3f}/s over the drain "
        f"(goal <= {HOT_DOCUMENT_BUDGET}/s)  {'PASS' if ok else 'FAIL'}; top: {top}"
    )
    if parent_id:
        rep.add(
            f"writes on the fan-out step's job: {fan.docs.get('jobs/' + parent_id, 0)}, "
            f"on the pipeline document: {fan.docs.get('pipelines/' + ended.get('id', ''), 0)}"
        )
    passed &= ok
    rep.add(f"result: {'PASS' if passed else 'FAIL'}")
    return passed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else N
    rep = Report("pipeline", "jobrelay pipeline fan-out against plain jobs")
    with local_stack(services=()) as stack:
        passed = run(stack, n, rep)
    rep.write()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
