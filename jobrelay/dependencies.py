"""Jobs that wait for other jobs (`depends_on`).

At submit, a job whose dependencies have not all finished is stored `queued` with `waiting_on`
set and no task; each unfinished dependency lists it in `dependents`. All the writes of a submit (one
job, or a whole batch) happen in one Firestore transaction, so a dependency finishing at the same moment
either sees the new dependent or is seen finished, and a refused batch writes nothing.
When a job finishes, `release` resolves its direct dependents: the last success a dependent waited for
makes it ready; any other end skips it. `jobrelay.flow` dispatches the ready ones and follows the
skipped ones' own ends (and so their dependents).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from google.cloud import firestore

from jobrelay import lifecycle
from jobrelay.errors import TransitionRefused, Unprocessable
from jobrelay.models import Job, Status, now
from jobrelay.store import Change, JobStore, SameCheck, to_job

log = logging.getLogger("jobrelay.dependencies")


def create_linked(
    store: JobStore,
    docs: Sequence[dict[str, Any]],
    *,
    owner: str,
    admin: bool,
    retention_days: int,
    same: SameCheck,
    where: Mapping[str, str] | None = None,
    also: Callable[[firestore.Transaction], None] | None = None,
) -> list[tuple[Job, bool]]:
    """Create `docs` (some with `depends_on`) and their links in one transaction: all of them, or none.

    A dependency is a job of this env the caller may see, or a document earlier in `docs`; any other id
    reads as missing (another user's job answers exactly like one that does not exist). An id that
    exists already is judged by `same` (a repeat returns the stored job, anything else raises), and
    every refusal raises inside the transaction, so nothing is written. The caller keeps the writes
    (new documents plus one update per unfinished dependency) within MAX_WRITES. `where` names a
    document in refusals (a batch's "jobs[3]: "). `also` adds writes of the caller's own to the same
    transaction, after its reads (a job request marked accepted, jobrelay.intake; a pipeline's own
    document, created so that one existing already fails the commit, jobrelay.pipelines).
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
        if also is not None:
            also(transaction)
        for job_id, data in created.items():
            transaction.create(store.jobs.document(job_id), data)
        for dep, dependents in links.items():
            transaction.update(store.jobs.document(dep), {"dependents": firestore.ArrayUnion(dependents)})
        # Documents of this batch that others of it wait on were created with their dependents filled in.
        return [(to_job(created[i]), True) if i in created else results[i] for i in ids]

    result: list[tuple[Job, bool]] = txn(client.transaction())
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
