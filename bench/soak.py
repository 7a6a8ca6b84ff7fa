"""Soak: 10,000 mixed jobs in dev, stg and prod, the worker and the pool SIGKILLed at random points.

    .venv/bin/python -m bench.soak [JOBS] [--seed N]        (make soak: the default 10,000)

How it works
- Infra: the stack runs on a copy of infra/ made for the soak, and the output says so: test job
  types (`allow_test_jobs`) in all three envs, and every class's retry backoff cut to 1-4 s (the real
  classes wait up to 60-600 s between attempts; a soak that waited for that would take hours). Max
  attempts, rates, routes, caps and slots stay as infra/ has them. The pool subscriptions' Pub/Sub
  redelivery backoff is 1 s (the cloud's is 10 s), as in the e2e tests.
- Stack: API, worker, dead-letter service and the Elastic Muscle pool (6 slots; prod 2, stg 2, dev 4),
  leases of 10 s, the scheduler ticking so the maintenance pass runs every minute as in the cloud.
- Mix (seeded RNG; the seed is printed and `--seed` repeats a run): each job goes to a random env and is
  one of these kinds, with the final status it must reach:
    ok          echo                                   80 %  succeeded, first time
    retry       flaky, fails 1-2 times, then succeeds  10 %  succeeded (Cloud Tasks retries it)
    fatal       flaky, raises Fatal                      5 %  dead_lettered
    pool_ok     script selfcheck, exit 0 (class D)      3 %  succeeded on the pool
    pool_retry  flaky on class D, fails once            1 %  succeeded on the pool (Pub/Sub redelivers)
    pool_fatal  script selfcheck, exit 3 (class D)      1 %  dead_lettered from the pool
  Jobs go in through `POST /v1/envs/{env}/jobs:batch`, up to 500 per call, one user per batch (a user
  may submit 600 a minute per env), the batches of the three envs interleaved.
- Kills: the worker is SIGKILLed once a random fraction (10-60 %) of all jobs is final, and the pool
  once a random fraction (15-60 %) of the pool jobs is final, at a moment its /healthz shows jobs
  running. The stack's supervisor restarts each. Jobs caught running come back when their lease ends
  (a late delivery or the maintenance pass reclaims them as a new attempt).
- End: it waits until every job is final and the dead letters have arrived, and, when the pool was
  killed, until the killed pool's Pub/Sub messages (ack deadline 60 s) have come back too; then checks.

How to read it: one PASS/FAIL line per check, each also a figure in bench/results/soak.json:
- none lost: every accepted id has a document in its env's Firestore, in a final state;
- counts: per env and per kind, succeeded == ok + retry + pool kinds that succeed, dead_lettered ==
  the fatal kinds; any job whose final status is not its kind's is listed;
- none succeeded twice: at most one "job <id> succeeded" line per job in worker.log and muscle.log
  (every life of both), and no such line for a job that did not succeed. A kill between the finishing
  write and the log line leaves a succeeded job without a line, so the documents decide "lost";
- dead letters: the ids in each env's `dead_letters` collection are exactly the fatal jobs' ids;
- both kills happened and both services came back.
Throughput is jobs/s from the first submit until all are final; drain is from the last submit's
answer until all are final. Not part of `make test`. Writes bench/results/soak.txt and soak.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from google.cloud import firestore

from bench.common import FINAL, ApiClient, Report, local_stack
from jobrelay.deadletters import DEAD_LETTERS
from jobrelay.infra_files import load_infra
from jobrelay.local.stack import Stack
from jobrelay.settings import DEFAULT_INFRA_DIR

JOBS = 10_000
CHUNK = 500
ENVS = ("dev", "stg", "prod")
LEASE_SECONDS = 10.0
DRAIN_TIMEOUT = 900.0
LETTERS_GRACE = 60.0  # after every job is final, how long the dead letters may take to arrive
POOL_ACK_DEADLINE = 60.0  # what the pool sets on a pulled message: a killed pool's messages return then
RETRY = {"min_backoff_seconds": 1, "max_backoff_seconds": 4, "max_doublings": 2}
WORKER_KILL = (0.10, 0.60)  # of all jobs final
POOL_KILL = (0.15, 0.60)  # of the pool jobs final


@dataclass(frozen=True)
class Kind:
    name: str
    share: float
    expected: str  # the final status every job of this kind must reach
    pool: bool
    spec: Callable[[int, random.Random], dict[str, Any]]


def _selfcheck(lines: int, pause: float, exit_code: int) -> dict[str, Any]:
    args = {"lines": str(lines), "pause": str(pause), "exit_code": str(exit_code)}
    return {"type": "script", "payload": {"script": "selfcheck", "args": args}}


KINDS = (
    Kind("ok", 0.80, "succeeded", False, lambda i, rng: {"type": "echo", "payload": {"message": f"soak {i}"}}),
    Kind(
        "retry",
        0.10,
        "succeeded",
        False,
        lambda i, rng: {"type": "flaky", "payload": {"fail_times": rng.randint(1, 2), "message": f"soak {i}"}},
    ),
    # fail_times at its maximum: a run cut short by the kill still leaves every later run failing.
    Kind(
        "fatal",
        0.05,
        "dead_lettered",
        False,
        lambda i, rng: {"type": "flaky", "payload": {"fail_times": 100, "fatal": True, "message": f"soak {i}"}},
    ),
    Kind("pool_ok", 0.03, "succeeded", True, lambda i, rng: _selfcheck(3, 0.1, 0)),
    Kind(
        "pool_retry",
        0.01,
        "succeeded",
        True,
        lambda i, rng: {"type": "flaky", "class": "D", "payload": {"fail_times": 1, "message": f"soak {i}"}},
    ),
    Kind("pool_fatal", 0.01, "dead_lettered", True, lambda i, rng: _selfcheck(1, 0, 3)),
)
KIND = {k.name: k for k in KINDS}


@dataclass(frozen=True)
class Planned:
    env: str
    kind: str
    spec: dict[str, Any]


def plan(jobs: int, rng: random.Random, tag: str) -> list[list[Planned]]:
    """The jobs, each of a random kind in a random env, as batches of one env each, envs interleaved."""
    kinds = rng.choices([k.name for k in KINDS], weights=[k.share for k in KINDS], k=jobs)
    per_env: dict[str, list[Planned]] = defaultdict(list)
    for i, name in enumerate(kinds):
        env = rng.choice(ENVS)
        kind = KIND[name]
        spec = kind.spec(i, rng)
        spec["labels"] = {"soak": tag, "kind": name, "route": "pool" if kind.pool else "tasks"}
        per_env[env].append(Planned(env, name, spec))
    batches = [items[s : s + CHUNK] for items in per_env.values() for s in range(0, len(items), CHUNK)]
    rng.shuffle(batches)
    return batches


def soak_infra(directory: Path) -> str:
    """A copy of infra/ with test jobs in every env and retries in seconds; returns what changed."""
    shutil.copytree(DEFAULT_INFRA_DIR, directory, dirs_exist_ok=True)
    envs_file = directory / "environments.yaml"
    data = yaml.safe_load(envs_file.read_text())
    for env in data["environments"].values():
        env["allow_test_jobs"] = True
    envs_file.write_text(yaml.safe_dump(data, sort_keys=False))
    classes_file = directory / "classes.yaml"
    classes = yaml.safe_load(classes_file.read_text())
    was = []
    for name, job_class in classes["classes"].items():
        retry = job_class["retry"]
        was.append(f"{name} {retry['min_backoff_seconds']:g}-{retry['max_backoff_seconds']:g} s")
        retry.update(RETRY)
    classes_file.write_text(yaml.safe_dump(classes, sort_keys=False))
    load_infra(directory)  # fails here, not in a service, if the copy is wrong
    return (
        f"infra: a copy of infra/ made for the soak: allow_test_jobs true in {', '.join(ENVS)}; "
        f"retry backoff of every class {RETRY['min_backoff_seconds']}-{RETRY['max_backoff_seconds']} s, "
        f"{RETRY['max_doublings']} doublings (infra/classes.yaml: {', '.join(was)}); max attempts as infra/ has them; "
        "pool subscriptions' redelivery backoff 1 s (cloud 10 s)"
    )


class Submitter(threading.Thread):
    """Submits every batch in order; records each job's env and kind and when the first and last went in."""

    def __init__(self, stack: Stack, batches: list[list[Planned]], tag: str) -> None:
        super().__init__(name="soak-submitter", daemon=True)
        self.stack, self.batches, self.tag = stack, batches, tag
        self.jobs: dict[str, Planned] = {}
        self.started = self.finished = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            for n, batch in enumerate(self.batches):
                env = batch[0].env
                api = ApiClient(self.stack, uid=f"soak-{self.tag}-{env}-{n}", env=env)
                answered = api.batch([p.spec for p in batch])
                self.jobs.update((job["id"], p) for job, p in zip(answered, batch, strict=True))
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        self.finished = time.monotonic()


