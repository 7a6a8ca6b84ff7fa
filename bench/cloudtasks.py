"""Benchmark the local Cloud Tasks emulator: dispatch rate, idle CPU, memory with 10,000 tasks waiting.

    .venv/bin/python -m bench.cloudtasks

Starts the emulator with its launcher and a local HTTP target that answers 200 at once, then:
1. dispatch rate: N tasks spread over 8 paused queues (500/s each, the API's maximum), resumed at
   once; rate = N / (last arrival - resume). Target: >= 500 tasks/s. The creates of those N tasks
   (official client, gRPC, 8 threads) give the gRPC create rate.
2. idle CPU: 10,000 tasks scheduled an hour ahead, nothing due; the emulator's CPU time over 5 s.
   Target: < 1 %.
3. memory: the emulator's RSS with those 10,000 tasks waiting. Target: < 150 MB.
4. REST create rate: 4,000 CreateTask calls as JSON over HTTP/1.1 (8 threads, one keep-alive
   session each, the body gcloud or the Node client's REST transport sends) into a paused queue;
   reported beside the gRPC rate, with their ratio. No budget: context for REST users.
Writes what it prints to bench/results/cloudtasks.txt.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import requests
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from bench.common import Report
from jobrelay.local.cloudtasks import launch
from jobrelay.local.procs import free_port

PARENT = "projects/bench/locations/us-central1"
QUEUES = 8
DISPATCHED = 16000
WAITING = 10_000
IDLE_SECONDS = 5.0
REST_CREATES = 4000


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.cond = threading.Condition()

    def hit(self) -> None:
        with self.cond:
            self.count += 1
            self.last = time.time()
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: self.count >= n, timeout):
                raise RuntimeError(f"only {self.count} of {n} dispatches arrived in {timeout}s")
            return self.last


def serve_target(counter: Counter) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response_only(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            counter.hit()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def create_many(client: tasks_v2.CloudTasksClient, jobs: list[tuple[str, dict[str, object]]]) -> float:
    """Create tasks from 8 threads; returns creates per second."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda job: client.create_task(parent=job[0], task=job[1]), jobs, chunksize=64))
    return len(jobs) / (time.monotonic() - started)


def measure_rate(rep: Report, client: tasks_v2.CloudTasksClient, url: str, counter: Counter) -> tuple[bool, float]:
    queues = [f"{PARENT}/queues/rate-{i}" for i in range(QUEUES)]
    for name in queues:
        client.create_queue(parent=PARENT, queue={"name": name})
        client.pause_queue(name=name)
    jobs = [(queues[i % QUEUES], {"http_request": {"url": url, "body": b"{}"}}) for i in range(DISPATCHED)]
    create_rate = create_many(client, jobs)
    resumed = time.time()
    for name in queues:
        client.resume_queue(name=name)
    rate = DISPATCHED / (counter.wait_for(DISPATCHED, timeout=120) - resumed)
    rep.add(f"create rate, 8 client threads:    {create_rate:7.0f} tasks/s")
    rep.add(
        f"dispatch rate, {DISPATCHED} tasks:      {rate:7.0f} tasks/s   ratio to 500: {rate / 500:.2f}  "
        + ("met" if rate >= 500 else "MISSED")
    )
    rep.add(f"  ({QUEUES} queues; their own rate limits allow {QUEUES * 500}/s plus a burst of 100 each)")
    rep.figure("cloudtasks_emulator.create_per_s", round(create_rate), unit="tasks/s")
    return rep.figure("cloudtasks_emulator.dispatch_per_s", round(rate), unit="tasks/s", at_least=500), create_rate


def measure_rest_create(rep: Report, rest_url: str, url: str, grpc_rate: float) -> None:
    """CreateTask over the REST face from 8 threads, each with its own keep-alive session."""
    queue = f"{PARENT}/queues/rest-create"
    with requests.Session() as admin:
        admin.post(f"{rest_url}/v2/{PARENT}/queues", json={"name": queue}, timeout=10).raise_for_status()
        admin.post(f"{rest_url}/v2/{queue}:pause", json={}, timeout=10).raise_for_status()
    body = {"task": {"httpRequest": {"url": url, "body": "e30=", "headers": {"Content-Type": "application/json"}}}}
    local = threading.local()

    def create(_: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        session.post(f"{rest_url}/v2/{queue}/tasks?alt=json", json=body, timeout=10).raise_for_status()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(REST_CREATES), chunksize=64))
    rate = REST_CREATES / (time.monotonic() - started)
    rep.add(f"create rate, REST, 8 client threads: {rate:5.0f} tasks/s   ({rate / grpc_rate:.2f}x the gRPC rate)")
    rep.figure("cloudtasks_emulator.rest_create_per_s", round(rate), unit="tasks/s")
    rep.figure("cloudtasks_emulator.rest_to_grpc_create_ratio", round(rate / grpc_rate, 2), unit="x")


def measure_idle(rep: Report, client: tasks_v2.CloudTasksClient, url: str, pid: int) -> bool:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    waiting = f"{PARENT}/queues/waiting"
    client.create_queue(parent=PARENT, queue={"name": waiting})
    task = {"http_request": {"url": url, "body": b"{}"}, "schedule_time": later}
    create_many(client, [(waiting, task)] * WAITING)
    time.sleep(1.0)  # let the create burst settle
    before = cpu_seconds(pid)
    time.sleep(IDLE_SECONDS)
    idle = 100 * (cpu_seconds(pid) - before) / IDLE_SECONDS
    rss = rss_mb(pid)
    idle_verdict, rss_verdict = ("met" if idle < 1 else "MISSED"), ("met" if rss < 150 else "MISSED")
    rep.add(f"idle CPU, {WAITING} tasks waiting: {idle:7.2f} %         target < 1 %     {idle_verdict}")
    rep.add(f"RSS, {WAITING} tasks waiting:      {rss:7.1f} MB        target < 150 MB  {rss_verdict}")
    ok = rep.figure("cloudtasks_emulator.idle_cpu_percent", round(idle, 2), unit="%", budget=1.0)
    return rep.figure("cloudtasks_emulator.rss_mb", round(rss, 1), unit="MB", budget=150.0) and ok


def main() -> int:
    counter = Counter()
    target = serve_target(counter)
    url = f"http://127.0.0.1:{target.server_port}/task"
    grpc_port, http_port = free_port(), free_port()
    rep = Report("cloudtasks", "jobrelay Cloud Tasks emulator benchmark")
    passed = True
    with tempfile.TemporaryDirectory() as tmp:
        proc = launch(grpc_port, http_port, log_path=Path(tmp) / "cloudtasks.log")
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
            rate_ok, grpc_create_rate = measure_rate(rep, client, url, counter)
            passed &= rate_ok
            passed &= measure_idle(rep, client, url, proc.pid)
            measure_rest_create(rep, f"http://127.0.0.1:{http_port}", url, grpc_create_rate)
        finally:
            proc.stop()
            target.shutdown()
    rep.add(f"result: {'PASS' if passed else 'FAIL'}")
    rep.write()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
