"""Fan-in: a waiting fan-out ends once its children have, with no hot document and no held request.

A child's end writes nothing on its parent. Instead `ChildEnded` (a `jobrelay.flow` hook) asks for a
*fan-in check* of the parent: a Cloud Task to the worker named after (parent, time bucket of
BUCKET_SECONDS) and scheduled just after that bucket ends, so Cloud Tasks keeps one per bucket
whatever the number of children ending in it, and it runs after every end in its bucket. Each process
remembers the buckets it asked for, so it calls Cloud Tasks about once a bucket, not once a child.

A check (`check`) asks whether any child has not ended (a one-document query on the index `parent_id,
status`); while one has not, nothing is written; once none is left, it counts the ones that succeeded
(an aggregation) and one guarded write ends the parent:
`succeeded`, or `failed` when more children failed for good than it allows (`allow_failed_children`).
Checks run: on each such task, once right after the parent goes `waiting` (children that ended before
that found it still running and were dropped), and from the maintenance pass for parents waiting
longer than a few minutes, so a lost task delays a fan-in but never loses it. In one process, checks
of one parent never overlap (`SingleFlight`): one that arrives while another runs makes that one run
once more when it ends, so the last child's check is never lost to a check that counted too early.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from google.api_core import exceptions as gexc

from jobrelay import lifecycle
from jobrelay.errors import TransitionRefused
from jobrelay.fanout import child_id
from jobrelay.lifecycle import CHILDREN_FAILED, Cancel, _errors_with
from jobrelay.models import FINAL, ErrorInfo, Job, Status, now
from jobrelay.store import Change, Fields, JobStore, Written

log = logging.getLogger("jobrelay.fanin")

BUCKET_SECONDS = 1.0
CHECK_DELAY = 0.25  # after its bucket ends: every child end of the bucket is written by then
UNFINISHED = [Status.QUEUED, Status.RUNNING, Status.RETRYING, Status.FAILED, Status.WAITING]
CANCEL_THREADS = 16
CHILDREN_PAGE = 300  # children read by id per call, for ctx.results.children
QUERY_TIMEOUT = 30.0  # a check that cannot count in time fails, and its task (or the next bucket's) runs again


@dataclass(frozen=True)
class Children:
    """What a fan-in check counted of a fan-out's children."""

    total: int
    unfinished: int
    succeeded: int

    @property
    def failed(self) -> int:
        """Children that ended other than succeeded (or are gone): meaningful once none is unfinished."""
        return max(0, self.total - self.succeeded)


def decide(job: Job, children: Children, *, at: datetime, expire_at: datetime) -> Fields | None:
    """The end of a waiting fan-out whose children all ended: succeeded within its allowance, else
    failed; None while a child has not ended or the job no longer waits."""
    if job.status != Status.WAITING or children.unfinished > 0:
        return None
    counted = {"parent_id": job.id, "total": children.total, "succeeded": children.succeeded, "failed": children.failed}
    ended: Fields = {
        "finished_at": at,
        "expire_at": expire_at,
        "result": {"returned": job.returned, "children": counted},
    }
    if children.failed <= job.allow_failed_children:
        return {"status": Status.SUCCEEDED.value, **ended}
    error = ErrorInfo(
        type=CHILDREN_FAILED,
        message=(
            f"{children.failed} of {children.total} children did not succeed; it allows "
            f"{job.allow_failed_children} (their jobs have parent_id {job.id})"
        ),
        retryable=False,
        fingerprint=f"children-failed-{job.type[:40]}".replace(".", "-"),
        attempt=job.attempt,
        at=at,
    )
    return {
        "status": Status.FAILED.value,
        **ended,
        "error": error.model_dump(mode="python"),
        "errors": _errors_with(job, error),
    }


def count(store: JobStore, parent: Job) -> Children:
    """The parent's children by outcome: while one has not ended, a one-document query says so (one
    read); once none is left, one aggregation counts those that succeeded."""
    of = ("parent_id", "==", parent.id)
    if store.any(of, ("status", "in", [s.value for s in UNFINISHED]), timeout=QUERY_TIMEOUT):
        return Children(total=parent.spawned or 0, unfinished=1, succeeded=0)
    succeeded = store.count(of, ("status", "==", Status.SUCCEEDED.value), timeout=QUERY_TIMEOUT)
    return Children(total=parent.spawned or 0, unfinished=0, succeeded=succeeded)


def check(store: JobStore, parent: Job, retention_days: int) -> Written[bool] | None:
    """Count the children of a waiting `parent` and end it when none is left; None when it does not
    wait (any more). The returned write says whether this check ended it (`wrote`)."""
    if parent.status != Status.WAITING:
        return None
    children = count(store, parent)
    if children.unfinished:
        log.debug("job %s: %d of %d children still running", parent.id, children.unfinished, children.total)
        return Written(False, parent)
    at = now()

    def end(job: Job) -> Change[bool]:
        fields = decide(job, children, at=at, expire_at=at + timedelta(days=retention_days))
        return Change(fields is not None, fields)

    written = store.transition(parent.id, end)
    if written.wrote:
        log.info(
            "job %s: all %d children ended (%d succeeded); now %s",
            parent.id,
            children.total,
            children.succeeded,
            written.job.status.value,
        )
    return written


