"""Peers: the same no-op workload through jobrelay and through Celery with Redis, in the same run.

    .venv/bin/python -m bench.peers [ROUNDS [JOBS]]

Where jobrelay stands against the queue most teams would otherwise run on a VM. Starts, on free ports of
127.0.0.1, the local stack (emulators, API, worker, dead-letter service) and next to it a Redis server
(Debian's `redis-server`, no persistence, its own temporary directory) and a Celery worker
(`bench.peers_celery`: one process, thread pool of 64, as jobrelay's worker is one gunicorn process with
64 threads; `acks_late`, `reject_on_worker_lost`, `track_started`, Redis result backend). Everything it
starts it stops by process id at the end, also on error, and checks that none of it is left.

What it measures, the two systems interleaved so that the machine's load falls on both alike:
- latency, ROUNDS rounds (default 400) after a warm-up, one job at a time, ABBA order: jobrelay =
  `POST /v1/envs/dev/jobs` an echo job until a Firestore listener (started before the submit on a query
  matching only that job, as in `bench.latency`) sees the document `succeeded`; Celery = `noop.delay()`
  until `AsyncResult.get()` returns (the Redis backend subscribes to the task's result channel before
  the message is sent, so it is the same "listener first, then submit, then pushed the result");
- throughput, JOBS jobs (default 1,000) per round, 8 rounds in ABBA order (C J J C J C C J):
  submitted as fast as one caller can (jobrelay: `jobs:batch` of 500, one user per batch
  because a user may submit 600 a minute; Celery: one `group(...).apply_async()`) until all are done
  (jobrelay: a count query of final jobs every 0.2 s; Celery: `GroupResult.get()`); jobs/s from the first submit;
- resident memory (RSS, summed over each process tree), sampled every 0.1 s through the throughput
  rounds: the Celery worker, redis-server, jobrelay's API and worker; the emulators are shown apart
  (they stand in for managed services); and CPU seconds per 1,000 jobs: the servers a team runs
  (Celery worker + Redis; jobrelay API + worker), the emulators, and the caller (this process).

How to read it: every ratio is jobrelay / Celery, taken in the same run: above 1 means jobrelay takes
longer or uses more, except throughput, where below 1 means jobrelay completes fewer jobs a second.
Compare ratios across runs, not milliseconds. Peers are context, not a budget: the figures carry no
budget and the run passes whenever it completes. What the comparison does not account for is printed
with the numbers (durability, writes per job, emulators against cloud services, rate limits). Writes
what it prints to bench/results/peers.txt and its figures to bench/results/peers.json.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
from celery import group
from google.cloud import firestore

from bench import peers_celery
from bench.common import (
    ENV,
    FINAL,
    REPO,
    ApiClient,
    Report,
    Sampler,
    count_jobs,
    local_stack,
    percentile,
    tree_cpu_seconds,
    tree_pids,
)
from bench.latency import jobrelay_echo
from jobrelay.local import procs
from jobrelay.local.stack import Stack

ROUNDS = 400
WARM_UP = 20
JOBS = 1_000
THROUGHPUT_ORDER = ("celery", "jobrelay", "jobrelay", "celery", "jobrelay", "celery", "celery", "jobrelay")
CHUNK = 500  # jobs per jobs:batch call (the API's limit), one user each (600 submits a minute per user)
# jobrelay's worker is one gunicorn process with 64 threads (services/worker/__main__.py); Celery's match.
CELERY_POOL = "threads"
CELERY_CONCURRENCY = 64
REDIS_SERVER = "/usr/bin/redis-server"
DONE_TIMEOUT = 180.0
SAMPLE_SECONDS = 0.1
POLL_SECONDS = 0.2  # jobrelay's throughput rounds: how often to count final jobs

Sample = tuple[float, float]  # (submit seconds, end-to-end seconds)


# -- the Celery side: redis-server and a worker, started and stopped by pid ---------------------------


@dataclass
class CeleryPeer:
    redis_url: str
    server: procs.Proc
    worker: procs.Proc
    client: redis.Redis


def start_redis(tmp: Path) -> tuple[procs.Proc, str]:
    port = procs.free_port()
    argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(tmp), "--daemonize", "no", "--protected-mode", "yes"]
    proc = procs.start("redis", argv, log_path=tmp / "redis.log")
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        procs.wait_until(lambda: bool(client.ping()), timeout=30, what="redis-server", proc=proc)
    except BaseException:
        proc.stop()
        raise
    finally:
        client.close()
    return proc, f"redis://127.0.0.1:{port}"


def start_celery_worker(tmp: Path, redis_url: str) -> procs.Proc:
    argv = [sys.executable, "-m", "celery", "-A", "bench.peers_celery", "worker", f"--pool={CELERY_POOL}"]
    argv += [f"--concurrency={CELERY_CONCURRENCY}", "--loglevel=WARNING", "--hostname=peers@127.0.0.1"]
    proc = procs.start(
        "celery",
        argv,
        env={"JOBRELAY_PEERS_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"},
        log_path=tmp / "celery.log",
        cwd=REPO,
    )
    try:
        # Ready when it has run a task end to end (the message waits in Redis while the worker starts).
        result = peers_celery.noop.delay("ready")
        procs.wait_until(result.ready, timeout=60, what="celery worker", proc=proc)
        if result.get(timeout=1) != {"message": "ready"}:
            raise RuntimeError(f"celery worker: the first task returned {result.result!r}")
    except BaseException:
        proc.stop()
        raise
    return proc


@contextlib.contextmanager
def celery_peer(rep: Report) -> Iterator[CeleryPeer]:
    """redis-server and a Celery worker; both stopped by pid (SIGTERM, SIGKILL after 15 s) on the way out."""
    with tempfile.TemporaryDirectory(prefix="jobrelay-peers-") as name:
        tmp = Path(name)
        redis_proc, url = start_redis(tmp)
        started: list[procs.Proc] = [redis_proc]
        pids: set[int] = set()
        try:
            peers_celery.use(url)
            worker = start_celery_worker(tmp, url)
            started.append(worker)
            client = redis.Redis(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]), db=1)
            yield CeleryPeer(url, redis_proc, worker, client)
            client.close()
        finally:
            with contextlib.suppress(Exception):
                peers_celery.app.close()  # the caller's broker and backend connections
            for proc in reversed(started):
                pids |= {proc.pid, *tree_pids(proc.pid)}
                code = proc.stop(timeout=15)
                rep.add(f"stopped {proc.name} (pid {proc.pid}): exit code {code}")
            left = [pid for pid in sorted(pids) if alive(pid)]
            if left:
                raise RuntimeError(f"processes left behind after stopping Redis and Celery: {left}")
            rep.add(f"no process left behind (checked pids {', '.join(map(str, sorted(pids)))})")


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


# -- resources: RSS and CPU of process trees ------------------------------------------------------------


class PeakRss(Sampler):
    """Peak RSS of named process trees, sampled every SAMPLE_SECONDS while in use."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(SAMPLE_SECONDS)
        self.roots = roots
        self.peak: dict[str, int] = dict.fromkeys(roots, 0)

    def sample(self) -> None:
        for name, pid in self.roots.items():
            self.peak[name] = max(self.peak[name], rss(pid))


