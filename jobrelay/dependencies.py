"""Jobs that wait for other jobs (`depends_on`).

At submit, a job whose dependencies have not all finished is stored `queued` with `waiting_on`
set and no task; each unfinished dependency lists it in `dependents`. Both writes happen in one
Firestore transaction, so a dependency finishing at the same moment either sees the new dependent
or is seen finished. When a job finishes, `release` resolves its dependents: the last success a
dependent waited for dispatches it; any other end skips it (and, in turn, its own dependents).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from jobrelay import lifecycle
from jobrelay.errors import PermissionDenied, TransitionRefused, Unprocessable
from jobrelay.models import Job, Status, now
from jobrelay.store import JobStore, to_job

log = logging.getLogger("jobrelay.dependencies")

Dispatch = Callable[[Job], None]


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


def release(store: JobStore, finished: Job, dispatch: Dispatch, retention_days: int) -> None:
    """Resolve the dependents of a job that just reached a final state."""
    pending = [(finished, d) for d in finished.dependents]
    while pending:
        parent, dep_id = pending.pop()
        at = now()
        decided: list[str] = []

        def change(
            job: Job, parent: Job = parent, at: datetime = at, decided: list[str] = decided
        ) -> dict[str, Any] | None:
            decided[:] = []
            if parent.id not in job.waiting_on or job.status != Status.QUEUED:
                return None
            if parent.status != Status.SUCCEEDED:
                decided.append("skipped")
                return lifecycle.skipped(job, at=at, dep=parent.id, expire_at=at + timedelta(days=retention_days))
            rest = [w for w in job.waiting_on if w != parent.id]
            decided.append("ready" if not rest else "waiting")
            # Ready: due now, so the maintenance pass dispatches it if the dispatch below never happens.
            return {"waiting_on": rest} if rest else {"waiting_on": rest, "due_at": max(job.run_at or at, at)}

        try:
            written = store.transition(dep_id, change)
        except TransitionRefused as exc:
            log.warning("dependent %s of %s: %s", dep_id, parent.id, exc)
            continue
        if written is None:
            continue
        job = written[0]
        if decided == ["ready"]:
            log.info("job %s: dependencies done, dispatching", job.id)
            dispatch(job)
        elif decided == ["skipped"]:
            log.info("job %s skipped: dependency %s ended %s", job.id, parent.id, parent.status.value)
            pending.extend((job, d) for d in job.dependents)
