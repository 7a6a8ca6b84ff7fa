"""Numbers about one env's jobs, from Firestore aggregation queries (never by reading every job).

- counts by status and class: one count() per pair, run concurrently;
- the oldest waiting job: one ordered query, one document;
- over a recent window: succeeded and dead-lettered counts (the failure rate), and the run time of
  succeeded jobs as a histogram of count(duration_seconds <= bound) queries, from which p50 and p95
  are read the way a Prometheus histogram is (linear within the bucket).
Each count() is billed one read per 1000 matching index entries. A query over a monotonically
increasing field (`finished_at`, `created_at`) runs once per index shard (jobrelay.indexes) and the
shards' answers are added up (or the oldest taken).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from jobrelay.indexes import SHARD_FIELD, SHARDS
from jobrelay.models import Status, now, rfc3339

BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
Filters = Sequence[tuple[str, str, Any]]


def _count(jobs: firestore.CollectionReference, filters: Filters) -> int:
    q: Any = jobs
    for field, op, value in filters:
        q = q.where(filter=firestore.FieldFilter(field, op, value))
    return int(q.count().get()[0][0].value)


def _sharded(filters: Filters) -> list[list[tuple[str, str, Any]]]:
    """One copy of `filters` per index shard."""
    return [[(SHARD_FIELD, "==", k), *filters] for k in range(SHARDS)]


def quantile(q: float, bounds: Sequence[float], cumulative: Sequence[int]) -> float | None:
    """The q-quantile from cumulative bucket counts (count <= bound), linear inside a bucket."""
    total = cumulative[-1] if cumulative else 0
    if total == 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank and math.isinf(bound):
            return float(prev_bound)  # beyond the last bucket: all we know is "more than this"
        if count >= rank:
            if count == prev_count:
                return float(bound)
            return round(prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count), 3)
        prev_bound, prev_count = bound, count
    return float(bounds[-1])


def env_stats(
    client: firestore.Client,
    *,
    env: str,
    classes: Sequence[str],
    window: timedelta,
    at: datetime | None = None,
) -> dict[str, Any]:
    at = at or now()
    since = at - window
    jobs = client.collection("jobs")
    statuses = [s.value for s in Status]
    counts: dict[str, list[list[tuple[str, str, Any]]]] = {}
    for st in statuses:
        for cls in classes:
            counts[f"n/{st}/{cls}"] = [[("status", "==", st), ("class", "==", cls)]]
    for st in (Status.SUCCEEDED.value, Status.DEAD_LETTERED.value):
        counts[f"recent/{st}"] = _sharded([("status", "==", st), ("finished_at", ">=", since)])
    for bound in BUCKETS:
        counts[f"le/{bound}"] = _sharded(
            [("status", "==", Status.SUCCEEDED.value), ("finished_at", ">=", since), ("duration_seconds", "<=", bound)]
        )
    parts: dict[tuple[str, int], Callable[[], Any]] = {
        (key, i): functools.partial(_count, jobs, filters)
        for key, shards in counts.items()
        for i, filters in enumerate(shards)
    }

    def oldest(shard: int) -> Any:
        q = (
            jobs.where(filter=firestore.FieldFilter(SHARD_FIELD, "==", shard))
            .where(filter=firestore.FieldFilter("status", "==", Status.QUEUED.value))
            .order_by("created_at")
            .limit(1)
        )
        return [s.to_dict() or {} for s in q.stream()]

    for k in range(SHARDS):
        parts[("oldest", k)] = functools.partial(oldest, k)
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = {k: pool.submit(fn) for k, fn in parts.items()}
        answers = {k: f.result() for k, f in futures.items()}
    results: dict[str, Any] = {key: sum(answers[(key, i)] for i in range(len(qs))) for key, qs in counts.items()}
    results["oldest"] = sorted(
        (doc for k in range(SHARDS) for doc in answers[("oldest", k)]), key=lambda d: d["created_at"]
    )[:1]

    by_pair = {st: {cls: results[f"n/{st}/{cls}"] for cls in classes} for st in statuses}
    by_status = {st: sum(by_pair[st].values()) for st in statuses}
    by_class = {cls: sum(by_pair[st][cls] for st in statuses) for cls in classes}
    ok, dead = results[f"recent/{Status.SUCCEEDED.value}"], results[f"recent/{Status.DEAD_LETTERED.value}"]
    cumulative = [results[f"le/{b}"] for b in BUCKETS]
    bounds_all, cumulative_all = (*BUCKETS, math.inf), [*cumulative, max(ok, cumulative[-1])]
    oldest_doc = results["oldest"][0] if results["oldest"] else None
    oldest_info = None
    if oldest_doc is not None:
        created = oldest_doc["created_at"]
        oldest_info = {
            "job_id": oldest_doc["id"],
            "type": oldest_doc.get("type"),
            "created_at": rfc3339(created),
            "age_seconds": round((at - created).total_seconds(), 1),
        }
    return {
        "env": env,
        "generated_at": rfc3339(at),
        "window_seconds": int(window.total_seconds()),
        "counts": {
            "by_status": by_status,
            "by_class": by_class,
            "by_status_and_class": by_pair,
            "total": sum(by_status.values()),
        },
        "oldest_queued": oldest_info,
        "recent": {
            "succeeded": ok,
            "dead_lettered": dead,
            "failure_rate": round(dead / (ok + dead), 4) if ok + dead else None,
            "duration_seconds": {
                "p50": quantile(0.5, bounds_all, cumulative_all),
                "p95": quantile(0.95, bounds_all, cumulative_all),
                "histogram": [{"le": b, "count": c} for b, c in zip(BUCKETS, cumulative, strict=True)],
            },
        },
    }


MAX_LISTED = 2000


def queue_depths(
    tasks: Any,
    client: firestore.Client,
    *,
    project: str,
    region: str,
    classes: Sequence[tuple[str, Sequence[str], str]],
) -> list[dict[str, Any]]:
    """Per class: its Cloud Tasks queues' state, depth and oldest task, summed over the class's shards;
    for pool classes, waiting jobs.

    Cloud Tasks has no depth call (Cloud Monitoring's queue_depth metric is the cloud's own view),
    so this lists each queue's tasks, up to MAX_LISTED per queue.
    """
    from google.api_core import exceptions as gexc

    out = []
    for name, queue_ids, route in classes:
        row: dict[str, Any] = {"class": name, "queue": queue_ids[0], "route": route}
        if len(queue_ids) > 1:
            row["shards"] = list(queue_ids)
        states: list[str] = []
        rate, concurrent, depth, capped, oldest = 0.0, 0, 0, False, None
        for queue_id in queue_ids:
            path = tasks.queue_path(project, region, queue_id)
            try:
                queue = tasks.get_queue(name=path)
            except gexc.NotFound:
                states.append("MISSING")
                continue
            states.append(queue.state.name)
            rate += queue.rate_limits.max_dispatches_per_second
            concurrent += queue.rate_limits.max_concurrent_dispatches
            listed = 0
            for task in tasks.list_tasks(request={"parent": path, "page_size": 1000}):
                listed += 1
                when = task.create_time
                oldest = when if oldest is None or when < oldest else oldest
                if listed >= MAX_LISTED:
                    capped = True
                    break
            depth += listed
        # One word for the class: its queues' common state, else the first that is not RUNNING.
        row["state"] = states[0] if len(set(states)) == 1 else next(s for s in states if s != "RUNNING")
        if "MISSING" not in states or len(set(states)) > 1:
            row["max_dispatches_per_second"] = rate
            row["max_concurrent_dispatches"] = concurrent
            row["depth"] = depth
            row["depth_capped"] = capped
            row["oldest_task_at"] = rfc3339(oldest) if oldest is not None else None
            row["oldest_task_age_seconds"] = round((now() - oldest).total_seconds(), 1) if oldest else None
        if route == "muscle":
            row["pool_waiting_jobs"] = _count(
                client.collection("jobs"), [("status", "==", Status.QUEUED.value), ("class", "==", name)]
            )
        out.append(row)
    return out


def type_counts(client: firestore.Client, *, env: str, types: Sequence[str]) -> dict[str, Any]:
    """Per job type: how many jobs wait (queued, retrying) and run, and the oldest queued one's age."""
    jobs = client.collection("jobs")
    live = (Status.QUEUED.value, Status.RETRYING.value, Status.RUNNING.value)
    queries: dict[tuple[str, str], Callable[[], Any]] = {
        (t, st): functools.partial(_count, jobs, [("type", "==", t), ("status", "==", st)])
        for t in types
        for st in live
    }

    # The oldest queued job of a type: one document per index shard (created_at grows with time), the
    # oldest of those.
    def oldest(t: str, shard: int) -> Any:
        q = (
            jobs.where(filter=firestore.FieldFilter(SHARD_FIELD, "==", shard))
            .where(filter=firestore.FieldFilter("type", "==", t))
            .where(filter=firestore.FieldFilter("status", "==", Status.QUEUED.value))
            .order_by("created_at")
            .limit(1)
        )
        return [s.to_dict() or {} for s in q.stream()]

    for t in types:
        for k in range(SHARDS):
            queries[(t, f"oldest/{k}")] = functools.partial(oldest, t, k)
    at = now()
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = {k: pool.submit(fn) for k, fn in queries.items()}
        results = {k: f.result() for k, f in futures.items()}
    rows = []
    for t in types:
        firsts = [doc for k in range(SHARDS) for doc in results[(t, f"oldest/{k}")]]
        first = min(firsts, key=lambda d: d["created_at"]) if firsts else None
        rows.append(
            {
                "type": t,
                "queued": results[(t, Status.QUEUED.value)],
                "retrying": results[(t, Status.RETRYING.value)],
                "running": results[(t, Status.RUNNING.value)],
                "oldest_queued_at": rfc3339(first["created_at"]) if first else None,
                "oldest_queued_age_seconds": round((at - first["created_at"]).total_seconds(), 1) if first else None,
            }
        )
    return {"env": env, "generated_at": rfc3339(at), "types": rows}
