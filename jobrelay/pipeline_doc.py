"""The `pipelines/{id}` document: each step's job id and status, the counts, the pipeline's status.

It is written at submit (with every step's job, in one commit), then only on step events: a step's
claim, its going `waiting` for its children, its end (`jobrelay.flow`), a retry or a cancel. Each
write is a transaction that reads the pipeline document and the step's own job document and copies
the step's state as it is now, so writes arriving in any order leave the latest state; a spawned child
never writes it. Apps watch it with `onSnapshot` (rules: owner or admin may read, nobody writes).
Its fields are documented in docs/pipelines.md; the console reads them as they are named there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from jobrelay import graph, lifecycle
from jobrelay.errors import TransitionRefused
from jobrelay.graph import PipelineStatus
from jobrelay.indexes import SHARD_FIELD, SHARDS
from jobrelay.models import Job, Status, now, rfc3339
from jobrelay.namespace import JOBS, SCHEDULES
from jobrelay.store import Change, JobStore, to_job

log = logging.getLogger("jobrelay.pipelines")

PIPELINES = "pipelines"
SYNC_ATTEMPTS = 20
TIMES = ("created_at", "updated_at", "finished_at", "expire_at", "retried_at", "cancel_requested_at")
STEP_TIMES = ("started_at", "finished_at")
# The statuses a fan-out's fan-in ends it in (jobrelay.fanin.decide), with `result.children` counted.
FANNED_IN = frozenset({Status.SUCCEEDED, Status.FAILED, Status.DEAD_LETTERED})


def step_entry(job: Job) -> dict[str, Any]:
    """What `steps.<name>` holds of a step's job (besides `after` and `type`, fixed at submit).

    A fan-out's children are counted once, by its fan-in (`result.children`): their outcome is copied
    here when the step ends, so the pipeline keeps it after the children are deleted. A step waiting
    again (its failed children redriven) shows none: the last count is not the coming one."""
    ended = job.spawned is not None and job.status in FANNED_IN and isinstance(job.result, dict)
    counted = job.result.get("children") if ended and isinstance(job.result, dict) else None
    counted = counted if isinstance(counted, dict) else {}
    return {
        "job_id": job.id,
        "status": job.status.value,
        "attempt": job.attempt,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "children": job.spawned,
        "children_succeeded": counted.get("succeeded"),
        "children_failed": counted.get("failed"),
    }


def summary(steps: Mapping[str, Mapping[str, Any]], cancel_requested: bool) -> tuple[PipelineStatus, dict[str, int]]:
    statuses = [Status(s["status"]) for s in steps.values()]
    return graph.pipeline_status(statuses, cancel_requested=cancel_requested), graph.counts(statuses)


def sync(
    client: firestore.Client, pipeline_id: str, job_ids: Sequence[str], retention_days: int
) -> dict[str, Any] | None:
    """Copy the current state of these steps' jobs into `pipelines/{pipeline_id}`; recompute status
    and counts. Writes nothing when nothing changed; returns the document as written (None: unchanged)."""
    ref = client.collection(PIPELINES).document(pipeline_id)
    job_refs = [client.collection(JOBS).document(j) for j in dict.fromkeys(job_ids)]

    @firestore.transactional
    def txn(transaction: firestore.Transaction) -> dict[str, Any] | None:
        snaps = {s.reference.path: s for s in client.get_all([ref, *job_refs], transaction=transaction)}
        snap = snaps.get(ref.path)
        if snap is None or not snap.exists:
            return None
        data = snap.to_dict() or {}
        steps: dict[str, dict[str, Any]] = dict(data.get("steps", {}))
        changed = False
        for job_ref in job_refs:
            job_snap = snaps.get(job_ref.path)
            if job_snap is None or not job_snap.exists:
                continue
            job = to_job(job_snap.to_dict() or {})
            old = steps.get(job.step or "")
            entry = step_entry(job)
            if old is None or all(old.get(k) == v for k, v in entry.items()):
                continue
            steps[job.step or ""] = {**old, **entry}
            changed = True
        if not changed:
            return None
        status, counted = summary(steps, bool(data.get("cancel_requested")))
        at = now()
        update: dict[str, Any] = {"steps": steps, "counts": counted, "status": status.value, "updated_at": at}
        if status.final and data.get("status") != status.value:
            update.update(finished_at=at, expire_at=at + timedelta(days=retention_days))
        elif not status.final:
            update.update(finished_at=None, expire_at=None)
        transaction.update(ref, update)
        return {**data, **update}

    # Steps ending together contend for this one document: a few more tries than the default five.
    try:
        written: dict[str, Any] | None = txn(client.transaction(max_attempts=SYNC_ATTEMPTS))
    except ValueError as exc:  # the library's "failed to commit in N attempts": every try was aborted
        if "Failed to commit transaction" not in str(exc):
            raise
        raise gexc.Aborted(f"pipeline {pipeline_id}: {exc}") from exc  # type: ignore[no-untyped-call]
    if written is not None and PipelineStatus(written["status"]).final:
        log.info("pipeline %s %s", pipeline_id, written["status"])
        if written.get("schedule"):
            _record_outcome(client, written)
    return written


def _record_outcome(client: firestore.Client, pipeline: Mapping[str, Any]) -> None:
    """A scheduled pipeline's end is its schedule's last outcome, as a scheduled job's is (jobrelay.cron)."""
    fields: dict[str, Any] = {
        "last_outcome": pipeline["status"],
        "last_outcome_pipeline_id": pipeline["id"],
        "last_finished_at": pipeline.get("finished_at"),
    }
    if pipeline["status"] == PipelineStatus.SUCCEEDED.value:
        fields.update(last_success_at=pipeline.get("finished_at"), last_success_pipeline_id=pipeline["id"])
    client.collection(SCHEDULES).document(pipeline["schedule"]).set(fields, merge=True)


