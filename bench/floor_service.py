"""The floor as a service: a minimal hand-written HTTP service that makes only a job's Google calls.

    python -m bench.floor_service api|worker      (PORT, FLOOR_* variables; see below)

What a team would write by hand instead of jobrelay, served the way jobrelay's API is served: plain
WSGI (no framework) under gunicorn with functions-framework's settings (one worker process, 4 x cores
threads, no timeout). Every real service has this HTTP hop, so jobrelay's submit is compared with it
(bench.latency) and its start-up too (bench.startup).
- `api`: `POST /jobs` `{"message", "labels"}` creates the job document, then its Cloud Task (the
  calls of `bench.floor.submit`: the same document and task shape as jobrelay's), answers 202 with
  the id. At start it creates the API's Google clients: Firestore, Cloud Tasks and a firebase-admin
  app (jobrelay's API verifies ID tokens with it; this floor checks no token at all).
- `worker`: `POST /v1/run` reads, claims and finishes the job (`bench.floor.run`), answers 200. At
  start: Firestore and Cloud Tasks clients, and google-auth's JWT module the worker checks tokens with.
Both answer `GET /healthz`. Nothing of jobrelay is imported, so this is the cost of the calls alone.
Variables: FLOOR_PROJECT, FLOOR_QUEUE (a queue path), FLOOR_RUN_URL (where tasks deliver),
FLOOR_INVOKER (the tasks' OIDC service account), and the emulator hosts.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import gunicorn.app.base
from google.cloud import firestore, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from bench import floor

ROLE = sys.argv[1] if __name__ == "__main__" and len(sys.argv) > 1 else os.environ.get("FLOOR_ROLE", "api")
PROJECT = os.environ.get("FLOOR_PROJECT", "singular-dream-dev")
db = firestore.Client(project=PROJECT)
_host = os.environ.get("CLOUD_TASKS_EMULATOR_HOST")
tasks = (
    tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(_host)))
    if _host
    else tasks_v2.CloudTasksClient()
)
if ROLE == "api":
    import firebase_admin
    from firebase_admin import auth  # noqa: F401 - the API's token library, loaded as the API loads it

    firebase_admin.initialize_app(options={"projectId": PROJECT}, name="floor")
else:
    import google.auth.transport.requests  # noqa: F401 - the worker's token libraries
    from google.auth import jwt  # noqa: F401

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _answer(start_response: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
    if method == "GET":
        return _answer(start_response, "200 OK", {"status": "ok"})
    body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
    if ROLE == "api" and path == "/jobs":
        job_id = secrets.token_hex(12)
        floor.submit(
            db,
            tasks,
            queue=os.environ["FLOOR_QUEUE"],
            url=os.environ["FLOOR_RUN_URL"],
            invoker=os.environ["FLOOR_INVOKER"],
            job_id=job_id,
            owner="floor",
            message=str(body.get("message", "")),
            labels=dict(body.get("labels") or {}),
        )
        return _answer(start_response, "202 Accepted", {"id": job_id, "status": "queued"})
    if ROLE == "worker" and path == "/v1/run":
        floor.run(db, str(body["job_id"]))
        return _answer(start_response, "200 OK", {"outcome": "done"})
    return _answer(start_response, "404 Not Found", {"error": path})


class _Server(gunicorn.app.base.BaseApplication):  # type: ignore[misc]
    """gunicorn with functions-framework's settings (functions_framework/_http/gunicorn.py)."""

    def load_config(self) -> None:
        options = {
            "bind": f"127.0.0.1:{os.environ['PORT']}",
            "workers": 1,
            "threads": int(os.environ.get("THREADS", (os.cpu_count() or 1) * 4)),
            "timeout": 0,
            "loglevel": "error",
            "limit_request_line": 0,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return app


if __name__ == "__main__":
    _Server().run()
