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
from jobrelay.local.opcount import PRICES, counting
from jobrelay.local.stack import Stack
from jobrelay.registry import import_job_modules
from jobrelay.runtime import Runner
from jobrelay.settings import RuntimeSettings

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
        self.acked = 0
        self.cond = threading.Condition()

    def add(self, seconds: float, ack: bool) -> None:
        with self.cond:
            self.seconds.append(seconds)
            self.acked += ack
            self.cond.notify_all()

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
            answer = runner.deliver(msg.env, msg.job_id)
            deliveries.add(time.perf_counter() - started, answer.ack)
            self.send_response(200 if answer.ack else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="bench-runner", daemon=True).start()
    return server


def wait_succeeded(watcher: firestore.Client, ids: list[str], timeout: float = 180) -> None:
    refs = [watcher.collection("jobs").document(i) for i in ids]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [(s.to_dict() or {}).get("status") for s in watcher.get_all(refs)]
        if all(s == "succeeded" for s in statuses):
            return
        time.sleep(0.25)
    raise RuntimeError(f"jobs did not all succeed within {timeout:.0f}s: {sorted(set(map(str, statuses)))}")


def run_counted(stack: Stack, n: int) -> tuple[dict[str, int], Deliveries, list[float]]:
    """Submit and run `n` echo jobs with counted clients; returns (counts, deliveries, submit seconds)."""
    watcher = firestore.Client(project=stack.infra.env(ENV).project)  # uncounted: only for waiting
    watcher.collection("jobs").document("warm-up").get()
    deliveries = Deliveries()
    submits: list[float] = []
    with counting() as ops:
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
        try:
            caller = Caller(uid=f"cost-{time.time_ns()}", kind="user")
            ids = []
            for i in range(n):
                started = time.perf_counter()
                spec = {"type": "echo", "payload": {"message": str(i)}}
                job, _ = deployment.service.submit(ENV, caller, spec)
                submits.append(time.perf_counter() - started)
                ids.append(job.id)
                deliveries.wait_for(i + 1)  # one job at a time: each request timed alone
            wait_succeeded(watcher, ids)
            time.sleep(0.5)  # let the last answers reach the emulator before the counts are read
            counts = dict(ops.snapshot())
        finally:
            server.shutdown()
            clients.reset()
    return counts, deliveries, submits


def report(rep: Report, n: int, counts: dict[str, int], deliveries: Deliveries, submits: list[float]) -> bool:
    rep.add(f"{n} echo jobs through JobService.submit and Runner.deliver, every gRPC call counted")
    rep.add(f"{'operation':<22}{'total':>8}{'per job':>10}{'budget':>8}   verdict")
    passed = True
    for key, budget in BUDGET.items():
        per_job = counts.get(key, 0) / n
        ok, text = verdict(per_job, budget)
        passed &= ok
        rep.add(f"{key:<22}{counts.get(key, 0):>8}{per_job:>10.3f}{budget:>8.0f}   {text}")
    others = {k: v for k, v in sorted(counts.items()) if k not in BUDGET}
    rep.add("other calls counted: " + (", ".join(f"{k}={v}" for k, v in others.items()) or "none"))
    dispatches = len(deliveries.seconds)
    rep.add(f"Cloud Tasks dispatch attempts: {dispatches} ({dispatches / n:.3f} per job, {deliveries.acked} acked)")

    handler = sum(deliveries.seconds) / max(1, dispatches)
    submit = sum(submits) / max(1, len(submits))
    rep.add(
        f"worker handler time (Runner.deliver): mean {handler * 1000:.1f} ms, "
        f"p50 {median(deliveries.seconds) * 1000:.1f} ms"
    )
    rep.add(f"API submit time (JobService.submit):  mean {submit * 1000:.1f} ms, p50 {median(submits) * 1000:.1f} ms")

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
    worker_run = dispatches * per_m * (RUN_PER_REQUEST + handler * worker_s)
    api_run = n * per_m * (RUN_PER_REQUEST + submit * (RUN_PER_VCPU_S + API_GIB * RUN_PER_GIB_S))
    rows.append((f"Cloud Run worker requests ({handler * 1000:.0f} ms, 1 vCPU, 2 GiB)", worker_run))
    rows.append((f"Cloud Run API requests ({submit * 1000:.0f} ms, 1 vCPU, 1 GiB)", api_run))
    rep.add("cost per million jobs at list prices (USD):")
    for label, dollars in rows:
        rep.add(f"  {label:<50}{dollars:>9.2f}")
    rep.add(f"  {'total':<50}{sum(u for _, u in rows):>9.2f}")
    rep.add("assumptions: list prices, no free tier; multi-region Firestore; tasks <= 32 KB (1 operation);")
    rep.add("  Cloud Run request-based tier 1, each request billed for its own handler time as measured here")
    rep.add("  (no overlap with other requests on an instance: an upper bound, at concurrency 8 it is less);")
    rep.add("  handler times are on the emulators on this shared 2-core machine, not in Cloud Run.")
    rep.add(f"result: {'PASS' if passed else 'FAIL'}")
    return passed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else N
    rep = Report("cost", "jobrelay operation and cost budget")
    # The stack's services stay idle here (it cannot start without api, worker and deadletter).
    with local_stack(services=("api", "worker", "deadletter")) as stack:
        counts, deliveries, submits = run_counted(stack, n)
    passed = report(rep, n, counts, deliveries, submits)
    rep.write()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
