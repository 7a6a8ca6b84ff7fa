"""Debounce: submits with the same key inside a window collapse into one job, run once.

The first submit with a key creates the job, due `seconds` later (its task scheduled for then), and
`debounce_keys/{id}` (one per env, owner, job type and key) naming it. A later submit with the key,
while that job has not started and the window is open (`max_wait` after the first submit), gives
the job its payload and moves its due time to `seconds` after now, never past the window's end, and
answers the same job (200 instead of 202). Both writes are one transaction with the key's document.

Cloud Tasks cannot move a task's schedule time, so the task arrives at the old time; the claim sees
the job's later due time and dispatches it again for then (jobrelay.gates, no attempt used): one
task and one job write per time the window moved while a task was due. Once the job has started
(or waits behind a gate, or the window closed), the next submit opens a new window with a new job.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from jobrelay.indexes import SHARD_FIELD, index_shard
from jobrelay.models import Job, Status
from jobrelay.namespace import DEBOUNCE_KEYS
from jobrelay.store import Fields, JobStore, to_job
from jobrelay.transactions import Tx

log = logging.getLogger("jobrelay.debounce")

KEEP_KEY = timedelta(days=1)  # a key's document outlives its window by this much (then TTL removes it)


def collapsible(job: Job, at: datetime) -> bool:
    """Whether a new submit may still become this job: it has not started and its window is open."""
    return (
        job.status == Status.QUEUED
        and job.attempt == 0
        and not job.cancel_requested
        and job.waiting_for is None
        and job.debounce is not None
        and at < job.debounce.max_at
    )


def submit(store: JobStore, doc: Fields, at: datetime) -> tuple[Job, bool]:
    """Create the debounced job, or fold this submit into the key's open one; (job, created)."""
    window = doc["debounce"]
    seconds = timedelta(seconds=window["seconds"])

    def fn(tx: Tx) -> tuple[Job, bool]:
        key_doc = tx.get(DEBOUNCE_KEYS, window["id"])
        current = tx.get_job(key_doc["job_id"]) if key_doc is not None else None
        if current is not None and current.debounce is not None and collapsible(current, at):
            due = max(min(at + seconds, current.debounce.max_at), current.run_at or at)
            folded = {**current.debounce.model_dump(mode="python"), "submits": current.debounce.submits + 1}
            fields: dict[str, Any] = {
                "payload": doc["payload"],
                "spec_hash": doc["spec_hash"],
                "run_at": due,
                "due_at": due,
                "debounce": folded,
            }
            tx.update_job(current.id, fields)
            tx.set(DEBOUNCE_KEYS, window["id"], _key_doc(doc, current.id, folded, due, at))
            return to_job(current.model_dump(by_alias=True) | fields), False
        tx.create_job(doc)
        tx.set(DEBOUNCE_KEYS, window["id"], _key_doc(doc, doc["id"], window, doc["run_at"], at))
        return to_job(doc), True

    job, created = store.transact(fn, turn=(f"{DEBOUNCE_KEYS}/{window['id']}",))
    if not created:
        assert job.debounce is not None
        log.info("job %s: debounced submit %d folded in; due %s", job.id, job.debounce.submits, job.run_at)
    return job, created


def _key_doc(doc: Fields, job_id: str, window: Fields, due: datetime, at: datetime) -> Fields:
    return {
        SHARD_FIELD: index_shard(window["id"]),  # the clean-up reads closed windows per index shard
        "key": window["key"],
        "owner": doc["owner"],
        "type": doc["type"],
        "job_id": job_id,
        "first_at": window["first_at"],
        "max_at": window["max_at"],
        "due_at": due,
        "submits": window["submits"],
        "updated_at": at,
        "expire_at": window["max_at"] + KEEP_KEY,
    }
