"""Operations and cost per succeeded job that reports no progress, against the design's budget.

    .venv/bin/python -m bench.cost [N]

Starts the local stack (its services stay idle), then, as the budget test does, runs the real submit path
(`JobService.submit`) and the real run path (`Runner.deliver`, behind a small HTTP server that Cloud
Tasks delivers to) in this process with every Google client created inside
`jobrelay.local.opcount.counting()`, for N echo jobs (default 500), one at a time (so each request's
handler time is measured alone, as Cloud Run bills a request alone on its instance). An uncounted
client checks at the end that every job succeeded. Prints operations per job against the budget
(1 Cloud Tasks create, 1 Firestore read, 3 Firestore writes), and the cost per million jobs at list
prices (see the assumptions it prints). Writes what it prints to bench/results/cost.txt.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.cloud import firestore

from bench.common import ENV, Report, local_stack, median, verdict
from jobrelay import clients
from jobrelay.auth import Caller
from jobrelay.deployment import Deployment
from jobrelay.dispatch import TaskMessage
from jobrelay.local.opcount import PRICES, PRICES_AS_OF, counting
from jobrelay.local.stack import Stack
from jobrelay.process_settings import RuntimeSettings
from jobrelay.registry import import_job_modules
from jobrelay.runtime import Runner

N = 500
BUDGET = {"tasks.CreateTask": 1.0, "firestore.read": 1.0, "firestore.write": 3.0}

# Cloud Run tier-1, request-based billing (reference/gcp-semantics.md section 4), and the sizes
# terraform/modules/environment/run.tf gives the services (1 vCPU each; worker 2 GiB, API 1 GiB).
RUN_PER_VCPU_S = 0.000024
RUN_PER_GIB_S = 0.0000025
RUN_PER_REQUEST = 0.40 / 1_000_000
WORKER_GIB = 2.0
API_GIB = 1.0


class Deliveries:
    """The in-process worker's `Runner`, and what it saw: deliveries and the time each took."""

    def __init__(self) -> None:
        self.runner: Runner | None = None
        self.seconds: list[float] = []
        self.spans: list[tuple[float, float]] = []
        self.acked = 0
        self.cond = threading.Condition()

    def add(self, started: float, ended: float, ack: bool) -> None:
        with self.cond:
            self.seconds.append(ended - started)
            self.spans.append((started, ended))
            self.acked += ack
            self.cond.notify_all()

    def busy_seconds(self) -> float:
        """Time during which at least one delivery was being handled (what an instance is billed for)."""
        total, end = 0.0, -1.0
        for start, stop in sorted(self.spans):
            if stop > end:
                total += stop - max(start, end)
                end = stop
        return total

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.seconds) >= n, timeout):
                raise RuntimeError(f"only {len(self.seconds)} of {n} deliveries arrived in {timeout:.0f}s")