def rss(pid: int) -> int:
    total = 0
    for each in tree_pids(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += psutil.Process(each).memory_info().rss
    return total


def own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def cpu_seconds(pids: Iterable[int]) -> float:
    return sum(tree_cpu_seconds(pid) for pid in pids)


def cpu_now(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of process trees, and by this process as "caller"."""
    return {**{name: cpu_seconds(pids) for name, pids in groups.items()}, "caller": own_cpu()}


def cpu_since(groups: dict[str, list[int]], before: dict[str, float]) -> dict[str, float]:
    return {name: value - before[name] for name, value in cpu_now(groups).items()}


# -- the workload ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """One throughput round: jobs, seconds from the first submit until all were done, seconds to submit,
    CPU seconds of "servers" (what a team runs), "emulators" (stand-ins for managed services) and "caller"."""

    jobs: int
    seconds: float
    submit: float
    cpu: dict[str, float]


@dataclass
class Measured:
    celery: list[Sample] = field(default_factory=list)
    jobrelay: list[Sample] = field(default_factory=list)
    celery_runs: list[Burst] = field(default_factory=list)
    jobrelay_runs: list[Burst] = field(default_factory=list)
    queue_rate: float = 0.0
    processes: dict[str, int] = field(default_factory=dict)
    idle_mb: dict[str, float] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)


class Peers:
    """One no-op job, or a burst of them, through either system."""

    def __init__(self, stack: Stack, peer: CeleryPeer) -> None:
        self.stack = stack
        self.peer = peer
        self.db = firestore.Client(project=stack.infra.env(ENV).project)
        self.api = ApiClient(stack, uid="peers")
        self.run_id = time.strftime("%H%M%S")
        self.jobrelay_pids = {
            "servers": [service_pid(stack, "api"), service_pid(stack, "worker")],
            "emulators": [stack.emulators[n].pid for n in ("firestore", "cloudtasks")],
        }
        self.celery_pids: dict[str, list[int]] = {"servers": [peer.worker.pid, peer.server.pid], "emulators": []}

    def jobrelay_job(self, i: int) -> Sample:
        return jobrelay_echo(self.api, self.db, f"peers-{self.run_id}-{i}", i)

    def celery_job(self, i: int) -> Sample:
        started = time.perf_counter()
        result = peers_celery.noop.delay(str(i))
        submitted = time.perf_counter()
        value = result.get(timeout=30)
        finished = time.perf_counter()
        if value != {"message": str(i)}:
            raise RuntimeError(f"celery task {result.id} returned {value!r}")
        return submitted - started, finished - started

    def jobrelay_burst(self, n: int, k: int) -> Burst:
        tag = f"peers-{self.run_id}-t{k}"
        cpu = cpu_now(self.jobrelay_pids)
        started = time.perf_counter()
        ids: list[str] = []
        for b, start in enumerate(range(0, n, CHUNK)):
            api = ApiClient(self.stack, uid=f"peers-{self.run_id}-t{k}-{b}")
            specs = [
                {"type": "echo", "payload": {"message": str(i)}, "labels": {"peers": tag}}
                for i in range(start, min(n, start + CHUNK))
            ]
            ids += [job["id"] for job in api.batch(specs)]
        submitted = time.perf_counter()
        deadline = submitted + DONE_TIMEOUT
        while count(self.db, tag, sorted(FINAL)) < n:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"jobrelay: not all {n} jobs were final within {DONE_TIMEOUT:.0f} s")
            time.sleep(POLL_SECONDS)
        done = time.perf_counter()
        succeeded = count(self.db, tag, ["succeeded"])
        if succeeded != n:
            raise RuntimeError(f"jobrelay: {n - succeeded} of the throughput jobs ended without succeeding")
        if len(set(ids)) != n:
            raise RuntimeError(f"jobrelay: {len(set(ids))} distinct jobs accepted of {n}")
        return Burst(n, done - started, submitted - started, cpu_since(self.jobrelay_pids, cpu))

    def celery_burst(self, n: int, k: int) -> Burst:
        cpu = cpu_now(self.celery_pids)
        started = time.perf_counter()
        result = group(peers_celery.noop.s(f"{k}-{i}") for i in range(n)).apply_async()
        submitted = time.perf_counter()
        values = result.get(timeout=DONE_TIMEOUT)
        done = time.perf_counter()
        if values != [{"message": f"{k}-{i}"} for i in range(n)]:
            raise RuntimeError("celery: the group's results are not what its tasks returned")
        return Burst(n, done - started, submitted - started, cpu_since(self.celery_pids, cpu))


def service_pid(stack: Stack, name: str) -> int:
    proc = stack.services[name].proc
    if proc is None:
        raise RuntimeError(f"{name} is not running")
    return proc.pid


def count(db: firestore.Client, tag: str, statuses: list[str]) -> int:
    return count_jobs(db, "peers", tag, statuses)


def measure(rounds: int, jobs: int, rep: Report) -> Measured:
    out = Measured()
    with local_stack(services=("api", "worker", "deadletter")) as stack, celery_peer(rep) as peer:
        paths = Peers(stack, peer)
        roots = {
            "celery worker": peer.worker.pid,
            "redis-server": peer.server.pid,
            "jobrelay API": service_pid(stack, "api"),
            "jobrelay worker": service_pid(stack, "worker"),
            "Firestore emulator": stack.emulators["firestore"].pid,
            "Cloud Tasks emulator": stack.emulators["cloudtasks"].pid,
        }
        rep.add(
            f"celery worker: pool {CELERY_POOL}, concurrency {CELERY_CONCURRENCY}, "
            f"{len(tree_pids(peer.worker.pid))} process(es); jobrelay worker: gunicorn, 1 worker, 64 threads"
        )
        started = time.monotonic()
        for r in range(WARM_UP + rounds):
            pair = (paths.celery_job, paths.jobrelay_job) if r % 2 == 0 else (paths.jobrelay_job, paths.celery_job)
            for run in pair:
                sample = run(r)
                if r >= WARM_UP:
                    (out.celery if run == paths.celery_job else out.jobrelay).append(sample)
        rep.add(f"latency: {rounds} rounds (ABBA) after {WARM_UP} warm-up rounds in {time.monotonic() - started:.0f} s")
        out.idle_mb = {name: rss(pid) / 2**20 for name, pid in roots.items()}
        out.processes = {name: len(tree_pids(pid)) for name, pid in roots.items()}
        out.queue_rate = stack.infra.classes["A"].rate_limits.max_dispatches_per_second
        with PeakRss(roots) as sampler:
            started = time.monotonic()
            for k, side in enumerate(THROUGHPUT_ORDER):
                if side == "celery":
                    out.celery_runs.append(paths.celery_burst(jobs, k))
                else:
                    out.jobrelay_runs.append(paths.jobrelay_burst(jobs, k))
                b = (out.celery_runs if side == "celery" else out.jobrelay_runs)[-1]
                rep.add(
                    f"throughput round {k + 1} {side:<9}{b.jobs} jobs in {b.seconds:5.1f} s = "
                    f"{b.jobs / b.seconds:4.0f} jobs/s (submitted in {b.submit:.1f} s; CPU s: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in b.cpu.items())
                    + ")"
                )
        rep.add(f"throughput: {len(THROUGHPUT_ORDER)} rounds in {time.monotonic() - started:.0f} s")
        out.peak_mb = {name: b / 2**20 for name, b in sampler.peak.items()}
        restarts = sum(s.restarts for s in stack.services.values())
        rep.add(f"jobrelay service restarts during the run: {restarts}")
    return out


# -- the report -----------------------------------------------------------------------------------------


def ms(values: Iterable[float], q: float) -> float:
    return percentile(values, q) * 1000


def rate(runs: list[Burst]) -> float:
    return sum(r.jobs for r in runs) / sum(r.seconds for r in runs)


def cpu_per_1000(runs: list[Burst], what: str) -> float:
    return 1000 * sum(r.cpu[what] for r in runs) / sum(r.jobs for r in runs)


def row(label: str, celery: float, jobrelay: float, fmt: str = ".1f") -> str:
    return f"{label:<26}{celery:>11{fmt}}{jobrelay:>11{fmt}}{jobrelay / celery:>8.2f}"


def report(rep: Report, m: Measured) -> None:
    rep.add()
    rep.add(f"{'':<26}{'celery':>11}{'jobrelay':>11}{'ratio':>8}   (jobrelay / celery)")
    for index, what in ((0, "submit"), (1, "end-to-end")):
        for q in (50, 99):
            base, ours = ms((s[index] for s in m.celery), q), ms((s[index] for s in m.jobrelay), q)
            rep.add(row(f"{what} p{q} ms", base, ours))
            short = "e2e" if index else "submit"
            rep.figure(f"peers.celery_{short}_p{q}_ms", round(base, 2), unit="ms")
            rep.figure(f"peers.jobrelay_{short}_p{q}_ms", round(ours, 2), unit="ms")
            rep.figure(f"peers.{short}_p{q}_ratio", round(ours / base, 2), unit="x", note="jobrelay / celery")
    celery_rate, jobrelay_rate = rate(m.celery_runs), rate(m.jobrelay_runs)
    rep.add(row("throughput jobs/s", celery_rate, jobrelay_rate, ".0f"))
    rep.add(f"  (jobrelay's class A queue dispatches at most {m.queue_rate:g} tasks/s, infra/classes.yaml)")
    if jobrelay_rate >= 0.9 * m.queue_rate:
        rep.add("  jobrelay ran within 10 % of that limit: its figure shows the configured rate more than the")
        rep.add("  capacity of the API and worker (their CPU below is the better measure of cost per job)")
    rep.add("CPU seconds per 1,000 jobs during the throughput rounds:")
    cpu = {
        what: (cpu_per_1000(m.celery_runs, what), cpu_per_1000(m.jobrelay_runs, what))
        for what in ("servers", "emulators", "caller")
    }
    rep.add(row("  servers a team runs", *cpu["servers"], ".2f") + "   (celery worker + redis; API + worker)")
    rep.add(f"{'  emulators':<26}{'-':>11}{cpu['emulators'][1]:>11.2f}{'':>8}   (Firestore, Cloud Tasks)")
    rep.add(row("  caller (this process)", *cpu["caller"], ".2f"))
    total = (sum(c for c, _ in cpu.values()), sum(j for _, j in cpu.values()))
    rep.add(row("  all", *total, ".2f"))
    rep.figure("peers.celery_jobs_per_s", round(celery_rate, 1), unit="jobs/s")
    rep.figure("peers.jobrelay_jobs_per_s", round(jobrelay_rate, 1), unit="jobs/s")
    rep.figure("peers.throughput_ratio", round(jobrelay_rate / celery_rate, 3), unit="x", note="jobrelay / celery")
    rep.figure("peers.celery_cpu_s_per_1000_jobs", round(cpu["servers"][0], 2), unit="s", note="worker + redis")
    rep.figure("peers.jobrelay_cpu_s_per_1000_jobs", round(cpu["servers"][1], 2), unit="s", note="API + worker")
    rep.figure("peers.emulators_cpu_s_per_1000_jobs", round(cpu["emulators"][1], 2), unit="s")
    rep.add()
    rep.add(f"resident memory, MB (RSS summed over each process tree){'idle':>12}{'peak':>8}")
    for name in m.peak_mb:
        label = f"{name} ({m.processes[name]} process{'es' if m.processes[name] > 1 else ''})"
        note = "  (stands in for a managed service)" if "emulator" in name else ""
        rep.add(f"  {label:<62}{m.idle_mb[name]:>6.0f}{m.peak_mb[name]:>8.0f}{note}")
    celery_mb = m.peak_mb["celery worker"] + m.peak_mb["redis-server"]
    jobrelay_mb = m.peak_mb["jobrelay API"] + m.peak_mb["jobrelay worker"]
    rep.add(f"  {'celery worker + redis-server (what a team runs on its VM)':<62}{'':>6}{celery_mb:>8.0f}")
    rep.add(f"  {'jobrelay API + worker (Cloud Run instances)':<62}{'':>6}{jobrelay_mb:>8.0f}")
    for key, name in (
        ("celery_worker_mb", "celery worker"),
        ("redis_mb", "redis-server"),
        ("jobrelay_api_mb", "jobrelay API"),
        ("jobrelay_worker_mb", "jobrelay worker"),
    ):
        rep.figure(f"peers.{key}", round(m.peak_mb[name], 1), unit="MB", note="peak RSS during the throughput rounds")
    rep.add()
    for line in CAVEATS:
        rep.add(line)


CAVEATS = (
    "What this compares, and what it does not account for:",
    "- Durability. jobrelay persists every job in Firestore (status, attempt, timestamps, result, history), 3",
    "  writes and 1 read per job, and a Cloud Task per job; the record outlives the run (retention 7-30 days).",
    "  Celery keeps the message and the result in Redis memory: in this configuration (no RDB, no AOF, one",
    "  node) a Redis restart loses every queued job and every result, and there is no HA or failover.",
    "- Semantics. Both deliver at least once with acks_late; jobrelay also guards every transition with a",
    "  transaction (a duplicate delivery cannot run a finished job again), checks a token per submit and per",
    "  delivery, applies per-user quotas, and logs a JSON line per job. The Celery setup has no auth at all.",
    "- Emulators, not cloud. jobrelay runs here against local emulators (Firestore in Java, our Cloud Tasks",
    "  emulator), on the same 2 cores as everything else; in the cloud each Firestore or Cloud Tasks call",
    "  crosses the network (several ms each) while Redis on the VM stays sub-millisecond, so the latency",
    "  ratio there would be larger; throughput there scales with Cloud Run instances instead of one worker.",
    "- Rate limits. jobrelay's class A queue dispatches at most 200 tasks/s (infra/classes.yaml) and a user",
    "  may submit 600 jobs a minute; Celery has no such limits here.",
    "- Memory and CPU. The emulators are shown apart: they stand in for managed services a team does not run",
    "  (their cloud cost is per operation, see bench.cost). RSS summed over a tree counts shared pages once per",
    "  process (a gunicorn master and its worker). The caller is this benchmark's process: Celery's caller",
    "  serializes and publishes every message itself, jobrelay's sends one HTTP request per 500 jobs.",
    "- One caller, one worker. Throughput is what one submitting thread and one worker process reach on 2",
    "  shared cores; neither side was tuned (Celery's prefetch, gossip and heartbeats are its defaults).",
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rounds = int(args[0]) if args else ROUNDS
    jobs = int(args[1]) if len(args) > 1 else JOBS
    rep = Report("peers", "jobrelay against Celery + Redis on the same machine")
    rep.add(f"no-op jobs: jobrelay echo in {ENV} vs a Celery task returning its argument; {jobs} jobs per burst")
    report(rep, measure(rounds, jobs, rep))
    rep.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