def stale(client: firestore.Client, before: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Running pipelines not written since `before`: the maintenance pass syncs their steps again.

    `updated_at` grows with time (each step event writes it), so its index is sharded: the oldest
    `limit` of each index shard (jobrelay.indexes).
    """
    out = []
    for k in range(SHARDS):
        q = (
            client.collection(PIPELINES)
            .where(filter=firestore.FieldFilter(SHARD_FIELD, "==", k))
            .where(filter=firestore.FieldFilter("status", "==", PipelineStatus.RUNNING.value))
            .where(filter=firestore.FieldFilter("updated_at", "<", before))
            .order_by("updated_at")
            .limit(limit)
        )
        out += [s.to_dict() or {} for s in q.stream()]
    return out


def get(client: firestore.Client, pipeline_id: str) -> dict[str, Any] | None:
    snap = client.collection(PIPELINES).document(pipeline_id).get()
    return (snap.to_dict() or {}) if snap.exists else None


def graph_of(data: Mapping[str, Any]) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """(steps in order, each step's `after`, each step's job id) of a stored pipeline."""
    steps = data["steps"]
    return (
        list(data["order"]),
        {n: list(s["after"]) for n, s in steps.items()},
        {n: s["job_id"] for n, s in steps.items()},
    )


def restore_skipped(store: JobStore, data: Mapping[str, Any]) -> tuple[list[Job], list[Job]]:
    """Bring back the skipped steps whose failed dependencies run again (`graph.restorable`), in order:
    skipped -> queued, waiting on those of their dependencies that have not succeeded.

    Returns the restored jobs, and the dependencies they wait on that are already final again (a step
    that ended between the read and the write): the caller releases those once more, so no restored
    step waits for an end that has already happened.
    """
    ordered, after, ids = graph_of(data)
    jobs = store.get_many(ids.values())
    statuses = {n: jobs[ids[n]].status for n in ordered if ids[n] in jobs}
    if len(statuses) != len(ordered):
        return [], []  # a step's job is gone (retention): nothing is brought back
    restored: list[Job] = []
    for name in graph.restorable(ordered, after, statuses):
        waiting = [ids[d] for d in after[name] if statuses[d] != Status.SUCCEEDED]
        at = now()

        def decide(job: Job, waiting: list[str] = waiting, at: datetime = at) -> Change[None]:
            if job.status != Status.SKIPPED:
                return Change(None)
            return Change(None, lifecycle.requeued(job, waiting_on=waiting, at=at))

        try:
            written = store.transition(ids[name], decide)
        except TransitionRefused as exc:
            log.warning("pipeline step %s not brought back: %s", name, exc)
            continue
        if written.wrote:
            statuses[name] = Status.QUEUED
            restored.append(written.job)
            log.info("pipeline %s: step %s back in line, waiting on %s", data["id"], name, waiting)
    waited = {w for job in restored for w in job.waiting_on}
    ended = [j for j in store.get_many(waited).values() if j.status.final] if waited else []
    return restored, ended


def public(data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON the API answers: RFC 3339 times, steps in order."""
    out = {k: v for k, v in data.items() if k not in ("spec_hash",)}
    for key in TIMES:
        if key in out:
            out[key] = rfc3339(out[key])
    # Promotion links (jobrelay.pipeline_promotion): each records when it was made.
    if isinstance(out.get("promoted_from"), Mapping):
        out["promoted_from"] = public_link(out["promoted_from"])
    if "promoted_to" in out:
        out["promoted_to"] = [public_link(x) for x in out["promoted_to"] or [] if isinstance(x, Mapping)]
    order = list(data.get("order") or data.get("steps", {}))
    steps = data.get("steps", {})
    out["steps"] = {
        name: {**steps[name], **{k: rfc3339(steps[name].get(k)) for k in STEP_TIMES}} for name in order if name in steps
    }
    return out


def public_link(link: Mapping[str, Any]) -> dict[str, Any]:
    """A promotion link as the API answers it: its time in RFC 3339."""
    at = link.get("at")
    return {**link, "at": rfc3339(at) if isinstance(at, datetime) else at}
