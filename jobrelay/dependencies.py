"""Jobs that wait for other jobs (`depends_on`).

At submit, a job whose dependencies have not all finished is stored `queued` with `waiting_on`
set and no task; each unfinished dependency lists it in `dependents`. All the writes of a submit (one
job, or a whole batch) happen in one Firestore transaction, so a dependency finishing at the same moment
either sees the new dependent or is seen finished, and a refused batch writes nothing.
When a job finishes, `release` resolves its dependents: the last success a
dependent waited for dispatches it; any other end skips it (and, in turn, its own dependents).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from jobrelay import lifecycle
from jobrelay.errors import TransitionRefused, Unprocessable
from jobrelay.models import Job, Status, now
from jobrelay.store import JobStore, SameCheck, to_job

log = logging.getLogger("jobrelay.dependencies")

Dispatch = Callable[[Job], None]


def create_linked(
    store: JobStore,
    docs: Sequence[dict[str, Any]],
    *,
    owner: str,
    admin: bool,
    retention_days: int,
    same: SameCheck,
    where: Mapping[str, str] | None = None,
) -> list[tuple[Job, bool]]:
    """Create `docs` (some with `depends_on`) and their links in one transaction: all of them, or none.

    A dependency is a job of this env the caller may see, or a document earlier in `docs`; any other id
    reads as missing (another user's job answers exactly like one that does not exist). An id that
    exists already is judged by `same` (a repeat returns the stored job, anything else raises), and
    every refusal raises inside the transaction, so nothing is written. The caller keeps the writes
    (new documents plus one update per unfinished dependency) within MAX_WRITES. `where` names a
    document in refusals (a batch's "jobs[3]: ").
    """
    client = store.client
    ids = [d["id"] for d in docs]
    outside = [dep for d in docs for dep in d["depends_on"] if dep not in ids]
    refs = [store.jobs.document(i) for i in dict.fromkeys([*ids, *outside])]

    @firestore.transactional
    def txn(transaction: firestore.Transaction) -> list[tuple[Job, bool]]:
        snaps = {s.id: s for s in client.get_all(refs, transaction=transaction) if s.exists}
        stored = {i: to_job(s.to_dict() or {}) for i, s in snaps.items()}
        created: dict[str, dict[str, Any]] = {}  # new documents, in order
        results: dict[str, tuple[Job, bool]] = {}
        links: dict[str, list[str]] = {}  # unfinished stored dependency -> new jobs waiting on it
        at = now()
        for doc in docs:
            job_id = doc["id"]
            if job_id in results:
                continue  # the same id twice (a repeated idempotency key, judged by the caller)
            if job_id in stored:
                same(doc, stored[job_id])
                results[job_id] = (stored[job_id], False)
                continue
            waiting: list[str] = []
            failed: str | None = None
            for dep in doc["depends_on"]:
                if dep in created:  # an earlier job of this batch: it starts queued, or already skipped
                    status, dep_owner = Status(created[dep]["status"]), owner
                elif dep in stored and dep != job_id:
                    status, dep_owner = stored[dep].status, stored[dep].owner
                else:
                    status, dep_owner = None, None
                if status is None or (dep_owner != owner and not admin):
                    at_doc = (where or {}).get(job_id, "")
                    raise Unprocessable(
                        f"{at_doc}depends_on: job {dep} not found in env {store.env}",
                        {"field": "depends_on", "job": dep},
                    )
                if status == Status.SUCCEEDED:
                    continue
                if status.final:
                    failed = failed or dep
                else:
                    waiting.append(dep)
            data = dict(doc)
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
                    if dep in created:
                        created[dep]["dependents"] = [*created[dep]["dependents"], job_id]
                    else:
                        links.setdefault(dep, []).append(job_id)
            created[job_id] = data
            results[job_id] = (to_job(data), True)
        for job_id, data in created.items():
            transaction.create(store.jobs.document(job_id), data)
        for dep, dependents in links.items():
            transaction.update(store.jobs.document(dep), {"dependents": firestore.ArrayUnion(dependents)})
        # Documents of this batch that others of it wait on were created with their dependents filled in.
        return [(to_job(created[i]), True) if i in created else results[i] for i in ids]

    result: list[tuple[Job, bool]] = txn(client.transaction())
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
