"""Submit and end-to-end latency of jobrelay against the floor, on the same emulators in the same run.

    .venv/bin/python -m bench.latency [ROUNDS]

Starts the local stack (emulators, API, worker), the floor's run handler (`bench.floor`), the floor's
submit service (`bench.floor_service api`: plain WSGI under gunicorn with functions-framework's
settings, creating the document then the task) and a second jobrelay API whose submit creates the
document and the task at once (`JOBRELAY_SUBMIT_OVERLAP=1`, docs/adr/0012). Each round runs, one at
a time and in a rotating order, after a discarded warm-up:
- script: this process creates the document and the task with the official clients (no HTTP);
- floor: `POST /jobs` to the floor service; Cloud Tasks delivers to the floor's run handler, which
  claims and finishes the job in Firestore;
- jobrelay: `POST /v1/envs/dev/jobs` to the API (keep-alive session, local ID token); Cloud Tasks
  delivers to the real worker (gunicorn), which claims, runs and finishes it;
- overlap: the same through the second API.
Submit latency is what the caller waits for. End-to-end runs from submit start until a Firestore
listener (`on_snapshot`, started before the submit on a query that matches only that job, the same
for all) sees the document succeed. Budget, against the floor service (every real service has the
HTTP hop): p50 <= 1.3x, p99 <= 1.5x; the script's figures are printed beside them for context.
A delivery that found no document yet (overlap only) is counted from the worker's log.
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
SUBJECTS = ("script", "floor", "jobrelay", "overlap")
RACE_LINE = "found no document yet"  # jobrelay.runtime's line for a delivery that overtook its document

Sample = tuple[float, float]  # (submit seconds, end-to-end seconds)


@dataclass
class Measured:
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {s: [] for s in SUBJECTS})
    # Diagnostics, one per round: the floor's two calls, the API's bare HTTP round trip
    # (GET /healthz), and how long the listener takes to see a plain write once it returned.
    floor_doc: list[float] = field(default_factory=list)
    floor_task: list[float] = field(default_factory=list)
    api_http: list[float] = field(default_factory=list)
    listener: list[float] = field(default_factory=list)
    races: int = 0  # overlap deliveries that found no document yet
    overlap_jobs: int = 0


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


def floor_service_env(stack: Stack, run_url: str) -> dict[str, str]:
    """What `bench.floor_service` is told: the stack's emulators, the queue and where tasks deliver."""
    env = stack.infra.env(ENV)
    queue = f"projects/{env.project}/locations/{env.region}/queues/{stack.infra.classes['A'].queue}"
    return {
        **stack.client_env(),
        "PYTHONUNBUFFERED": "1",
        "FLOOR_PROJECT": env.project,
        "FLOOR_QUEUE": queue,
        "FLOOR_RUN_URL": run_url,
        "FLOOR_INVOKER": env.service_accounts.tasks_invoker,
    }


def start_service(name: str, argv: list[str], env: dict[str, str], stack: Stack) -> tuple[procs.Proc, str]:
    """A process that serves HTTP on the free port in env["PORT"], once `GET /healthz` answers."""
    proc = procs.start(name, argv, env=env, log_path=stack.logs / f"{name}.log", cwd=REPO)
    url = f"http://127.0.0.1:{env['PORT']}"
    try:
        procs.wait_until(lambda: requests.get(f"{url}/healthz", timeout=1).ok, timeout=60, what=name, proc=proc)
    except BaseException:
        proc.stop()
        raise
    return proc, url


def api_argv(port: int) -> list[str]:
    """The API as the local stack runs it (functions-framework, jobrelay.local.stack)."""
    source = REPO / "functions" / "main.py"
    return [sys.executable, "-m", "functions_framework", "--target=api", f"--source={source}", "--host=127.0.0.1",
            f"--port={port}"]  # fmt: skip


def jobrelay_echo(api: ApiClient, db: firestore.Client, tag: str, i: int) -> Sample:
    """One echo job through the API: (submit seconds, seconds until a listener sees it succeeded)."""
    done = Arrival(db, "jobs", tag)
    started = time.perf_counter()
    api.submit({"type": "echo", "payload": {"message": str(i)}, "labels": {"bench": tag}})
    submitted = time.perf_counter()
    return submitted - started, done.wait() - started


