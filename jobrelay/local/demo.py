"""`make demo`: the local stack, a small mixed workload in every env, live progress, a summary.

Exits non-zero if any job does not end the way it should (a `flaky` job with `fatal` is expected to
be dead-lettered; everything else to succeed). One row is a pipeline in dev (a diamond whose middle
step fans out to 20 children, docs/pipelines.md), shown with its steps' counts. On a terminal the
table is live; piped or in CI it is printed once at the end, wide enough for whole ids. The stack's
state (its OIDC signing key among it) lives in a temporary directory that is removed however the demo
ends.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.live import Live
from rich.table import Table

from jobrelay.cli_render import console as make_console
from jobrelay.local import authemu
from jobrelay.local.stack import REPO, Stack, StackOptions
from jobrelay.models import FINAL as FINAL_STATUSES

FINAL = {s.value for s in FINAL_STATUSES}
PIPELINE_FINAL = {"succeeded", "failed", "cancelled"}
PLANS = ("free", "pro", "team")
PIPELINE = {
    "name": "demo-diamond",
    "steps": {
        "export": {"type": "echo", "payload": {"message": "exported"}},
        "chunks": {
            "type": "fanout",
            "payload": {"count": 20, "child": {"type": "echo", "payload": {"message": "chunk"}}},
            "after": ["export"],
        },
        "check": {"type": "sleep", "payload": {"seconds": 1}, "after": ["export"]},
        "summary": {"type": "gather", "payload": {"children_of": "chunks"}, "after": ["chunks", "check"]},
    },
}


@dataclass
class DemoJob:
    env: str
    label: str
    spec: dict[str, Any]
    expect: str
    id: str = ""
    job: dict[str, Any] = field(default_factory=dict)
    route: str = "jobs"  # or "pipelines": the row is a whole pipeline

    @property
    def status(self) -> str:
        return str(self.job.get("status", "submitting"))

    @property
    def final(self) -> bool:
        return self.status in (PIPELINE_FINAL if self.route == "pipelines" else FINAL)


def workload() -> list[DemoJob]:
    report = {
        "type": "report",
        "payload": {"collection": "users", "group_by": "plan", "sum_fields": ["seats"]},
    }
    heavy = {
        "type": "script",
        "payload": {"script": "selfcheck", "args": {"lines": "5", "pause": "0.6", "exit_code": "0"}},
    }
    jobs = [
        DemoJob("prod", "report: users by plan", report, "succeeded"),
        DemoJob("prod", "pool: selfcheck script", heavy, "succeeded"),
        DemoJob("stg", "report: users by plan", report, "succeeded"),
        DemoJob("stg", "pool: selfcheck script", heavy, "succeeded"),
        DemoJob("dev", "report: users by plan", report, "succeeded"),
        DemoJob("dev", "pool: selfcheck script", heavy, "succeeded"),
        DemoJob("dev", "echo", {"type": "echo", "payload": {"message": "hello from the demo"}}, "succeeded"),
        DemoJob("dev", "sleep 4s (progress)", {"type": "sleep", "payload": {"seconds": 4}}, "succeeded"),
        DemoJob("dev", "flaky: fails twice, then works", {"type": "flaky", "payload": {"fail_times": 2}}, "succeeded"),
        DemoJob(
            "dev", "flaky: fatal error", {"type": "flaky", "payload": {"fail_times": 1, "fatal": True}}, "dead_lettered"
        ),
        DemoJob(
            "dev",
            "echo, delayed 3s",
            {"type": "echo", "payload": {"message": "later"}, "delay_seconds": 3},
            "succeeded",
        ),
        DemoJob("dev", "pipeline: diamond, fan-out of 20", PIPELINE, "succeeded", route="pipelines"),
    ]
    return jobs


def seed(stack: Stack) -> None:
    """Some users in every env's Firestore for the report to count."""
    from jobrelay import clients

    rng = random.Random(7)  # noqa: S311 - demo data, not security
    for env in stack.options.envs:
        db = clients.firestore_client(stack.infra.env(env).project)
        batch = db.batch()
        for i in range(60):
            batch.set(
                db.collection("users").document(f"user-{i:03d}"),
                {"plan": rng.choice(PLANS), "seats": rng.randint(1, 20)},
            )
        batch.commit()