class SingleFlight:
    """Runs `fn` for a key in one thread at a time; a call that finds it running asks for one more run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Any] = set()
        self._again: set[Any] = set()

    def run(self, key: Any, fn: Callable[[], bool]) -> None:
        """`fn` returns True when no further run can change anything (the fan-out ended)."""
        with self._lock:
            if key in self._running:
                self._again.add(key)
                return
            self._running.add(key)
        try:
            while True:
                done = fn()
                with self._lock:
                    if done or key not in self._again:
                        return
                    self._again.discard(key)
        finally:
            with self._lock:
                self._running.discard(key)
                self._again.discard(key)


# Asks for a fan-in check of (env, parent id) in time bucket n, due at the given time.
ScheduleCheck = Callable[[str, str, int, datetime], object]


class ChildEnded:
    """`jobrelay.flow` hook: a child's end asks for a fan-in check of its parent, once per bucket."""

    def __init__(self, schedule: ScheduleCheck, clock: Callable[[], float] = time.time) -> None:
        self._schedule = schedule
        self._clock = clock
        self._asked: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def __call__(self, env: str, job: Job) -> None:
        if job.parent_id is None:
            return
        bucket = int(self._clock() // BUCKET_SECONDS)
        key = (env, job.parent_id)
        with self._lock:
            if self._asked.get(key) == bucket:
                return
            self._asked[key] = bucket
            if len(self._asked) > 4096:  # forget parents not heard of for a while
                self._asked = {k: b for k, b in self._asked.items() if b >= bucket - 10}
        when = datetime.fromtimestamp((bucket + 1) * BUCKET_SECONDS + CHECK_DELAY, UTC)
        try:
            self._schedule(env, job.parent_id, bucket, when)
        except gexc.GoogleAPIError as exc:
            with self._lock:  # the next child end of this bucket asks again
                self._asked.pop(key, None)
            log.warning("job %s: fan-in check for parent %s not scheduled (%s)", job.id, job.parent_id, exc)


class Redrive(Protocol):
    """Redrives dead jobs of one env by id (`deadletters.redrive` with the flow's dispatch)."""

    def __call__(self, job_ids: list[str]) -> Any: ...


def reopen(store: JobStore, parent: Job, redrive: Redrive) -> int:
    """A fan-out redriven after failing for its children: its dead-lettered children run again.

    Returns how many were redriven; the parent (already `waiting` again) ends by the fan-in as before.
    """
    ids = [c.id for c in children(store, parent.id, Status.DEAD_LETTERED)]
    for first in range(0, len(ids), 500):
        redrive(ids[first : first + 500])
    log.info("job %s: %d failed children redriven", parent.id, len(ids))
    return len(ids)


def children(store: JobStore, parent_id: str, status: Status | None = None, page_size: int = 300) -> Iterator[Job]:
    """The children of `parent_id` (of one status) in id order, read a page at a time: the parent's
    own index range (`parent_id`, or `parent_id, status`), its entries scattered by the hashed ids."""
    filters: list[tuple[str, str, Any]] = [("parent_id", "==", parent_id)]
    if status is not None:
        filters.append(("status", "==", status.value))
    return store.scan_by_id(*filters, page_size=page_size)


Ended = Callable[[Job], None]


def cancel_children(store: JobStore, parent: Job, *, by: str, retention_days: int, ended: Ended) -> int:
    """Cancel the unfinished children of a cancelled job: waiting ones now, running ones cooperatively.

    `ended` follows each child cancelled now (its task deleted, its end handed to the flow). Returns
    how many were cancelled or asked to stop.
    """
    unfinished = [c for c in children(store, parent.id) if c.status not in FINAL and c.status != Status.FAILED]
    if not unfinished:
        return 0

    def one(child: Job) -> bool:
        at = now()

        def decide_cancel(job: Job) -> Change[Cancel]:
            d = lifecycle.decide_cancel(job, at=at, by=by, expire_at=at + timedelta(days=retention_days))
            return Change(d.outcome, d.fields or None)

        try:
            written = store.transition(child.id, decide_cancel)
        except TransitionRefused:
            return False  # ended in between
        if written.outcome == Cancel.CANCELLED:
            ended(written.job)
        return written.wrote

    with ThreadPoolExecutor(CANCEL_THREADS, thread_name_prefix="cancel-children") as pool:
        done = sum(pool.map(one, unfinished))
    log.info("job %s cancelled: %d of its children cancelled or asked to stop", parent.id, done)
    return done


class JobResults:
    """`ctx.results`' source in one env: a job's result (large ones from `job_results`), a fan-out's
    children's results in index order."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def _value(self, job: Job) -> Any:
        if job.result_ref is None:
            return job.result
        snap = self.store.client.document(job.result_ref).get()
        stored = (snap.to_dict() or {}).get("result") if snap.exists else None
        if isinstance(job.result, dict) and "children" in job.result:
            return {**job.result, "returned": stored}  # a fan-out's own large result
        return stored

    def result(self, job_id: str) -> Any:
        job = self.store.get(job_id)
        if job is None:
            raise KeyError(f"job {job_id} no longer exists (retention)")
        return self._value(job)

    def children(self, parent_id: str) -> Iterator[tuple[str, str, Any]]:
        """In index order. A child's id follows from (parent, index), so they are read by id, a page at
        a time: no query, and no index on child_index (docs/capacity.md). One gone by retention is skipped."""
        parent = self.store.get(parent_id)
        if parent is None:
            raise KeyError(f"job {parent_id} no longer exists (retention)")
        for first in range(0, parent.spawned or 0, CHILDREN_PAGE):
            ids = [child_id(parent_id, i) for i in range(first, min(first + CHILDREN_PAGE, parent.spawned or 0))]
            found = self.store.get_many(ids)
            for child in (found[i] for i in ids if i in found):
                yield child.id, child.status.value, self._value(child)
