"""Jobs that wait for other jobs (`depends_on`).

At submit, a job whose dependencies have not all finished is stored `queued` with `waiting_on`
set and no task; each unfinished dependency lists it in `dependents`. Both writes happen in one
Firestore transaction, so a dependency finishing at the same moment either sees the new dependent
or is seen finished. When a job finishes, `release` resolves its direct dependents: the last success
a dependent waited for makes it ready; any other end skips it. `jobrelay.flow` dispatches the ready
ones and follows the skipped ones' own ends (and so their dependents).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from google.cloud import firestore

from jobrelay import lifecycle
from jobrelay.errors import PermissionDenied, TransitionRefused, Unprocessable
from jobrelay.models import Job, Status, now
from jobrelay.store import Change, JobStore, to_job

log = logging.getLogger("jobrelay.dependencies")


def create_with_dependencies(
    store: JobStore,
    doc: dict[str, Any],
    deps: Sequence[str],
    *,
    owner: str,
    admin: bool,
    retention_days: int,
) -> tuple[Job, bool]:
    """Create `doc` in one transaction with the links to its unfinished dependencies."""
    client = store.client
    ref = store.jobs.document(doc["id"])
    dep_refs = [store.jobs.document(d) for d in deps]

    @firestore.transactional
    def txn(transaction: firestore.Transaction) -> tuple[Job, bool]:
        existing = ref.get(transaction=transaction)
        if existing.exists:
            return to_job(existing.to_dict() or {}), False
        snaps = {s.id: s for s in client.get_all(dep_refs, transaction=transaction)}
        waiting: list[str] = []
        failed: str | None = None
        for dep in deps:
            snap = snaps.get(dep)
            if snap is None or not snap.exists:
                raise Unprocessable(
                    f"depends_on: job {dep} does not exist in this env", {"field": "depends_on", "job": dep}
                )
            dep_job = to_job(snap.to_dict() or {})
            if dep_job.owner != owner and not admin:
                raise PermissionDenied(f"depends_on: job {dep} belongs to another user")
            if dep_job.status == Status.SUCCEEDED:
                continue
            if dep_job.status.final:
                failed = failed or dep
            else:
                waiting.append(dep)
        data = dict(doc)
        at = now()
        if failed is not None:
            data.update(
                status=Status.SKIPPED.value,
                finished_at=at,
                skip_reason=f"dependency {failed} did not succeed",
                expire_at=at + timedelta(days=retention_days),
            )
        else:
            data["waiting_on"] = waiting
            if waiting:
                data["due_at"] = None  # nothing is due until the dependencies release it
            for dep in waiting:
                transaction.update(store.jobs.document(dep), {"dependents": firestore.ArrayUnion([doc["id"]])})
        transaction.create(ref, data)
        return to_job(data), True

    result: tuple[Job, bool] = txn(client.transaction())
    return result


@dataclass(frozen=True)
class Released:
    """What a finished job's end did to the jobs waiting for it."""

    ready: list[Job] = field(default_factory=list)  # waited for nothing else: to be dispatched
    skipped: list[Job] = field(default_factory=list)  # now `skipped`: their own ends follow


class _Release(StrEnum):
    READY = "ready"
    WAITING = "waiting"
    SKIPPED = "skipped"


def release(store: JobStore, finished: Job, retention_days: int) -> Released:
    """Resolve the direct dependents of a job that just reached a final state."""
    out = Released()
    for dep_id in finished.dependents:
        at = now()

        def decide(job: Job, at: datetime = at) -> Change[_Release | None]:
            if finished.id not in job.waiting_on or job.status != Status.QUEUED:
                return Change(None)
            if finished.status != Status.SUCCEEDED:
                fields = lifecycle.skipped(job, at=at, dep=finished.id, expire_at=at + timedelta(days=retention_days))
                return Change(_Release.SKIPPED, fields)
            rest = [w for w in job.waiting_on if w != finished.id]
            if rest:
                return Change(_Release.WAITING, {"waiting_on": rest})
            # Ready: due now, so the maintenance pass dispatches it if the dispatch that follows never happens.
            return Change(_Release.READY, {"waiting_on": rest, "due_at": max(job.run_at or at, at)})

        try:
            written = store.transition(dep_id, decide)
        except TransitionRefused as exc:
            log.warning("dependent %s of %s: %s", dep_id, finished.id, exc)
            continue
        if written.outcome == _Release.READY:
            log.info("job %s: dependencies done, dispatching", dep_id)
            out.ready.append(written.job)
        elif written.outcome == _Release.SKIPPED:
            log.info("job %s skipped: dependency %s ended %s", dep_id, finished.id, finished.status.value)
            out.skipped.append(written.job)
    return out
