"""The Firestore store: one `jobs/{id}` document per job in the env's own project.

Every state change is a compare-and-set: the writer read the document (or wrote it last) and writes
with a precondition on the document's update time, so the write lands only if nobody changed the job
in between; on a conflict it reads again and re-checks the lifecycle. That is a single-document
transaction without server-side locks (see docs/adr/0001-guarded-writes-on-update-time.md), and it lets a worker
claim a job with one read and finish it with one blind write.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers

from jobrelay import firestore_writes
from jobrelay.errors import BadRequest, NotFound
from jobrelay.indexes import SHARD_FIELD, SHARDS, index_shard
from jobrelay.models import Job, is_job_id, now
from jobrelay.namespace import JOBS as JOBS
from jobrelay.namespace import RESULTS as RESULTS
from jobrelay.validation import MAX_PAGE_TOKEN

if TYPE_CHECKING:
    from jobrelay.transactions import Tx

log = logging.getLogger("jobrelay.store")

MAX_INLINE_RESULT_BYTES = 16 * 1024
CAS_RETRIES = 8
# Writes in one atomic commit (a batch or a transaction): the SDKs' documented cap.
MAX_WRITES = 500

Fields = dict[str, Any]
# Raises (a refusal) when a stored job is not a repeat of the document about to be created.
SameCheck = Callable[[Fields, "Job"], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Change(Generic[T]):
    """A decision taken on the job as it is now: its outcome, and the fields to write (None: nothing)."""

    outcome: T
    fields: Fields | None = None


@dataclass(frozen=True)
class Written(Generic[T]):
    """What a guarded write did: the decision's outcome and the job after it.

    `update_time` is the document's new update time when something was written, else None (then
    `job` is the job as it was read).
    """

    outcome: T
    job: Job
    update_time: datetime | None = None

    @property
    def wrote(self) -> bool:
        return self.update_time is not None


def to_job(data: Fields) -> Job:
    return Job.model_validate(data)


def _fetch_document(client: Any, ref: Any) -> tuple[Fields, datetime] | None:
    """One document's fields and update time by the unary GetDocument call (JobStore._fetch says why)."""
    try:
        doc = client._firestore_api.get_document(request={"name": ref._document_path}, metadata=client._rpc_metadata)
    except gexc.NotFound:
        return None
    fields: Fields = _helpers.decode_dict(doc.fields, client)  # type: ignore[assignment]
    return fields, doc.update_time


def with_shard(data: Fields) -> Fields:
    """The document with its index shard (jobrelay.indexes), which every job carries from its creation."""
    return data if SHARD_FIELD in data else {**data, SHARD_FIELD: index_shard(data["id"])}


