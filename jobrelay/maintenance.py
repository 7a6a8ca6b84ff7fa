"""The maintenance pass and the retention clean-up: what keeps jobs from being lost or kept forever.

The pass (every minute, from the built-in `maintenance` schedule) finds:
- running jobs whose lease expired (worker crashed, instance killed): back in line as a new attempt,
  or dead-lettered when no attempts are left;
- waiting jobs whose delivery is overdue and that nothing will deliver: no task in their queue (it
  was never created, or Cloud Tasks gave up on it) and, on the pool route, no publish recorded
  for their current dispatch (the process died before it): dispatched again under the next number;
- failed jobs whose dead letter was never published (the worker died in between): published;
- fan-outs waiting for their children for a while: checked (a lost fan-in check task delays a
  fan-in, never loses it; jobrelay.fanin);
- running pipelines whose document was not written for a while: their steps copied again (a sync
  lost to contention or a crash leaves the document behind its steps, never for good).
- flow control's loose ends (docs/flow-control.md): concurrency slots held by jobs that ended
  without freeing them, breakers past their cool-down with nobody to probe them, and jobs still
  waiting behind a type that is no longer paused (a page per type and pass).
Each part reads every page of the jobs it can act on (overdue by a time it queries on), so no
number of delayed or waiting jobs hides one that needs help. Every change is a guarded write, so
the pass can race a late delivery or a second pass safely.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from jobrelay import breakers, bulk, lifecycle, pipeline_doc, slots
from jobrelay.deadletters import DEAD_LETTERS
from jobrelay.dispatch import Dispatcher
from jobrelay.errors import TransitionRefused
from jobrelay.flow import Flow
from jobrelay.indexes import SHARD_FIELD, SHARDS
from jobrelay.lifecycle import Reclaim
from jobrelay.models import Job, Status, now
from jobrelay.namespace import DEBOUNCE_KEYS, OPERATIONS, TYPE_STATES
from jobrelay.settings import Environment, Route
from jobrelay.store import RESULTS, Change, JobStore, to_job

log = logging.getLogger("jobrelay.maintenance")

OVERDUE_AFTER = timedelta(minutes=2)  # a waiting job this late, with no task, was lost in delivery
UNPUBLISHED_AFTER = timedelta(seconds=30)
PAGE_SIZE = 200  # documents per query page; a pass reads every page of what it can act on


@dataclass
class PassReport:
    reclaimed: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    fan_in_checked: list[str] = field(default_factory=list)
    pipelines_synced: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # flow control: given a slot, a probe, or unpaused

    def as_dict(self) -> dict[str, Any]:
        return {k: {"count": len(v), "jobs": v[:50]} for k, v in self.__dict__.items()}


def maintenance_pass(
    env: Environment,
    store: JobStore,
    dispatcher: Dispatcher,
    flow: Flow,
    *,
    at: datetime | None = None,
    overdue_after: timedelta = OVERDUE_AFTER,
    page_size: int = PAGE_SIZE,
) -> PassReport:
    """One pass over the env's jobs; returns what it did."""
    at = at or now()
    report = PassReport()
    _reclaim_expired(env, store, dispatcher, flow, at, report, page_size)
    _redispatch_lost(env, store, dispatcher, at - overdue_after, report, page_size)
    _publish_unpublished(env, store, flow, at, report, page_size)
    _check_waiting(env, store, flow, at - overdue_after, report, page_size)
    _sync_stale_pipelines(env, store, at - overdue_after, report)
    _flow_control(env, store, flow, at, report, page_size)
    if any(v for k, v in report.__dict__.items() if k not in ("fan_in_checked", "pipelines_synced")):
        log.warning("maintenance in %s: %s", env.name, {k: len(v) for k, v in report.__dict__.items()})
    return report