def serve_runner(deliveries: Deliveries) -> ThreadingHTTPServer:
    """An HTTP target for Cloud Tasks that hands each task to `deliveries.runner`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            msg = TaskMessage.model_validate_json(body)
            runner = deliveries.runner
            assert runner is not None
            started = time.perf_counter()
            answer = runner.deliver(msg.env, msg.job_id, check=msg.check)
            deliveries.add(started, time.perf_counter(), answer.ack)
            self.send_response(200 if answer.ack else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="bench-runner", daemon=True).start()
    return server


def counted_deployment(stack: Stack, deliveries: Deliveries) -> tuple[Deployment, ThreadingHTTPServer]:
    """A Deployment of `ENV` whose Cloud Tasks go to an in-process runner (`serve_runner`), its clients
    made anew so they are counted (call inside `counting()`); the caller shuts the server down."""
    clients.reset()
    server = serve_runner(deliveries)
    settings = RuntimeSettings(
        mode="local",
        envs=ENV,
        infra_dir=stack.options.infra_dir,
        worker_url=f"http://127.0.0.1:{server.server_address[1]}",
    )
    deployment = Deployment(settings=settings, infra=stack.infra, registry=import_job_modules("jobs"))
    deliveries.runner = deployment.runner()
    return deployment, server


def wait_succeeded(watcher: firestore.Client, ids: list[str], timeout: float = 180) -> None:
    refs = [watcher.collection("jobs").document(i) for i in ids]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [(s.to_dict() or {}).get("status") for s in watcher.get_all(refs)]
        if all(s == "succeeded" for s in statuses):
            return
        time.sleep(0.25)
    raise RuntimeError(f"jobs did not all succeed within {timeout:.0f}s: {sorted(set(map(str, statuses)))}")


BATCH = 100  # jobs per `jobs:batch` call in the batch mode


def run_counted(stack: Stack, n: int, mode: str) -> tuple[dict[str, int], Deliveries, list[float]]:
    """Submit and run `n` echo jobs with counted clients; returns (counts, deliveries, submit seconds).

    mode "single": one `JobService.submit` at a time, each delivered before the next (handler times alone).
    mode "batch": `JobService.submit_batch` of BATCH jobs, each batch delivered before the next; the
    submit seconds are per job (the batch call's time over its size).
    """
    watcher = firestore.Client(project=stack.infra.env(ENV).project)  # uncounted: only for waiting
    watcher.collection("jobs").document("warm-up").get()
    deliveries = Deliveries()
    submits: list[float] = []
    with counting() as ops:
        deployment, server = counted_deployment(stack, deliveries)
        try:
            caller = Caller(uid=f"cost-{mode}-{time.time_ns()}", kind="user")
            ids: list[str] = []
            size = 1 if mode == "single" else BATCH
            for first in range(0, n, size):
                specs = [{"type": "echo", "payload": {"message": str(i)}} for i in range(first, min(n, first + size))]
                started = time.perf_counter()
                if mode == "single":
                    jobs = [deployment.service.submit(ENV, caller, specs[0])[0]]
                else:
                    jobs = [job for job, _ in deployment.service.submit_batch(ENV, caller, {"jobs": specs})]
                submits += [(time.perf_counter() - started) / len(jobs)] * len(jobs)
                ids += [job.id for job in jobs]
                deliveries.wait_for(len(ids), timeout=60)
            wait_succeeded(watcher, ids)
            time.sleep(0.5)  # let the last answers reach the emulator before the counts are read
            counts = dict(ops.snapshot())
        finally:
            server.shutdown()
            clients.reset()
    return counts, deliveries, submits


COUNTED = (*BUDGET, "pubsub.publish")
FIGURE_NAMES = {
    "tasks.CreateTask": "tasks_create",
    "firestore.read": "firestore_reads",
    "firestore.write": "firestore_writes",
    "pubsub.publish": "pubsub_publish",
}


def report(
    rep: Report, n: int, mode: str, counts: dict[str, int], deliveries: Deliveries, submits: list[float]
) -> bool:
    how = "one JobService.submit each" if mode == "single" else f"JobService.submit_batch of {BATCH}"
    rep.add(f"{mode}: {n} echo jobs ({how}) and Runner.deliver, every gRPC call counted")
    rep.add(f"{'operation':<22}{'total':>8}{'per job':>10}{'budget':>8}   verdict")
    passed = True
    for key in COUNTED:
        per_job = counts.get(key, 0) / n
        budget = BUDGET.get(key, 0.0)  # anything outside the budget (Pub/Sub here) should not happen at all
        ok, text = verdict(per_job, budget) if budget else (per_job == 0, "PASS" if per_job == 0 else "FAIL")
        passed &= ok
        rep.add(f"{key:<22}{counts.get(key, 0):>8}{per_job:>10.3f}{budget:>8.0f}   {text}")
        rep.figure(f"ops_per_job.{mode}.{FIGURE_NAMES[key]}", round(per_job, 4), unit="per job", budget=budget)
    others = {k: v for k, v in sorted(counts.items()) if k not in COUNTED}
    rep.add("other calls counted: " + (", ".join(f"{k}={v}" for k, v in others.items()) or "none"))
    dispatches = len(deliveries.seconds)
    rep.add(f"Cloud Tasks dispatch attempts: {dispatches} ({dispatches / n:.3f} per job, {deliveries.acked} acked)")

    handler = sum(deliveries.seconds) / max(1, dispatches)
    submit = sum(submits) / max(1, len(submits))
    rep.add(
        f"worker handler time (Runner.deliver): mean {handler * 1000:.1f} ms, "
        f"p50 {median(deliveries.seconds) * 1000:.1f} ms"
    )
    rep.add(f"API submit time per job:              mean {submit * 1000:.1f} ms, p50 {median(submits) * 1000:.1f} ms")

    per_m = 1_000_000 / n

    def usd(key: str, count: int) -> float:
        return count * PRICES[key] * per_m

    rows: list[tuple[str, float]] = [
        ("Firestore reads ($0.06/100k)", usd("firestore.read", counts.get("firestore.read", 0))),
        ("Firestore writes ($0.18/100k)", usd("firestore.write", counts.get("firestore.write", 0))),
        ("Firestore deletes ($0.02/100k)", usd("firestore.delete", counts.get("firestore.delete", 0))),
        # Finished jobs carry `expire_at`: Firestore TTL removes each once, after the counted run.
        ("Firestore TTL delete, 1/job later ($0.02/100k)", usd("firestore.delete", n)),
        ("Cloud Tasks creates ($0.40/M)", usd("tasks.CreateTask", counts.get("tasks.CreateTask", 0))),
        ("Cloud Tasks dispatches ($0.40/M)", usd("tasks.dispatch", dispatches)),
    ]
    worker_s = RUN_PER_VCPU_S + WORKER_GIB * RUN_PER_GIB_S
    # Billed instance time: while at least one request is in flight (concurrent requests share it).
    busy = deliveries.busy_seconds()
    worker_run = dispatches * per_m * RUN_PER_REQUEST + per_m * busy * worker_s
    # A batch is one API request for BATCH jobs.
    api_requests = n if mode == "single" else -(-n // BATCH)
    api_run = api_requests * per_m * RUN_PER_REQUEST + n * per_m * submit * (RUN_PER_VCPU_S + API_GIB * RUN_PER_GIB_S)
    rows.append((f"Cloud Run worker ({busy / n * 1000:.1f} ms busy/job, 1 vCPU, 2 GiB)", worker_run))
    rows.append((f"Cloud Run API requests ({submit * 1000:.1f} ms/job, 1 vCPU, 1 GiB)", api_run))
    rep.add(f"cost per million jobs at list prices (USD, prices as of {PRICES_AS_OF}):")
    for label, dollars in rows:
        rep.add(f"  {label:<50}{dollars:>9.2f}")
    total = sum(u for _, u in rows)
    rep.add(f"  {'total':<50}{total:>9.2f}")
    rep.figure(f"ops_per_job.{mode}.usd_per_million_jobs", round(total, 2), unit="USD")
    rep.add(f"result ({mode}): {'PASS' if passed else 'FAIL'}")
    rep.add()
    return passed


ASSUMPTIONS = (
    "assumptions: list prices, no free tier; multi-region Firestore; tasks <= 32 KB (1 operation);",
    "  Cloud Run request-based tier 1: an instance is billed while it handles at least one request, so",
    "  the worker is billed for the measured time with a delivery in flight (single: one at a time;",
    "  batch: up to 100 at once share it); times are on the emulators on this shared 2-core machine.",
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else N
    rep = Report("cost", "jobrelay operation and cost budget")
    passed = True
    # The stack's services stay idle here (the run path is this process's Runner).
    with local_stack(services=("api", "worker", "deadletter")) as stack:
        for mode in ("single", "batch"):
            counts, deliveries, submits = run_counted(stack, n, mode)
            passed &= report(rep, n, mode, counts, deliveries, submits)
    for line in ASSUMPTIONS:
        rep.add(line)
    rep.add(f"result: {'PASS' if passed else 'FAIL'}")
    rep.write()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