def count(db: firestore.Client, tag: str, *, route: str | None = None) -> int:
    """Final jobs of this soak in one env (of one route when given), by an aggregation query."""
    query: Any = db.collection("jobs").where(filter=firestore.FieldFilter("labels.soak", "==", tag))
    if route is not None:
        query = query.where(filter=firestore.FieldFilter("labels.route", "==", route))
    query = query.where(filter=firestore.FieldFilter("status", "in", sorted(FINAL)))
    return int(query.count().get()[0][0].value)


def letters_count(db: firestore.Client) -> int:
    collection: Any = db.collection(DEAD_LETTERS)
    return int(collection.count().get()[0][0].value)


def succeeded_lines(*logs: Path) -> Counter[str]:
    """'job <id> succeeded' lines per job id in the given logs (every life of each service)."""
    seen: Counter[str] = Counter()
    for log in logs:
        if not log.exists():
            continue
        for line in log.read_text(errors="replace").splitlines():
            try:
                message = json.loads(line).get("message", "")
            except (json.JSONDecodeError, AttributeError):
                continue  # a line cut short by a kill, or not one of ours
            parts = message.split()
            if len(parts) == 3 and parts[0] == "job" and parts[2] == "succeeded":
                seen[parts[1]] += 1
    return seen


def pool_running(stack: Stack, within: float) -> int:
    """How many jobs the pool runs now, looking every 50 ms for up to `within` seconds until it runs some."""
    until = time.monotonic() + within
    while True:
        try:
            running = int(requests.get(f"{stack.url('muscle')}/healthz", timeout=2).json().get("running", 0))
        except (requests.RequestException, ValueError):
            running = 0
        if running or time.monotonic() >= until:
            return running
        time.sleep(0.05)