def _encode_token(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[datetime, str]:
    refused = BadRequest("page_token is not one this API gave out", {"field": "page_token"})
    if len(token) > MAX_PAGE_TOKEN:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
        if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
            raise refused
        created = datetime.fromisoformat(value[0])
    except (ValueError, TypeError, RecursionError) as exc:
        raise refused from exc
    # The id goes into the query's cursor: it must be an id the store could hold.
    if created.tzinfo is None or not is_job_id(value[1]):
        raise refused
    return created, value[1]


class JobStore:
    """Jobs of one env, in that env's Firestore."""

    def __init__(self, client: firestore.Client, env: str) -> None:
        self.client = client
        self.env = env
        self.jobs = client.collection(JOBS)

    # -- create and read ------------------------------------------------------------------------

    def create(self, data: Fields) -> tuple[Job, bool]:
        """Create the job document; if its id exists already, return that job and False."""
        ref = self.jobs.document(data["id"])
        data = with_shard(data)
        try:
            firestore_writes.create(self.client, ref, data)
        except gexc.AlreadyExists:
            snap = ref.get()
            if not snap.exists:  # created and removed in between: try once more
                firestore_writes.create(self.client, ref, data)
                return to_job(data), True
            return to_job(snap.to_dict() or {}), False
        return to_job(data), True

    def create_all(self, docs: Sequence[Fields], same: SameCheck) -> list[tuple[Job, bool]]:
        """Create every new document in one atomic batch; ids that exist already return the stored job.

        All or nothing: `same(doc, stored)` judges each id found to exist, before anything is written,
        and whatever it raises leaves the store unchanged. Ids must be distinct; at most MAX_WRITES.
        """
        if len(docs) > MAX_WRITES:
            raise ValueError(f"at most {MAX_WRITES} documents in one atomic write; got {len(docs)}")
        found: dict[str, Job] = {}
        for _ in range(CAS_RETRIES):
            new = [d for d in docs if d["id"] not in found]
            if not new or self._create_atomically(new):
                return [(found[d["id"]], False) if d["id"] in found else (to_job(d), True) for d in docs]
            # Some id exists (a repeated idempotency key): the batch wrote nothing. Judge what exists,
            # then write the rest, again all at once (someone may create one of them in between).
            by_id = {d["id"]: d for d in new}
            for job_id, job in self.get_many(by_id).items():
                same(by_id[job_id], job)
                found[job_id] = job
        raise RuntimeError(f"{len(docs)} jobs: too many concurrent creations, gave up after {CAS_RETRIES} tries")

    def _create_atomically(self, docs: Sequence[Fields]) -> bool:
        """One batch of creates; False (nothing written) when one of the documents exists."""
        batch = self.client.batch()
        for data in docs:
            firestore_writes.add_create(batch, self.jobs.document(data["id"]), with_shard(data))
        try:
            batch.commit()
        except gexc.AlreadyExists:
            return False
        return True

    def get(self, job_id: str) -> Job | None:
        found = self._fetch(job_id)
        return to_job(found[0]) if found is not None else None

    def read(self, job_id: str) -> tuple[Job, datetime] | None:
        """The job and its document's update time (the base of a guarded write), or None."""
        found = self._fetch(job_id)
        return (to_job(found[0]), found[1]) if found is not None else None

    def _fetch(self, job_id: str) -> tuple[Fields, datetime] | None:
        """One document's fields and update time, by Firestore's unary GetDocument call (one billed read).

        `DocumentReference.get()` asks with the streaming BatchGetDocuments (gRPC starts a thread per
        streaming call) and deep-copies the fields twice (into the snapshot, out of `to_dict()`); the
        worker reads a document per delivery, and the fields go straight into a `Job` model anyway.
        """
        return _fetch_document(self.client, self.jobs.document(job_id))

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        refs = [self.jobs.document(j) for j in job_ids]
        return {s.id: to_job(s.to_dict() or {}) for s in self.client.get_all(refs) if s.exists}

    def page(
        self,
        *,
        owner: str | None,
        status: str | None = None,
        job_type: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Jobs newest first; `owner=None` lists everyone's (admins), one query per index shard, merged."""
        q: Any = self.jobs
        if owner is not None:
            q = q.where(filter=firestore.FieldFilter("owner", "==", owner))
        if status:
            q = q.where(filter=firestore.FieldFilter("status", "==", status))
        if job_type:
            q = q.where(filter=firestore.FieldFilter("type", "==", job_type))
        after = _decode_token(page_token) if page_token else None

        def newest_first(query: Any) -> Iterator[Job]:
            query = query.order_by("created_at", direction=firestore.Query.DESCENDING).order_by(
                "id", direction=firestore.Query.DESCENDING
            )
            if after is not None:
                query = query.start_after({"created_at": after[0], "id": after[1]})
            return (to_job(s.to_dict() or {}) for s in query.limit(page_size + 1).stream())

        if owner is not None:
            found: Iterable[Job] = newest_first(q)
        else:
            # An index on everyone's jobs by creation time is a hot range unless sharded (jobrelay.indexes).
            found = heapq.merge(
                *(newest_first(q.where(filter=firestore.FieldFilter(SHARD_FIELD, "==", k))) for k in range(SHARDS)),
                key=lambda j: (j.created_at, j.id),
                reverse=True,
            )
        docs = list(itertools.islice(found, page_size + 1))
        token = None
        if len(docs) > page_size:
            docs = docs[:page_size]
            token = _encode_token(docs[-1].created_at, docs[-1].id)
        return docs, token

    # -- guarded writes -------------------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        decide: Callable[[Job], Change[T]],
        *,
        base: tuple[datetime, Job] | None = None,
    ) -> Written[T]:
        """Apply `decide` (a pure function of the current job) as a compare-and-set; return its decision.

        `decide` returns the outcome and the fields to write (None to write nothing); it raises
        TransitionRefused when the job's state does not allow the change. On a conflicting write the
        job is read again and decided again. `base` (update time and job as last seen) saves the
        read when the caller wrote the document last.
        """
        ref = self.jobs.document(job_id)
        for _ in range(CAS_RETRIES):
            if base is None:
                snap = ref.get()
                if not snap.exists:
                    raise NotFound(f"job {job_id} not found in env {self.env}")
                current, update_time = to_job(snap.to_dict() or {}), snap.update_time
            else:
                (update_time, current), base = base, None
            change = decide(current)
            if change.fields is None:
                return Written(change.outcome, current)
            try:
                option = self.client.write_option(last_update_time=update_time)
                result = firestore_writes.update(self.client, ref, change.fields, option)
            except gexc.FailedPrecondition:
                continue  # somebody changed the job since: read it again and decide again
            except gexc.Aborted:
                continue  # a transaction held the job's document (flow control's slots): read it again
            merged = current.model_dump(by_alias=True) | {
                k: v for k, v in change.fields.items() if "." not in k and not _is_sentinel(v)
            }
            return Written(change.outcome, to_job(merged), result.update_time)
        raise RuntimeError(f"job {job_id}: too many concurrent changes, gave up after {CAS_RETRIES} tries")

    def transact(self, fn: Callable[[Tx], T], *, turn: Sequence[str] = ()) -> T:
        """Run `fn` in one transaction, again on contention; StaleJob when a job's guarded write lost.

        `turn` names the contended documents it reads and writes (`collection/id`): this process's
        transactions on them take turns (`serialized`).
        """
        from jobrelay.transactions import StaleJob, Tx, serialized  # they build on this module

        tx_box: list[Tx] = []

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> T:
            tx = Tx(self, transaction)
            tx_box[:] = [tx]
            return fn(tx)

        for _ in range(CAS_RETRIES):
            try:
                with serialized(*turn):
                    result: T = run(self.client.transaction(max_attempts=CAS_RETRIES * 2))
                return result
            except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound) as exc:
                if tx_box and self._moved(tx_box[0].guards):
                    continue  # a document read without a lock was written since: decide again
                # The emulator and Firestore both answer a stale update time with FAILED_PRECONDITION; so
                # does a query that lacks its index, which must not read as "changed since".
                stale = isinstance(exc, gexc.FailedPrecondition) and "index" not in str(exc).lower()
                if stale and tx_box and tx_box[0].based:
                    raise StaleJob(str(exc)) from exc
                raise
        raise RuntimeError(f"a transaction on {list(turn)}: too many concurrent changes, gave up after {CAS_RETRIES}")

    def _moved(self, guards: dict[tuple[str, str], datetime | None]) -> bool:
        """Whether a document read without a lock (`Tx.read`) changed since it was read."""
        if not guards:
            return False
        refs = [self.client.collection(c).document(d) for c, d in guards]
        snaps = self.client.get_all(refs)
        current = {(s.reference.parent.id, s.id): s.update_time if s.exists else None for s in snaps}
        return any(current.get(k) != seen for k, seen in guards.items())

    def store_result(self, job_id: str, result: Any) -> tuple[Any, str | None]:
        """Small results stay in the job document; larger ones go to `job_results/{id}`."""
        encoded = json.dumps(result, default=str)
        if len(encoded.encode()) <= MAX_INLINE_RESULT_BYTES:
            return result, None
        self.client.collection(RESULTS).document(job_id).set({"result": result, "created_at": now()})
        return None, f"{RESULTS}/{job_id}"

    def mark_published(self, job_id: str, n: int) -> None:
        """Record that Pub/Sub holds dispatch `n` of a pool job, so nothing needs to deliver it again.

        A blind field update (no read): `published_dispatch` only grows (a late marker of an older
        dispatch cannot lower it), and `due_at` is cleared so the maintenance pass stops looking.
        A marker that fails to land costs at most a duplicate message later, never a lost job.
        """
        try:
            self.jobs.document(job_id).update({"published_dispatch": firestore.Maximum(n), "due_at": None})
        except gexc.GoogleAPIError as exc:
            log.warning("job %s: published dispatch %d, but could not record it (%s)", job_id, n, exc)

    def scan(self, *filters: tuple[str, str, Any], order: str, page_size: int = 200) -> Iterator[Job]:
        """Every job matching `filters`, in `order` within each index shard, a page at a time (however many).

        `order` is a monotonically increasing field, so its index is sharded (jobrelay.indexes): one
        query per shard, one after another.
        """
        for k in range(SHARDS):
            yield from self._scan_shard(k, filters, order, page_size)

    def _scan_shard(
        self, shard: int, filters: Sequence[tuple[str, str, Any]], order: str, page_size: int
    ) -> Iterator[Job]:
        q: Any = self.jobs.where(filter=firestore.FieldFilter(SHARD_FIELD, "==", shard))
        for field, op, value in filters:
            q = q.where(filter=firestore.FieldFilter(field, op, value))
        q = q.order_by(order)
        last: Any = None
        while True:
            page = (q.start_after(last) if last is not None else q).limit(page_size)
            snaps = list(page.stream())
            for snap in snaps:
                yield to_job(snap.to_dict() or {})
            if len(snaps) < page_size:
                return
            last = snaps[-1]

    def count(self, *filters: tuple[str, str, Any], timeout: float | None = None) -> int:
        """How many jobs match `filters`: one aggregation query (billed a read per 1,000 entries counted)."""
        q: Any = self.jobs
        for field, op, value in filters:
            q = q.where(filter=firestore.FieldFilter(field, op, value))
        return int(q.count().get(timeout=timeout)[0][0].value)

    def any(self, *filters: tuple[str, str, Any], timeout: float | None = None) -> bool:
        """Whether some job matches `filters`: a query for one document's name (one read)."""
        q: Any = self.jobs
        for field, op, value in filters:
            q = q.where(filter=firestore.FieldFilter(field, op, value))
        return any(True for _ in q.select([]).limit(1).stream(timeout=timeout))

    def first(self, *filters: tuple[str, str, Any], order: str, limit: int) -> list[Job]:
        """The first `limit` jobs matching `filters` in `order` (then id) over every index shard: one
        query of `limit` per shard, merged (`order` grows with time, so its index is sharded)."""

        def shard(k: int) -> Iterator[Job]:
            q: Any = self.jobs.where(filter=firestore.FieldFilter(SHARD_FIELD, "==", k))
            for field, op, value in filters:
                q = q.where(filter=firestore.FieldFilter(field, op, value))
            q = q.order_by(order).order_by("__name__").limit(limit)
            return (to_job(s.to_dict() or {}) for s in q.stream())

        merged = heapq.merge(*(shard(k) for k in range(SHARDS)), key=lambda j: (getattr(j, order), j.id))
        return list(itertools.islice(merged, limit))

    def scan_by_id(self, *filters: tuple[str, str, Any], page_size: int = 300) -> Iterator[Job]:
        """Every job matching equality `filters`, in id order, a page at a time (however many).

        For one key's own jobs (a parent's children): no field that grows with time, so no shard.
        """
        q: Any = self.jobs
        for field, op, value in filters:
            q = q.where(filter=firestore.FieldFilter(field, op, value))
        q = q.order_by("__name__")
        last: Any = None
        while True:
            snaps = list((q.start_after(last) if last is not None else q).limit(page_size).stream())
            for snap in snaps:
                yield to_job(snap.to_dict() or {})
            if len(snaps) < page_size:
                return
            last = snaps[-1]


def _is_sentinel(value: Any) -> bool:
    return type(value).__module__.startswith("google.cloud.firestore_v1.transforms")