def _reclaim_expired(
    env: Environment,
    store: JobStore,
    dispatcher: Dispatcher,
    flow: Flow,
    at: datetime,
    report: PassReport,
    page_size: int,
) -> None:
    for job in store.scan(
        ("status", "==", Status.RUNNING.value),
        ("lease_expires_at", "<", at),
        order="lease_expires_at",
        page_size=page_size,
    ):

        def decide(j: Job) -> Change[Reclaim | None]:
            if j.status != Status.RUNNING or j.lease_expires_at is None or j.lease_expires_at >= at:
                return Change(None)  # renewed or finished since the query
            decided, fields = lifecycle.reclaim(j, at=at, expire_at=at + timedelta(days=env.retention_days))
            if decided == Reclaim.RETRYING:
                fields["dispatch_count"] = j.dispatch_count + 1
            return Change(decided, fields)

        try:
            written = store.transition(job.id, decide)
        except TransitionRefused:
            continue
        if written.outcome == Reclaim.FAILED:
            flow.ended(env.name, written.job)
            report.dead_lettered.append(job.id)
        elif written.outcome == Reclaim.RETRYING:
            dispatcher.dispatch(env, written.job, n=written.job.dispatch_count, when=None)
            report.reclaimed.append(job.id)
        elif written.outcome == Reclaim.CANCELLED:
            flow.ended(env.name, written.job)


def _redispatch_lost(
    env: Environment,
    store: JobStore,
    dispatcher: Dispatcher,
    cutoff: datetime,
    report: PassReport,
    page_size: int,
) -> None:
    # Only jobs whose delivery is overdue are read (queued ones by `due_at`, which is null while a
    # job waits on dependencies or once Pub/Sub holds its pool message), every page of them: jobs
    # delayed for days or waiting on others never crowd out the lost ones.
    candidates = itertools.chain(
        store.scan(("status", "==", Status.QUEUED.value), ("due_at", "<", cutoff), order="due_at", page_size=page_size),
        store.scan(
            ("status", "==", Status.RETRYING.value),
            ("next_attempt_at", "<", cutoff),
            order="next_attempt_at",
            page_size=page_size,
        ),
    )
    for job in candidates:
        if job.waiting_on or job.cancel_requested or job.waiting_for is not None:
            continue
        if job.route == Route.MUSCLE.value and (job.published_dispatch or -1) >= job.dispatch_count:
            continue  # Pub/Sub accepted this dispatch's message and redelivers it until acknowledged
        if dispatcher.exists(env, job):
            continue  # still in its queue (paused, throttled, or a delayed pool hand-off): not lost

        def bump(j: Job, seen: Job = job) -> Change[None]:
            if j.status != seen.status or j.dispatch_count != seen.dispatch_count:
                return Change(None)
            return Change(None, {"dispatch_count": j.dispatch_count + 1})

        written = store.transition(job.id, bump)
        if not written.wrote:
            continue
        dispatcher.dispatch(env, written.job, n=written.job.dispatch_count, when=None)
        log.warning("job %s was %s with no task or message; dispatched again", job.id, job.status.value)
        report.redispatched.append(job.id)


def _publish_unpublished(
    env: Environment,
    store: JobStore,
    flow: Flow,
    at: datetime,
    report: PassReport,
    page_size: int,
) -> None:
    # A worker that is publishing right now has finished the job within the last few seconds.
    for job in store.scan(
        ("status", "==", Status.FAILED.value),
        ("finished_at", "<", at - UNPUBLISHED_AFTER),
        order="finished_at",
        page_size=page_size,
    ):
        flow.ended(env.name, job)
        report.published.append(job.id)


def _check_waiting(
    env: Environment, store: JobStore, flow: Flow, cutoff: datetime, report: PassReport, page_size: int
) -> None:
    # Every pass checks each fan-out waiting since before the cutoff: one or two aggregation reads each.
    for job in store.scan(
        ("status", "==", Status.WAITING.value),
        ("waiting_since", "<", cutoff),
        order="waiting_since",
        page_size=page_size,
    ):
        flow.fan_in(env.name, job)
        report.fan_in_checked.append(job.id)


def _sync_stale_pipelines(env: Environment, store: JobStore, cutoff: datetime, report: PassReport) -> None:
    for data in pipeline_doc.stale(store.client, cutoff):
        _, _, ids = pipeline_doc.graph_of(data)
        try:
            synced = pipeline_doc.sync(store.client, data["id"], list(ids.values()), env.retention_days)
        except gexc.GoogleAPIError as exc:  # contended now: the next pass tries again
            log.error("pipeline %s: sync failed (%s); the next pass tries again", data["id"], exc)
            continue
        if synced is not None:
            log.warning("pipeline %s was behind its steps; synced", data["id"])
            report.pipelines_synced.append(data["id"])


