"""The floor for latency: only the Google calls a job needs, one after another, with no framework.

Submit (in the caller's process, with the official clients): create the job document, then create the
Cloud Task, shaped as jobrelay's own (named, JSON body, OIDC token, dispatch deadline).
Run (`python -m bench.floor PORT`, a bare http.server the task targets): read the document, claim it
with a write guarded by its update time, finish it with a second guarded write, answer 200.
The OIDC token is not checked here: in the cloud, Cloud Run IAM checks it before the handler runs.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.cloud import firestore, tasks_v2
from google.protobuf import duration_pb2

COLLECTION = "floor_jobs"


def document(job_id: str, owner: str, message: str, labels: dict[str, str]) -> dict[str, Any]:
    """A document of the same size and shape as a queued jobrelay job."""
    return {
        "id": job_id,
        "env": "dev",
        "type": "echo",
        "class": "A",
        "route": "tasks",
        "status": "queued",
        "owner": owner,
        "payload": {"message": message},
        "attempt": 0,
        "max_attempts": 5,
        "timeout_seconds": 60,
        "idempotency_key": None,
        "spec_hash": "0" * 32,
        "labels": labels,
        "depends_on": [],
        "dependents": [],
        "waiting_on": [],
        "progress": None,
        "created_at": datetime.now(UTC),
        "run_at": None,
        "dispatch_count": 0,
        "trace_id": None,
        "cancel_requested": False,
        "errors": [],
        "log_tail": [],
    }


def submit(
    db: firestore.Client,
    tasks: tasks_v2.CloudTasksClient,
    *,
    queue: str,
    url: str,
    invoker: str,
    job_id: str,
    owner: str,
    message: str,
    labels: dict[str, str],
) -> float:
    """Create the document, then the task that runs it; returns perf_counter() between the two."""
    db.collection(COLLECTION).document(job_id).create(document(job_id, owner, message, labels))
    created = time.perf_counter()
    tasks.create_task(parent=queue, task=task(queue, url, invoker, job_id))
    return created


def task(queue: str, url: str, invoker: str, job_id: str) -> tasks_v2.Task:
    """The job's Cloud Task, shaped as jobrelay's (named, JSON body, OIDC token, dispatch deadline)."""
    return tasks_v2.Task(
        name=f"{queue}/tasks/{job_id}-0",
        http_request=tasks_v2.HttpRequest(
            url=url,
            http_method=tasks_v2.HttpMethod.POST,
            headers={"Content-Type": "application/json"},
            body=json.dumps({"env": "dev", "job_id": job_id, "dispatch": 0}).encode(),
            oidc_token=tasks_v2.OidcToken(service_account_email=invoker, audience=url),
        ),
        dispatch_deadline=duration_pb2.Duration(seconds=90),
    )


def run(db: firestore.Client, job_id: str) -> int:
    """Claim (read + guarded write) and finish (guarded write) one job; the HTTP status to answer."""
    ref = db.collection(COLLECTION).document(job_id)
    snap = ref.get()
    if not snap.exists or (snap.to_dict() or {}).get("status") != "queued":
        return 200  # unknown or already taken: nothing to run again
    at = datetime.now(UTC)
    claimed = ref.update(
        {
            "status": "running",
            "attempt": 1,
            "worker_id": "floor",
            "started_at": at,
            "lease_expires_at": at + timedelta(seconds=60),
        },
        option=db.write_option(last_update_time=snap.update_time),
    )
    ref.update(
        {
            "status": "succeeded",
            "result": {"message": (snap.to_dict() or {})["payload"]["message"]},
            "finished_at": datetime.now(UTC),
            "lease_expires_at": None,
        },
        option=db.write_option(last_update_time=claimed.update_time),
    )
    return 200


def serve(port: int) -> None:
    db = firestore.Client(project=sys.argv[2] if len(sys.argv) > 2 else "singular-dream-dev")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(200)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self._answer(run(db, body["job_id"]))

        def _answer(self, status: int) -> None:
            self.send_response_only(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
