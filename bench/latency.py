"""Submit and end-to-end latency of jobrelay against the floor, on the same emulators in the same run.

    .venv/bin/python -m bench.latency [ROUNDS]

Starts the local stack (emulators, API, worker) and the floor's handler (`bench.floor`). Each round
runs one floor job and one jobrelay echo job, one at a time, in alternating order (ABBA), after a
discarded warm-up:
- floor: this process creates the document and the task with the official clients; Cloud Tasks
  delivers to the bare handler, which claims and finishes the job in Firestore;
- jobrelay: `POST /v1/envs/dev/jobs` to the API (keep-alive session, local ID token); Cloud Tasks
  delivers to the real worker (gunicorn), which claims, runs and finishes it.
Submit latency is what the caller waits for (floor: the two creates; jobrelay: the HTTP answer).
End-to-end runs from submit start until a Firestore listener (`on_snapshot`, started before the
submit on a query that matches only that job, the same for both) sees the document succeed.
Targets: p50 <= 1.3x the floor, p99 <= 1.5x.
Writes what it prints to bench/results/latency.txt.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import requests
from google.cloud import firestore, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from bench import floor
from bench.common import ENV, REPO, ApiClient, Report, local_stack, percentile, verdict
from jobrelay.local import procs
from jobrelay.local.stack import Stack

ROUNDS = 400
WARM_UP = 20
TARGETS = {50: 1.3, 99: 1.5}

Sample = tuple[float, float]  # (submit seconds, end-to-end seconds)


@dataclass
class Measured:
    floor: list[Sample] = field(default_factory=list)
    jobrelay: list[Sample] = field(default_factory=list)
    # Diagnostics, one per round: the floor's two calls, the API's bare HTTP round trip
    # (GET /healthz), and how long the listener takes to see a plain write once it returned.
    floor_doc: list[float] = field(default_factory=list)
    floor_task: list[float] = field(default_factory=list)
    api_http: list[float] = field(default_factory=list)
    listener: list[float] = field(default_factory=list)


class Arrival:
    """When one job's document is first seen succeeded, by a Firestore listener started beforehand.

    The listener's query matches only this job (`labels.bench == tag`), so what it costs does not
    grow with the collection (a listener on the whole collection slows down as documents pile up).
    """

    def __init__(self, client: firestore.Client, collection: str, tag: str) -> None:
        self.at: float | None = None
        self._ready = threading.Event()
        self._seen = threading.Event()
        query = (
            client.collection(collection)
            .where(filter=firestore.FieldFilter("labels.bench", "==", tag))
            .where(filter=firestore.FieldFilter("status", "==", "succeeded"))
        )
        self._watch: Any = query.on_snapshot(self._on_snapshot)
        if not self._ready.wait(30):
            raise RuntimeError(f"listener on {collection} did not start")

    def _on_snapshot(self, docs: list[Any], changes: list[Any], read_time: Any) -> None:
        if docs and self.at is None:
            self.at = time.perf_counter()
            self._seen.set()
        self._ready.set()

    def wait(self, timeout: float = 30.0) -> float:
        """perf_counter() of the moment the document was seen succeeded."""
        try:
            if not self._seen.wait(timeout) or self.at is None:
                raise RuntimeError(f"job not seen succeeded within {timeout:.0f}s")
            return self.at
        finally:
            self._watch.unsubscribe()


def start_floor(stack: Stack, project: str) -> tuple[procs.Proc, str]:
    port = procs.free_port()
    proc = procs.start(
        "floor",
        [sys.executable, "-m", "bench.floor", str(port), project],
        env={**stack.client_env(), "PYTHONUNBUFFERED": "1"},
        log_path=stack.logs / "floor.log",
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    procs.wait_until(lambda: requests.get(url, timeout=1).ok, timeout=30, what="floor handler", proc=proc)
    return proc, f"{url}/v1/run"


def jobrelay_echo(api: ApiClient, db: firestore.Client, tag: str, i: int) -> Sample:
    """One echo job through the API: (submit seconds, seconds until a listener sees it succeeded)."""
    done = Arrival(db, "jobs", tag)
    started = time.perf_counter()
    api.submit({"type": "echo", "payload": {"message": str(i)}, "labels": {"bench": tag}})
    submitted = time.perf_counter()
    return submitted - started, done.wait() - started


class Paths:
    """The two ways to run a job, and the probes, over one set of clients."""

    def __init__(self, stack: Stack, floor_url: str, out: Measured) -> None:
        self.env = stack.infra.env(ENV)
        self.out = out
        self.floor_url = floor_url
        self.db = firestore.Client(project=self.env.project)
        channel = grpc.insecure_channel(stack.client_env()["CLOUD_TASKS_EMULATOR_HOST"])
        self.tasks = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        self.queue = self.tasks.queue_path(self.env.project, self.env.region, stack.infra.classes["A"].queue)
        self.api = ApiClient(stack, uid="latency")
        self.healthz = f"{stack.url('api')}/healthz"
        self.run_id = time.strftime("%H%M%S")

    def floor_job(self, i: int) -> Sample:
        job_id = f"floor-{self.run_id}-{i}"
        tag = f"floor-{self.run_id}-{i}"
        done = Arrival(self.db, floor.COLLECTION, tag)
        started = time.perf_counter()
        created = floor.submit(
            self.db,
            self.tasks,
            queue=self.queue,
            url=self.floor_url,
            invoker=self.env.service_accounts.tasks_invoker,
            job_id=job_id,
            owner="latency",
            message=str(i),
            labels={"bench": tag},
        )
        submitted = time.perf_counter()
        self.out.floor_doc.append(created - started)
        self.out.floor_task.append(submitted - created)
        return submitted - started, done.wait() - started

    def jobrelay_job(self, i: int) -> Sample:
        return jobrelay_echo(self.api, self.db, f"jobrelay-{self.run_id}-{i}", i)

    def probe(self, i: int) -> None:
        """The diagnostics of one round (between jobs, never overlapping them)."""
        tag = f"probe-{self.run_id}-{i}"
        done = Arrival(self.db, "latency_probe", tag)
        started = time.perf_counter()
        self.api.session.get(self.healthz, timeout=10).raise_for_status()
        self.out.api_http.append(time.perf_counter() - started)
        self.db.collection("latency_probe").document(tag).set({"status": "succeeded", "labels": {"bench": tag}})
        written = time.perf_counter()
        self.out.listener.append(done.wait() - written)


def measure(rounds: int, rep: Report) -> Measured:
    out = Measured()
    with local_stack(services=("api", "worker", "deadletter")) as stack:
        proc, floor_url = start_floor(stack, stack.infra.env(ENV).project)
        try:
            paths = Paths(stack, floor_url, out)
            for r in range(WARM_UP + rounds):
                if r < WARM_UP:
                    paths.floor_job(r)
                    paths.jobrelay_job(r)
                    continue
                if r % 2 == 0:
                    out.floor.append(paths.floor_job(r))
                    out.jobrelay.append(paths.jobrelay_job(r))
                else:
                    out.jobrelay.append(paths.jobrelay_job(r))
                    out.floor.append(paths.floor_job(r))
                paths.probe(r)
            restarts = sum(s.restarts for s in stack.services.values())
            rep.add(f"{rounds} rounds (ABBA order) after {WARM_UP} warm-up rounds; service restarts: {restarts}")
        finally:
            proc.stop()
    return out


def ms(values: Iterable[float], q: float) -> float:
    return percentile(values, q) * 1000


def report(rep: Report, m: Measured) -> bool:
    rep.add(f"{'':<18}{'floor ms':>10}{'jobrelay ms':>13}{'ratio':>8}{'target':>8}   verdict")
    passed = True
    for index, what, metric in ((0, "submit", "submit_latency_ratio"), (1, "end-to-end", "e2e_latency_ratio")):
        for q, target in TARGETS.items():
            base = ms((s[index] for s in m.floor), q)
            ours = ms((s[index] for s in m.jobrelay), q)
            ok, _ = verdict(ours / base, target)
            passed &= ok
            rep.figure(f"{metric}.p{q}", round(ours / base, 3), budget=target, note=f"{ours:.1f} ms / {base:.1f} ms")
            rep.add(
                f"{what + f' p{q}':<18}{base:>10.1f}{ours:>13.1f}{ours / base:>8.2f}{target:>8.1f}   "
                + ("PASS" if ok else "FAIL")
            )
    for q in (50, 99):
        base = ms((e - s for s, e in m.floor), q)
        ours = ms((e - s for s, e in m.jobrelay), q)
        rep.add(f"{f'after submit p{q}':<18}{base:>10.1f}{ours:>13.1f}{ours / base:>8.2f}   (end-to-end minus submit)")
    rep.add(f"result: {'PASS' if passed else 'FAIL'}")
    rep.add("diagnostics, p50 (p99) per round:")
    rep.add(f"  floor document create      {ms(m.floor_doc, 50):6.1f} ({ms(m.floor_doc, 99):.1f}) ms")
    rep.add(f"  floor task create          {ms(m.floor_task, 50):6.1f} ({ms(m.floor_task, 99):.1f}) ms")
    rep.add(f"  API round trip, /healthz   {ms(m.api_http, 50):6.1f} ({ms(m.api_http, 99):.1f}) ms")
    rep.add(f"  listener delay after write {ms(m.listener, 50):6.1f} ({ms(m.listener, 99):.1f}) ms")
    return passed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rounds = int(args[0]) if args else ROUNDS
    rep = Report("latency", "jobrelay latency against the floor")
    passed = report(rep, measure(rounds, rep))
    rep.write()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