def _flow_control(
    env: Environment, store: JobStore, flow: Flow, at: datetime, report: PassReport, page_size: int
) -> None:
    released = slots.heal(store, at) + breakers.probe_idle(store, at)
    unpaused = store.client.collection(TYPE_STATES).where(filter=firestore.FieldFilter("paused", "==", False))
    for snap in unpaused.stream():  # a resume whose release operation failed: a page per shard and pass
        for waiting in (w for q in bulk.waiting_behind(store.client, snap.id) for w in q.limit(page_size).stream()):
            job = to_job(waiting.to_dict() or {})

            def unpark(j: Job, on: str = f"type:{snap.id}") -> Change[bool]:
                if j.waiting_for is None or j.waiting_for.on != on or not j.status.pending:
                    return Change(False)
                return Change(True, lifecycle.unpark(j, at=at))

            written = store.transition(job.id, unpark, base=(waiting.update_time, job))
            if written.outcome:
                released.append(written.job)
    for job in released:
        flow.redispatch(env.name, job)
        report.released.append(job.id)


@dataclass
class CleanupReport:
    jobs: int = 0
    dead_letters: int = 0
    results: int = 0
    pipelines: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def cleanup(
    env: Environment, client: firestore.Client, *, at: datetime | None = None, limit: int = 5000
) -> CleanupReport:
    """Delete finished jobs (and their results and dead letters) past their `expire_at`.

    `expire_at` grows with time, so its index is sharded (jobrelay.indexes): one query per shard.
    """
    at = at or now()
    report = CleanupReport()
    jobs = client.collection("jobs")
    final = sorted(s.value for s in Status if s.final)
    queries = (
        jobs.where(filter=firestore.FieldFilter(SHARD_FIELD, "==", k))
        .where(filter=firestore.FieldFilter("status", "in", final))
        .where(filter=firestore.FieldFilter("expire_at", "<", at))
        .limit(limit)
        for k in range(SHARDS)
    )
    batch = client.batch()
    pending = 0
    for snap in itertools.islice((snap for q in queries for snap in q.stream()), limit):
        data = snap.to_dict() or {}
        if data.get("status") not in final:
            continue
        batch.delete(snap.reference)
        report.jobs += 1
        if data.get("result_ref"):
            batch.delete(client.collection(RESULTS).document(snap.id))
            report.results += 1
        pending += 2
        if pending >= 400:
            batch.commit()
            batch, pending = client.batch(), 0
    if pending:
        batch.commit()
    cutoff = at - timedelta(days=env.retention_days)
    old = client.collection(DEAD_LETTERS).where(filter=firestore.FieldFilter("dead_at", "<", cutoff)).limit(limit)
    report.dead_letters += _delete_all(client, old.stream())
    # Pipelines that ended past the env's retention (expire_at is set when a pipeline ends), and
    # debounce keys whose window closed a day ago (backing up their TTL policies, as for jobs): per
    # index shard, as expire_at grows with time (jobrelay.indexes).
    ended = itertools.islice((s for q in _per_shard(client, "pipelines", at, limit) for s in q.stream()), limit)
    report.pipelines += _delete_all(client, ended)
    _delete_all(client, (snap for q in _per_shard(client, DEBOUNCE_KEYS, at, limit) for snap in q.stream()))
    # Bulk operations that finished longer ago than the env keeps finished jobs.
    done = client.collection(OPERATIONS).where(filter=firestore.FieldFilter("finished_at", "<", cutoff))
    _delete_all(client, done.limit(limit).stream())
    log.info("cleanup in %s: %s", env.name, report.as_dict())
    return report


def _delete_all(client: firestore.Client, snaps: Iterable[Any]) -> int:
    """Delete these documents in batches of 400 (under Firestore's 500 writes per commit); how many."""
    batch, pending, deleted = client.batch(), 0, 0
    for snap in snaps:
        batch.delete(snap.reference)
        pending += 1
        deleted += 1
        if pending >= 400:
            batch.commit()
            batch, pending = client.batch(), 0
    if pending:
        batch.commit()
    return deleted


def _per_shard(client: firestore.Client, collection: str, at: datetime, limit: int) -> list[Any]:
    """A collection's documents whose expire_at passed, one query per index shard."""
    return [
        client.collection(collection)
        .where(filter=firestore.FieldFilter(SHARD_FIELD, "==", k))
        .where(filter=firestore.FieldFilter("expire_at", "<", at))
        .limit(limit)
        for k in range(SHARDS)
    ]