def table(jobs: list[DemoJob]) -> Table:
    t = Table(title="jobrelay demo")
    for col in ("env", "job", "id", "status", "attempt", "progress", "expected"):
        t.add_column(col)
    for j in jobs:
        p = j.job.get("progress") or {}
        progress = ""
        if j.route == "pipelines" and j.job.get("counts"):
            counts = j.job["counts"]
            progress = f"{counts.get('succeeded', 0)}/{counts.get('total', 0)} steps succeeded"
        elif p.get("total"):
            progress = f"{p.get('done', 0):g}/{p['total']:g} {p.get('message') or ''}"
        elif j.job.get("log_tail"):
            progress = str(j.job["log_tail"][-1])  # scripts stream their output instead
        ok = j.status == j.expect
        colour = "green" if ok else ("red" if j.final else "yellow")
        t.add_row(
            j.env,
            j.label,
            j.id,
            f"[{colour}]{j.status}[/]",
            str(j.job.get("attempt", "")),
            progress[:40],
            j.expect,
        )
    return t


def run(stack: Stack, console: Console, timeout: float = 120) -> int:
    api = stack.url("api")
    jobs = workload()
    # demo-user signs in once per env through the stack's Auth emulator, with the reporter role.
    tokens = {
        env: authemu.sign_in(stack.auth_host, stack.infra.env(env).project, "demo-user", roles=("reporter",)).id_token
        for env in {j.env for j in jobs}
    }
    for j in jobs:
        token = tokens[j.env]
        r = requests.post(
            f"{api}/v1/envs/{j.env}/{j.route}",
            json=j.spec,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        if r.status_code != 202:
            console.print(f"[red]submit of {j.label} in {j.env} failed: {r.status_code} {r.text}[/]")
            return 1
        j.job = r.json()
        j.id = j.job["id"]
    deadline = time.monotonic() + timeout

    def poll() -> bool:
        for j in jobs:
            if j.final:
                continue
            token = tokens[j.env]
            r = requests.get(
                f"{api}/v1/envs/{j.env}/{j.route}/{j.id}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            j.job = r.json()
        return all(j.final for j in jobs)

    if console.is_terminal:
        with Live(table(jobs), console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline and not poll():
                live.update(table(jobs))
                time.sleep(0.5)
            live.update(table(jobs))
    else:  # piped or in CI: one table, once every job has ended (or the time is up)
        console.print(f"waiting for {len(jobs)} jobs ...")
        while time.monotonic() < deadline and not poll():
            time.sleep(0.5)
        console.print(table(jobs))
    wrong = [j for j in jobs if j.status != j.expect]
    for j in jobs:
        if j.job.get("error"):
            console.print(f"{j.env} {j.label}: last error {j.job['error']['type']}: {j.job['error']['message']}")
    if wrong:
        console.print(
            f"[red]{len(wrong)} job(s) did not end as expected: "
            f"{', '.join(f'{j.label} ({j.status})' for j in wrong)}[/]"
        )
        return 1
    console.print(f"[green]all {len(jobs)} jobs ended as expected[/]")
    return 0


@contextlib.contextmanager
def state_dir() -> Iterator[Path]:
    """A private directory for the demo stack's state, removed at the end whatever happens."""
    with tempfile.TemporaryDirectory(prefix="jobrelay-demo-") as d:
        yield Path(d)


def main() -> None:
    console: Console = make_console()
    console.print("starting the local stack (Firestore, Pub/Sub, Cloud Tasks emulators, API, worker, ...)")
    with state_dir() as state:
        stack = Stack(
            StackOptions(
                state_dir=state,
                infra_dir=REPO / "infra",
                tick_seconds=0,
                lease_seconds=10,
            )
        )
        started = time.monotonic()
        code = 1
        try:
            stack.start()
            console.print(f"stack ready in {time.monotonic() - started:.1f}s: API {stack.url('api')}")
            seed(stack)
            code = run(stack, console)
        finally:
            stack.stop()
            if code != 0:
                console.print(f"logs kept in {keep_logs(stack.logs)}")
    sys.exit(code)


def keep_logs(logs: Path, into: Path = REPO / ".jobrelay" / "demo-logs") -> Path:
    """Copy the services' logs (not the rest of the state: it holds a private key) out of the temp dir."""
    shutil.rmtree(into, ignore_errors=True)
    if logs.exists():
        shutil.copytree(logs, into)
    return into


if __name__ == "__main__":
    main()
