"""The bare process for CPU per job: only the Google calls a job needs, in one process, nothing else.

    python -m bench.bare PORT      (FLOOR_* variables as bench.floor_service; FLOOR_QUEUES: queue paths)

`POST /v1/submit {"n", "tag", "batch", "threads"}` creates n jobs the way a hand-written service
would: with `batch` > 1, the documents in batched commits of `batch` creates, then their tasks
concurrently (16 threads, as jobrelay's dispatcher); with `batch` 1, `threads` threads each creating
one document and then its task at a time. Each job's task goes to one of FLOOR_QUEUES (picked from its
id, as jobrelay spreads a class over its shards) and is delivered back to this process's
`POST /v1/run`, which reads, claims and finishes the job (`bench.floor.run`). Documents and tasks
have jobrelay's shape (`bench.floor`). bench.cpu counts this process's CPU seconds per 1,000 jobs
against jobrelay's API plus worker in the same run.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.cloud import firestore, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from bench import floor

PROJECT = os.environ.get("FLOOR_PROJECT", "singular-dream-dev")
QUEUES = os.environ.get("FLOOR_QUEUES", "").split(",")
db = firestore.Client(project=PROJECT)
tasks = tasks_v2.CloudTasksClient(
    transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(os.environ["CLOUD_TASKS_EMULATOR_HOST"]))
)
pool = ThreadPoolExecutor(max_workers=16)


def create_task(job_id: str) -> None:
    queue = QUEUES[zlib.crc32(job_id.encode()) % len(QUEUES)]
    tasks.create_task(
        parent=queue, task=floor.task(queue, os.environ["FLOOR_RUN_URL"], os.environ["FLOOR_INVOKER"], job_id)
    )


def submit(n: int, tag: str, batch: int, threads: int) -> None:
    ids = [secrets.token_hex(12) for _ in range(n)]
    if batch > 1:
        for start in range(0, n, batch):
            chunk = ids[start : start + batch]
            writes = db.batch()
            for job_id in chunk:
                writes.create(
                    db.collection(floor.COLLECTION).document(job_id), floor.document(job_id, "bare", "", {"bench": tag})
                )
            writes.commit()
            list(pool.map(create_task, chunk))
        return

    def one_by_one(part: list[str]) -> None:
        for job_id in part:
            db.collection(floor.COLLECTION).document(job_id).create(floor.document(job_id, "bare", "", {"bench": tag}))
            create_task(job_id)

    with ThreadPoolExecutor(max_workers=threads) as senders:
        list(senders.map(one_by_one, [ids[k::threads] for k in range(threads)]))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(200)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path == "/v1/submit":
            submit(int(body["n"]), str(body["tag"]), int(body.get("batch", 1)), int(body.get("threads", 8)))
            self._answer(200)
        else:
            self._answer(floor.run(db, str(body["job_id"])))

    def _answer(self, status: int) -> None:
        self.send_response_only(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
