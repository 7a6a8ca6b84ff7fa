"""Cold start: importing each entry point against importing the Google client libraries it uses.

    .venv/bin/python -m bench.coldstart [RUNS]

Each measurement is a fresh `python -c` subprocess that times its own imports (perf_counter around
the import, so interpreter start-up is left out). Per run, for every entry point, the entry point
and its Google libraries are measured back to back in alternating order; the median of RUNS (default
9) runs is compared: target entry <= 1.3x libraries. The same run also times the floor: the Google
libraries plus the other libraries the entry cannot start without (pydantic, pydantic-settings, PyYAML;
functions-framework for the API), so the table shows how much of the ratio those libraries take and
how much is jobrelay's own (entry / floor). Importing an entry module also builds its
Deployment (settings, infra, registry), so the subprocesses get the variables the local stack gives
its services (emulator hosts on ports nothing listens on: nothing is contacted). A last run with
`python -X importtime` lists the heaviest imports beyond the Google libraries, by top-level package
(self time summed, so nothing is counted twice). Writes what it prints to bench/results/coldstart.txt.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, Report, median, verdict
from jobrelay.local import procs
from jobrelay.local.stack import SERVICES, Stack, StackOptions

RUNS = 9
TARGET = 1.3
MARK = "--- entry point ---"


@dataclass(frozen=True)
class Entry:
    name: str
    code: str  # what importing (building) the entry point runs
    google: tuple[str, ...]  # the Google client libraries its requests use
    why: str
    # The other libraries it cannot start without, which the project standardizes on (STYLE/README):
    # pydantic (models, settings), PyYAML (infra/*.yaml), and functions-framework for the API.
    frameworks: tuple[str, ...] = ("pydantic", "pydantic_settings", "yaml")


ENTRIES = (
    Entry(
        "api",
        "import functions.main",
        (
            "google.cloud.firestore",
            "google.cloud.tasks_v2",
            "firebase_admin.auth",
            "google.oauth2.id_token",
            "google.auth.transport.requests",
        ),
        "jobs in Firestore, tasks, Firebase ID tokens, OIDC tokens (cron, operators)",
        ("pydantic", "pydantic_settings", "yaml", "functions_framework"),
    ),
    Entry(
        "worker",
        "import services.worker.main",
        ("google.cloud.firestore", "google.cloud.tasks_v2", "google.oauth2.id_token", "google.auth.transport.requests"),
        "claim/finish in Firestore, re-dispatch tasks, verify the task's OIDC token",
    ),
    Entry(
        "deadletter",
        "import services.deadletter.main",
        ("google.cloud.firestore", "google.oauth2.id_token", "google.auth.transport.requests"),
        "records in Firestore, verifies the push's OIDC token",
    ),
    Entry(
        "muscle",
        "import services.muscle.__main__ as m; m.build()",
        ("google.cloud.pubsub_v1", "google.cloud.firestore"),
        "pulls from Pub/Sub, claims/finishes in Firestore",
    ),
)


def service_env(tmp: Path) -> dict[str, str]:
    """What the local stack gives its services, with ports that nothing listens on."""
    stack = Stack(StackOptions(state_dir=tmp))
    for name in ("firestore", "pubsub", "cloudtasks", "cloudtasks_http", "auth", *SERVICES):
        stack.ports[name] = procs.free_port()
    (tmp / "secrets").mkdir(exist_ok=True)
    return {**os.environ, **stack.service_env()}


def timed(code: str, env: dict[str, str]) -> float:
    """Seconds `code` takes in a fresh interpreter (start-up excluded)."""
    script = f"import time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def imports(libs: tuple[str, ...]) -> str:
    return "\n".join(f"import {lib}" for lib in libs)


@dataclass
class Heaviest:
    """What an entry point imports beyond its Google libraries, from one `-X importtime` run."""

    by_package: list[tuple[str, float]]  # self time summed per top-level package: nothing counted twice
    by_module: list[tuple[str, float]]  # cumulative time of modules at most two imports below the entry


def heaviest(entry: Entry, env: dict[str, str], top: int = 10) -> Heaviest:
    script = f"{imports(entry.google)}\nimport sys\nsys.stderr.write({MARK!r} + '\\n')\n{entry.code}\n"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"importtime of {entry.name} failed:\n{out.stderr[-2000:]}")
    packages: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    for line in out.stderr.split(MARK, 1)[1].splitlines():
        fields = line.split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[1].strip().isdigit():
            continue  # not a timing line, or the header
        self_us, cumulative_us = int(fields[0].split(":")[1]), int(fields[1])
        name = fields[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2  # 0: imported by the entry's own line
        name = name.strip()
        package = name.split(".")[0]
        if package in ("google", "firebase_admin"):
            package = ".".join(name.split(".")[:3])  # a Google module its libraries did not load
        packages[package] += self_us
        if 1 <= depth <= 2 or (depth == 0 and name not in entry.code):
            modules[name] += cumulative_us
    return Heaviest(
        by_package=[(name, us / 1e6) for name, us in packages.most_common(top)],
        by_module=[(name, us / 1e6) for name, us in modules.most_common(top)],
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    runs = int(args[0]) if args else RUNS
    rep = Report("coldstart", "jobrelay cold start against the Google client libraries")
    passed = True
    with tempfile.TemporaryDirectory(prefix="jobrelay-coldstart-") as tmp:
        env = service_env(Path(tmp))
        times: dict[str, tuple[list[float], list[float], list[float]]] = {e.name: ([], [], []) for e in ENTRIES}
        for run in range(runs):
            for entry in ENTRIES:
                ours, theirs, floor = times[entry.name]
                subjects = [
                    (ours, entry.code),
                    (theirs, imports(entry.google)),
                    (floor, imports(entry.google + entry.frameworks)),
                ]
                for into, code in subjects if run % 2 == 0 else reversed(subjects):
                    into.append(timed(code, env))
        rep.add(f"median of {runs} fresh interpreters each, alternating; target entry <= {TARGET}x its Google libs")
        rep.add(f"{'entry point':<12}{'entry ms':>10}{'google ms':>11}{'ratio':>8}   verdict")
        for entry in ENTRIES:
            entry_s, google_s, _ = (median(v) for v in times[entry.name])
            ok, text = verdict(entry_s / google_s, TARGET)
            passed &= ok
            rep.figure(
                f"cold_start_ratio.{entry.name}",
                round(entry_s / google_s, 3),
                budget=TARGET,
                note=f"{entry_s * 1000:.0f} ms / {google_s * 1000:.0f} ms",
            )
            rep.add(
                f"{entry.name:<12}{entry_s * 1000:>10.0f}{google_s * 1000:>11.0f}{entry_s / google_s:>8.2f}   {text}"
            )
        rep.add("the floor: Google libs plus the libraries the entry cannot start without (same run)")
        rep.add(f"{'entry point':<12}{'floor ms':>10}{'floor ratio':>13}{'entry/floor':>13}   libraries")
        for entry in ENTRIES:
            entry_s, google_s, floor_s = (median(v) for v in times[entry.name])
            rep.add(
                f"{entry.name:<12}{floor_s * 1000:>10.0f}{floor_s / google_s:>13.2f}{entry_s / floor_s:>13.2f}   "
                + ", ".join(entry.frameworks)
            )
            rep.figure(f"cold_start_floor_ratio.{entry.name}", round(floor_s / google_s, 3))
            rep.figure(f"cold_start_over_floor.{entry.name}", round(entry_s / floor_s, 3))
        for entry in ENTRIES:
            rep.add(f"{entry.name}: Google libs {', '.join(entry.google)} ({entry.why})")
            heavy = heaviest(entry, env)
            rep.add("  heaviest imports beyond them, one -X importtime run (ms); by package, self time:")
            rep.add("    " + ", ".join(f"{name} {sec * 1000:.0f}" for name, sec in heavy.by_package))
            rep.add("  by module, cumulative (up to two imports below the entry):")
            rep.add("    " + ", ".join(f"{name} {sec * 1000:.0f}" for name, sec in heavy.by_module))
    rep.add(f"result: {'PASS' if passed else 'FAIL'}")
    rep.write()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