@dataclass
class Kill:
    service: str
    threshold: int  # final jobs (all, or the pool's) at which to kill
    at: float | None = None  # monotonic time of the kill
    back_after: float = 0.0
    line: str = ""


def kill(stack: Stack, k: Kill, since: float, what: str) -> None:
    old = stack.kill(k.service)
    k.at = time.monotonic()
    stack.wait_restarted(k.service, old)
    k.back_after = time.monotonic() - k.at
    k.line = (
        f"{k.service} (pid {old}) SIGKILLed at {what}, {k.at - since:.1f} s after the first submit; "
        f"back (restarted by the supervisor) after {k.back_after:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("jobs", nargs="?", type=int, default=JOBS)
    parser.add_argument("--seed", type=int, default=None, help="repeat a run's mix and kill points")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    tag = time.strftime("s%H%M%S")
    batches = plan(args.jobs, rng, tag)
    planned = [p for batch in batches for p in batch]
    pool_total = sum(KIND[p.kind].pool for p in planned)
    worker_kill = Kill("worker", round(rng.uniform(*WORKER_KILL) * args.jobs))
    pool_kill = Kill("muscle", max(1, round(rng.uniform(*POOL_KILL) * pool_total)))

    rep = Report("soak", "jobrelay soak: mixed jobs in three envs, worker and pool killed")
    rep.add(f"seed {seed} (repeat with --seed {seed}); tag {tag}")
    mix = Counter(p.kind for p in planned)
    rep.add(
        f"{args.jobs} jobs in {len(batches)} batches of up to {CHUNK}, one user each: "
        + ", ".join(f"{k.name} {mix[k.name]}" for k in KINDS)
        + "; per env "
        + ", ".join(f"{e} {sum(p.env == e for p in planned)}" for e in ENVS)
    )
    rep.add(
        f"kills: worker at {worker_kill.threshold} of {args.jobs} jobs final, pool at {pool_kill.threshold} of "
        f"{pool_total} pool jobs final (while it runs some); lease {LEASE_SECONDS:g} s; maintenance every minute"
    )
    with tempfile.TemporaryDirectory(prefix="jobrelay-soak-infra-") as tmp:
        infra_dir = Path(tmp)
        rep.add(soak_infra(infra_dir))
        with local_stack(
            services=("api", "worker", "deadletter", "muscle"),
            infra_dir=infra_dir,
            tick_seconds=5.0,
            lease_seconds=LEASE_SECONDS,
            pool_min_backoff=1,
        ) as stack:
            outcome = run(stack, rep, batches, tag, worker_kill, pool_kill, pool_total)
    return outcome


@dataclass
class Observed:
    jobs: dict[str, Planned]
    docs: dict[str, dict[str, Any]]
    letters: dict[str, dict[str, dict[str, Any]]]  # env -> job id -> dead letter
    lines: Counter[str]
    restarts: dict[str, int]
    started: float
    submitted: float
    final: float
    done: float


def run(
    stack: Stack,
    rep: Report,
    batches: list[list[Planned]],
    tag: str,
    worker_kill: Kill,
    pool_kill: Kill,
    pool_total: int,
) -> int:
    dbs = {env: firestore.Client(project=stack.infra.env(env).project) for env in ENVS}
    expected_letters = Counter(p.env for batch in batches for p in batch if KIND[p.kind].expected == "dead_lettered")
    submitter = Submitter(stack, batches, tag)
    submitter.start()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    final_at: float | None = None
    while time.monotonic() < deadline:
        if submitter.error is not None:
            raise RuntimeError(f"submitting failed: {submitter.error}") from submitter.error
        final = sum(count(db, tag) for db in dbs.values())
        if worker_kill.at is None and final >= worker_kill.threshold:
            kill(stack, worker_kill, submitter.started, f"{final} jobs final")
            rep.add(worker_kill.line)
        if pool_kill.at is None:
            pool_final = sum(count(db, tag, route="pool") for db in dbs.values())
            running = pool_running(stack, within=1.0) if pool_final >= pool_kill.threshold else 0
            if running:
                kill(stack, pool_kill, submitter.started, f"{pool_final} pool jobs final, {running} running on it")
                rep.add(pool_kill.line)
        if not submitter.is_alive() and final >= len(submitter.jobs):
            final_at = final_at or time.monotonic()
            recorded = {env: letters_count(db) for env, db in dbs.items()}
            arrived = all(recorded[env] >= expected_letters[env] for env in ENVS)
            # A killed pool's messages come back after their ack deadline; see what they do.
            settled = pool_kill.at is None or time.monotonic() > pool_kill.at + POOL_ACK_DEADLINE + 15
            if (arrived and settled) or time.monotonic() > final_at + LETTERS_GRACE + POOL_ACK_DEADLINE:
                break
        time.sleep(1.0)
    done = time.monotonic()
    submitter.join(5)
    docs: dict[str, dict[str, Any]] = {}
    letters: dict[str, dict[str, dict[str, Any]]] = {}
    for env, db in dbs.items():
        query = db.collection("jobs").where(filter=firestore.FieldFilter("labels.soak", "==", tag))
        for snap in query.select(["status", "attempt", "errors", "env"]).stream():
            docs[snap.id] = snap.to_dict() or {}
        letters[env] = {s.id: s.to_dict() or {} for s in db.collection(DEAD_LETTERS).stream()}
    observed = Observed(
        jobs=dict(submitter.jobs),
        docs=docs,
        letters=letters,
        lines=succeeded_lines(stack.logs / "worker.log", stack.logs / "muscle.log"),
        restarts={name: stack.services[name].restarts for name in ("worker", "muscle")},
        started=submitter.started,
        submitted=submitter.finished,
        final=final_at or done,
        done=done,
    )
    return report(rep, observed, sum(len(b) for b in batches), worker_kill, pool_kill, pool_total)


def report(rep: Report, o: Observed, planned: int, worker_kill: Kill, pool_kill: Kill, pool_total: int) -> int:
    jobs, docs = o.jobs, o.docs
    status = {i: str(docs.get(i, {}).get("status", "missing")) for i in jobs}
    wrong_env = [i for i in jobs if i in docs and docs[i].get("env") != jobs[i].env]
    lost = [i for i in jobs if status[i] not in FINAL or i in wrong_env]
    mismatched = [i for i in jobs if status[i] in FINAL and status[i] != KIND[jobs[i].kind].expected]
    twice = [i for i in jobs if o.lines[i] > 1]
    logged_not_done = [i for i in jobs if o.lines[i] and status[i] != "succeeded"]
    unlogged = [i for i in jobs if status[i] == "succeeded" and o.lines[i] == 0]
    fatal_ids = {
        env: {i for i, p in jobs.items() if p.env == env and KIND[p.kind].expected == "dead_lettered"} for env in ENVS
    }
    missing_letters = {env: sorted(fatal_ids[env] - set(o.letters[env])) for env in ENVS}
    extra_letters = {env: sorted(set(o.letters[env]) - fatal_ids[env]) for env in ENVS}
    letter_mismatch = sum(len(v) for v in missing_letters.values()) + sum(len(v) for v in extra_letters.values())
    ran_again = [i for i in jobs if any(e.get("type") == "WorkerLost" for e in docs.get(i, {}).get("errors") or [])]
    attempts = Counter(int(docs[i].get("attempt", 0)) for i in jobs if i in docs)

    total = o.final - o.started
    submit_s = o.submitted - o.started
    rep.add(f"submitted {len(jobs)} jobs in {submit_s:.1f} s ({len(jobs) / max(submit_s, 1e-9):.0f} jobs/s accepted)")
    rep.add(
        f"all final after {total:.1f} s: throughput {len(jobs) / total:.0f} jobs/s; drain after the last submit "
        f"{o.final - o.submitted:.1f} s; observed until {o.done - o.started:.1f} s; restarts "
        + ", ".join(f"{k} {v}" for k, v in o.restarts.items())
    )
    rep.add("attempts: " + ", ".join(f"{k}: {v}" for k, v in sorted(attempts.items())))
    rep.add(f"jobs that ran again after a kill (a WorkerLost attempt): {len(ran_again)}")
    rep.add("")
    rep.add(f"{'env':<6}{'kind':<12}{'submitted':>10}{'succeeded':>11}{'dead_lett.':>11}{'other':>7}  expected")
    for env in ENVS:
        for kind in KINDS:
            ids = [i for i, p in jobs.items() if p.env == env and p.kind == kind.name]
            got = Counter(status[i] for i in ids)
            other = len(ids) - got["succeeded"] - got["dead_lettered"]
            rep.add(
                f"{env:<6}{kind.name:<12}{len(ids):>10}{got['succeeded']:>11}{got['dead_lettered']:>11}{other:>7}"
                f"  all {kind.expected}"
            )
        rep.add(
            f"{env:<6}{'dead letters':<12}{len(fatal_ids[env]):>10} expected, {len(o.letters[env])} recorded; "
            f"missing {len(missing_letters[env])}, extra {len(extra_letters[env])}"
        )
    rep.add("")
    others = Counter(status[i] for i in mismatched)
    checks = [
        ("every job submitted was accepted", len(jobs) == planned, f"{len(jobs)} of {planned}"),
        ("none lost (document final, own env)", not lost, f"{len(lost)} not final or missing {lost[:5]}"),
        (
            "counts per env and kind match",
            not mismatched,
            f"{len(mismatched)} ended otherwise {dict(others)} "
            + ", ".join(f"{i} ({jobs[i].env} {jobs[i].kind}: {status[i]})" for i in mismatched[:5]),
        ),
        ("none succeeded twice (worker+pool logs)", not twice, f"{len(twice)} with 2+ success lines {twice[:5]}"),
        ("every success line is a succeeded job", not logged_not_done, f"{len(logged_not_done)} {logged_not_done[:5]}"),
        (
            "dead letters are exactly the fatal jobs",
            letter_mismatch == 0,
            "; ".join(
                f"{env}: missing {missing_letters[env][:3]} of {len(missing_letters[env])}, "
                f"extra {extra_letters[env][:3]} of {len(extra_letters[env])}"
                for env in ENVS
            ),
        ),
        (
            "the worker was killed and came back",
            worker_kill.at is not None and o.restarts["worker"] >= 1,
            worker_kill.line or "never killed",
        ),
        (
            "the pool was killed with work and came back",
            pool_kill.at is not None and o.restarts["muscle"] >= 1,
            pool_kill.line or f"never killed ({pool_total} pool jobs)",
        ),
    ]
    passed = True
    for what, ok, detail in checks:
        passed &= ok
        rep.add(f"{what:<45}{'PASS' if ok else 'FAIL'}   ({detail})")
    rep.add(f"succeeded jobs without a success line (a kill between the write and the log): {len(unlogged)}")
    rep.figure("soak.jobs", len(jobs), unit="jobs", note=f"of {planned} planned; 3 envs, 6 kinds")
    rep.figure("soak.lost", len(lost), unit="jobs", budget=0)
    rep.figure("soak.status_mismatch", len(mismatched), unit="jobs", budget=0, note="final status not the kind's")
    rep.figure("soak.succeeded_twice", len(twice), unit="jobs", budget=0)
    rep.figure("soak.dead_letter_mismatch", letter_mismatch, unit="jobs", budget=0, note="missing + extra")
    rep.figure("soak.jobs_per_s", round(len(jobs) / total, 1), unit="jobs/s", note="first submit to all final")
    rep.figure("soak.drain_s", round(o.final - o.submitted, 1), unit="s", note="last submit to all final")
    rep.figure("soak.ran_again", len(ran_again), unit="jobs", note="attempts lost to the kills, run again")
    rep.figure("soak.kills", int(worker_kill.at is not None) + int(pool_kill.at is not None), unit="kills", note="of 2")
    rep.add(f"result: {'PASS' if passed else 'FAIL'}")
    rep.write()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
