"""The design's budget per succeeded job that reports no progress: 1 task create, 1 read, 3 writes.

Counted with instrumented clients: the API's submit path and the worker's run path run in this
process against the stack's emulators, with every gRPC call counted; Cloud Tasks delivers to a
small HTTP server here that hands each task to the same `Runner` the worker uses.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.cloud import firestore

from jobrelay import clients
from jobrelay.auth import Caller
from jobrelay.deployment import Deployment
from jobrelay.dispatch import TaskMessage
from jobrelay.local.opcount import counting
from jobrelay.local.stack import Stack
from jobrelay.process_settings import RuntimeSettings
from jobrelay.registry import import_job_modules

N = 40


def test_succeeded_job_stays_within_the_operation_budget(stack: Stack) -> None:
    watcher = firestore.Client(project=stack.infra.env("dev").project)  # uncounted: only for waiting
    watcher.collection("jobs").document("warm-up").get()  # its channel now exists outside the counter
    with counting() as ops:
        clients.reset()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        settings = RuntimeSettings(
            mode="local",
            envs="dev",
            infra_dir=stack.options.infra_dir,
            worker_url=f"http://127.0.0.1:{server.server_address[1]}",
        )
        deployment = Deployment(settings=settings, infra=stack.infra, registry=import_job_modules("jobs"))
        server.runner = deployment.runner()  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            caller = Caller(uid=f"budget-{time.time_ns()}", kind="user")
            ids = [
                deployment.service.submit("dev", caller, {"type": "echo", "payload": {"message": str(i)}})[0].id
                for i in range(N)
            ]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                snaps = watcher.get_all([watcher.collection("jobs").document(i) for i in ids])
                if all((s.to_dict() or {}).get("status") == "succeeded" for s in snaps):
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("jobs did not all succeed")
            counts = ops.snapshot()
        finally:
            server.shutdown()
            clients.reset()
    assert counts["tasks.CreateTask"] == N, counts
    assert counts["firestore.read"] <= N, counts
    assert counts["firestore.write"] <= 3 * N, counts
    assert counts["firestore.write"] >= 3 * N, "the counter must see create, claim and finish"


def test_a_pool_submit_costs_one_publish_and_the_write_that_records_it(stack: Stack) -> None:
    """The pool route: document, message, and the marker that says Pub/Sub holds it (ADR 0014).

    The stack's own pool runs the jobs; its run path is the `Runner` counted above (1 read, 2
    writes), so a pool job costs 1 read, 4 writes and 1 publish.
    """
    watcher = firestore.Client(project=stack.infra.env("dev").project)
    watcher.collection("jobs").document("warm-up").get()
    with counting() as ops:
        clients.reset()
        settings = RuntimeSettings(mode="local", envs="dev", infra_dir=stack.options.infra_dir)
        deployment = Deployment(settings=settings, infra=stack.infra, registry=import_job_modules("jobs"))
        try:
            caller = Caller(uid=f"budget-pool-{time.time_ns()}", kind="user")
            spec = {"type": "echo", "class": "D"}
            ids = [
                deployment.service.submit("dev", caller, {**spec, "payload": {"message": str(i)}})[0].id
                for i in range(N // 4)
            ]
            counts = ops.snapshot()
        finally:
            clients.reset()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        docs = [s.to_dict() or {} for s in watcher.get_all([watcher.collection("jobs").document(i) for i in ids])]
        if all(d.get("status") == "succeeded" for d in docs):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("pool jobs did not all succeed")
    assert all(d["published_dispatch"] == 0 and d.get("due_at") is None for d in docs)
    n = len(ids)
    assert counts["pubsub.publish"] == n, counts
    assert counts["tasks.CreateTask"] == 0, counts
    assert counts["firestore.read"] == 0, counts
    assert counts["firestore.write"] == 2 * n, counts


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        msg = TaskMessage.model_validate_json(body)
        answer = self.server.runner.deliver(msg.env, msg.job_id)  # type: ignore[attr-defined]
        self.send_response(200 if answer.ack else 500)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass
