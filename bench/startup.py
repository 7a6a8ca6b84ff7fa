"""Start-up: process start to first successful request, for the API and the worker, against minimal services.

    .venv/bin/python -m bench.startup [RUNS]

What a Cloud Run cold start costs before an instance answers. With the local stack's emulators up
(and its worker, which runs what the API's tasks deliver), each subject is started as a fresh process
and timed from `Popen` until its first request succeeds (polled every 5 ms; refused connections are
retried), then stopped; subjects alternate, RUNS times each (default 7), and the medians are compared:
- api: the API as the stack runs it (functions-framework, `functions/main.py`); its first request is
  a real submit (`POST /v1/envs/dev/jobs` with an ID token: token check, Firestore create, task create);
- api floor: `bench.floor_service api` (plain WSGI under gunicorn, with the API's Google clients:
  Firestore, Cloud Tasks, a firebase-admin app); its first request creates a document and a task;
- worker: `python -m services.worker` (jobrelay.serve); first request `GET /healthz`;
- worker floor: `bench.floor_service worker` (Firestore and Cloud Tasks clients, google-auth's JWT
  module); first request `GET /healthz`.
Budget: each entry point <= 1.15x its floor. Writes bench/results/startup.txt and startup.json.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from bench.common import ENV, REPO, EmulatorSignIn, Report, local_stack, median
from bench.latency import api_argv, floor_service_env, start_floor
from jobrelay.local import procs
from jobrelay.local.stack import Stack

RUNS = 7
BUDGET = 1.15
POLL = 0.005
TIMEOUT = 60.0


@dataclass(frozen=True)
class Subject:
    name: str
    argv: Callable[[int], list[str]]
    env: Callable[[int], dict[str, str]]
    first: Callable[[requests.Session, str], bool]  # the first request; True when it succeeded


def started(subject: Subject, stack: Stack) -> float:
    """Seconds from process start until `subject`'s first request succeeded."""
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    session = requests.Session()
    t0 = time.perf_counter()
    proc = procs.start(
        subject.name, subject.argv(port), env=subject.env(port), log_path=stack.logs / "startup.log", cwd=REPO
    )
    try:
        while time.perf_counter() - t0 < TIMEOUT:
            try:
                if subject.first(session, url):
                    return time.perf_counter() - t0
            except requests.ConnectionError:
                pass
            if not proc.alive():
                raise RuntimeError(f"{subject.name} exited before answering (see {stack.logs / 'startup.log'})")
            time.sleep(POLL)
        raise RuntimeError(f"{subject.name} did not answer within {TIMEOUT:.0f} s")
    finally:
        proc.stop()
        session.close()


def subjects(stack: Stack, floor_run_url: str) -> dict[str, Subject]:
    signed = EmulatorSignIn(stack, ENV, "startup")
    spec = {"type": "echo", "payload": {"message": "first"}}

    def service_env(port: int) -> dict[str, str]:
        return {**stack.service_env(), "PORT": str(port), "HOST": "127.0.0.1"}

    def floor_env(port: int) -> dict[str, str]:
        return {**floor_service_env(stack, floor_run_url), "PORT": str(port)}

    def submit(session: requests.Session, url: str) -> bool:
        return session.post(f"{url}/v1/envs/{ENV}/jobs", json=spec, auth=signed, timeout=10).status_code == 202

    def floor_submit(session: requests.Session, url: str) -> bool:
        return session.post(f"{url}/jobs", json={"message": "first", "labels": {}}, timeout=10).status_code == 202

    def healthz(session: requests.Session, url: str) -> bool:
        return session.get(f"{url}/healthz", timeout=10).status_code == 200

    floor = [sys.executable, "-m", "bench.floor_service"]
    return {
        "api": Subject("api", api_argv, service_env, submit),
        "api floor": Subject("floor-api", lambda port: [*floor, "api"], floor_env, floor_submit),
        "worker": Subject("worker", lambda port: [sys.executable, "-m", "services.worker"], service_env, healthz),
        "worker floor": Subject("floor-worker", lambda port: [*floor, "worker"], floor_env, healthz),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    runs = int(args[0]) if args else RUNS
    rep = Report("startup", "jobrelay start-up to the first request against minimal services")
    times: dict[str, list[float]] = {}
    with local_stack(services=("worker",)) as stack:
        floor_proc, floor_run_url = start_floor(stack, stack.infra.env(ENV).project)
        try:
            subs = subjects(stack, floor_run_url)
            started(subs["api"], stack)  # warm the page cache and the emulators; not counted
            for run in range(runs):
                order = list(subs) if run % 2 == 0 else list(reversed(subs))
                for name in order:
                    times.setdefault(name, []).append(started(subs[name], stack))
        finally:
            floor_proc.stop()
    rep.add(f"median of {runs} fresh processes each, alternating; budget entry <= {BUDGET}x its floor")
    rep.add(f"{'':<14}{'entry ms':>10}{'floor ms':>10}{'ratio':>8}  verdict   (first request)")
    for entry, first in (("api", "a submit"), ("worker", "GET /healthz")):
        ours, base = median(times[entry]), median(times[f"{entry} floor"])
        ratio = ours / base
        rep.figure(
            f"startup_ratio.{entry}",
            round(ratio, 3),
            budget=BUDGET,
            note=f"{ours * 1000:.0f} ms / {base * 1000:.0f} ms",
        )
        rep.figure(f"startup_ms.{entry}", round(ours * 1000, 1), unit="ms")
        rep.figure(f"startup_ms.{entry}_floor", round(base * 1000, 1), unit="ms")
        verdict = "pass" if ratio <= BUDGET else "MISS"
        rep.add(f"{entry:<14}{ours * 1000:>10.0f}{base * 1000:>10.0f}{ratio:>8.2f}  {verdict:<9} ({first})")
    for name, values in times.items():
        rep.add(f"  {name}: " + ", ".join(f"{v * 1000:.0f}" for v in values) + " ms")
    rep.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