class Paths:
    """The ways to run a job, and the probes, over one set of clients."""

    def __init__(self, stack: Stack, floor_run_url: str, floor_api: str, overlap_api: str, out: Measured) -> None:
        self.env = stack.infra.env(ENV)
        self.out = out
        self.floor_run_url = floor_run_url
        self.db = firestore.Client(project=self.env.project)
        channel = grpc.insecure_channel(stack.client_env()["CLOUD_TASKS_EMULATOR_HOST"])
        self.tasks = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        self.queue = self.tasks.queue_path(self.env.project, self.env.region, stack.infra.classes["A"].queue)
        self.api = ApiClient(stack, uid="latency")
        self.overlap_api = ApiClient(stack, uid="latency-overlap", api_url=overlap_api)
        self.floor_api = f"{floor_api}/jobs"
        self.floor_session = requests.Session()
        self.healthz = f"{stack.url('api')}/healthz"
        self.run_id = time.strftime("%H%M%S")

    def job(self, subject: str, i: int) -> Sample:
        if subject == "script":
            return self.script_job(i)
        if subject == "floor":
            return self.floor_job(i)
        api = self.api if subject == "jobrelay" else self.overlap_api
        return jobrelay_echo(api, self.db, f"{subject}-{self.run_id}-{i}", i)

    def script_job(self, i: int) -> Sample:
        job_id = f"floor-{self.run_id}-{i}"
        tag = f"script-{self.run_id}-{i}"
        done = Arrival(self.db, floor.COLLECTION, tag)
        started = time.perf_counter()
        created = floor.submit(
            self.db,
            self.tasks,
            queue=self.queue,
            url=self.floor_run_url,
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

    def floor_job(self, i: int) -> Sample:
        tag = f"floor-{self.run_id}-{i}"
        done = Arrival(self.db, floor.COLLECTION, tag)
        started = time.perf_counter()
        r = self.floor_session.post(self.floor_api, json={"message": str(i), "labels": {"bench": tag}}, timeout=30)
        if r.status_code != 202:
            raise RuntimeError(f"floor service answered {r.status_code}: {r.text[:300]}")
        submitted = time.perf_counter()
        return submitted - started, done.wait() - started

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


def order(r: int) -> tuple[str, ...]:
    """Each subject in each position equally often: rotate, and reverse every other round."""
    k = r % len(SUBJECTS)
    rotated = SUBJECTS[k:] + SUBJECTS[:k]
    return rotated if r % 2 == 0 else tuple(reversed(rotated))


def measure(rounds: int, rep: Report) -> Measured:
    out = Measured()
    with local_stack(services=("api", "worker", "deadletter")) as stack:
        started: list[procs.Proc] = []
        try:
            proc, floor_run_url = start_floor(stack, stack.infra.env(ENV).project)
            started.append(proc)
            port = procs.free_port()
            proc, floor_api = start_service(
                "floor-api",
                [sys.executable, "-m", "bench.floor_service", "api"],
                {**floor_service_env(stack, floor_run_url), "PORT": str(port)},
                stack,
            )
            started.append(proc)
            port = procs.free_port()
            env = {**stack.service_env(), "PORT": str(port), "HOST": "127.0.0.1", "JOBRELAY_SUBMIT_OVERLAP": "1"}
            proc, overlap_api = start_service("api-overlap", api_argv(port), env, stack)
            started.append(proc)
            worker_log = stack.logs / "worker.log"
            races_before = worker_log.read_text().count(RACE_LINE) if worker_log.exists() else 0
            paths = Paths(stack, floor_run_url, floor_api, overlap_api, out)
            for r in range(WARM_UP + rounds):
                for subject in order(r):
                    sample = paths.job(subject, r)
                    if r >= WARM_UP:
                        out.samples[subject].append(sample)
                paths.probe(r)
            out.overlap_jobs = WARM_UP + rounds
            out.races = worker_log.read_text().count(RACE_LINE) - races_before
            restarts = sum(s.restarts for s in stack.services.values())
            rep.add(f"{rounds} rounds (rotating order) after {WARM_UP} warm-up rounds; service restarts: {restarts}")
        finally:
            for proc in reversed(started):
                proc.stop()
    return out


def ms(values: Iterable[float], q: float) -> float:
    return percentile(values, q) * 1000


def report(rep: Report, m: Measured) -> None:
    """The table, the budget figures (jobrelay against the floor service) and the context figures."""
    rep.add(f"{'':<18}{'script':>9}{'floor':>9}{'jobrelay':>10}{'overlap':>9}{'ratio':>8}{'budget':>8}  verdict")
    for index, what, metric in ((0, "submit", "submit_latency_ratio"), (1, "end-to-end", "e2e_latency_ratio")):
        for q, target in TARGETS.items():
            values = {s: ms((x[index] for x in m.samples[s]), q) for s in SUBJECTS}
            ratio = values["jobrelay"] / values["floor"]
            ok, _ = verdict(ratio, target)
            rep.figure(
                f"{metric}.p{q}",
                round(ratio, 3),
                budget=target,
                note=f"{values['jobrelay']:.1f} ms / {values['floor']:.1f} ms (the floor service, over HTTP)",
            )
            overlap = values["overlap"] / values["floor"]
            rep.figure(
                f"{metric}.overlap_p{q}",
                round(overlap, 3),
                note=f"document and task at once (ADR 0012): {values['overlap']:.1f} ms / {values['floor']:.1f} ms",
            )
            rep.figure(
                f"{metric}.vs_script_p{q}",
                round(values["jobrelay"] / values["script"], 3),
                note=f"context: against the in-process script, {values['script']:.1f} ms",
            )
            rep.add(
                f"{what + f' p{q}':<18}"
                + "".join(f"{values[s]:>{w}.1f}" for s, w in zip(SUBJECTS, (9, 9, 10, 9), strict=True))
                + f"{ratio:>8.2f}{target:>8.1f}  {'pass' if ok else 'MISS'}   (overlap {overlap:.2f})"
            )
    for q in (50, 99):
        after = {s: ms((e - b for b, e in m.samples[s]), q) for s in SUBJECTS}
        rep.add(
            f"{f'after submit p{q}':<18}"
            + "".join(f"{after[s]:>{w}.1f}" for s, w in zip(SUBJECTS, (9, 9, 10, 9), strict=True))
            + f"{after['jobrelay'] / after['floor']:>8.2f}   (end-to-end minus submit)"
        )
    rate = m.races / m.overlap_jobs if m.overlap_jobs else 0.0
    rep.add(
        f"overlap: {m.races} of {m.overlap_jobs} deliveries found no document yet ({rate:.1%}); each cost one more "
        "read, and a Cloud Tasks retry when the document was still missing after the worker's short wait"
    )
    rep.figure("submit_overlap.races_per_job", round(rate, 4), unit="per job", note=f"{m.races} of {m.overlap_jobs}")
    rep.add("diagnostics, p50 (p99) per round:")
    rep.add(f"  script document create     {ms(m.floor_doc, 50):6.1f} ({ms(m.floor_doc, 99):.1f}) ms")
    rep.add(f"  script task create         {ms(m.floor_task, 50):6.1f} ({ms(m.floor_task, 99):.1f}) ms")
    rep.add(f"  API round trip, /healthz   {ms(m.api_http, 50):6.1f} ({ms(m.api_http, 99):.1f}) ms")
    rep.add(f"  listener delay after write {ms(m.listener, 50):6.1f} ({ms(m.listener, 99):.1f}) ms")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rounds = int(args[0]) if args else ROUNDS
    rep = Report("latency", "jobrelay latency against the floor")
    report(rep, measure(rounds, rep))
    rep.write()
    return 0  # a missed budget is marked in the table; only a benchmark that could not run fails


if __name__ == "__main__":
    sys.exit(main())
