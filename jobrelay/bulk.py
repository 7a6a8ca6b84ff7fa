"""Bulk operations: cancel the jobs a filter selects; dispatch the jobs that waited behind a pause.

A bulk cancel's filter (type, status, labels, owner, created_before) becomes one Firestore query; an
empty filter is refused, never read as "every job". Its dry run answers the count from an
aggregation query (one read per 1,000 jobs) and the first few ids. The cancel itself is an
operation: `bulk_operations/{id}` holds the filter, who asked, counts and a cursor, and an internal
job (`jobrelay.operation`) pages through the query, cancelling each job with the guarded transition
a single cancel uses (a waiting job at once, a running one asked to stop), deleting its task and
following its end (jobrelay.flow). The cursor is saved after every page, so an attempt that dies
(its lease expires, the job runs again) goes on where it stopped: no request holds 10,000 jobs.
A resume, or a breaker's close, is the same kind of operation over the jobs waiting behind the type.

Equality filters (type, status, owner, labels.*) are served by Firestore merging single-field
indexes; `created_before` is a range and needs a composite index of the equality fields beside it,
so the combinations in infra/firestore.indexes.json are allowed and the rest refused (422) here,
exactly as Cloud Firestore would refuse them (the emulator would not). created_at grows with time,
so such an index is per owner, or (an operator's filter naming no owner) per index shard: the query
then runs once per shard and the pages merge oldest first (docs/capacity.md), as do the jobs
waiting behind a type.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobrelay.errors import Unprocessable
from jobrelay.indexes import SHARD_FIELD, SHARDS
from jobrelay.models import LABEL_KEY, Job, Status, rfc3339
from jobrelay.namespace import JOBS, OPERATIONS
from jobrelay.store import JobStore, to_job
from jobrelay.validation import MAX_OWNER_LENGTH, MAX_TYPE_LENGTH

log = logging.getLogger("jobrelay.bulk")

CANCELLABLE = (Status.QUEUED, Status.RETRYING, Status.RUNNING)
PAGE = 200  # jobs per page of an operation (and per saved cursor)
SAMPLE = 10  # ids a dry run shows
INTERNAL_PREFIX = "jobrelay."
OPERATION_JOB = "jobrelay.operation"  # the internal job type that carries operations out (jobrelay.builtin)


class CancelFilter(BaseModel):
    """Which jobs a bulk cancel selects: every field given must match (an empty filter is refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Annotated[str, Field(min_length=1, max_length=MAX_TYPE_LENGTH)] | None = None
    status: Status | Annotated[list[Status], Field(min_length=1, max_length=3)] | None = None
    labels: dict[str, Annotated[str, Field(max_length=256)]] | None = None
    owner: Annotated[str, Field(min_length=1, max_length=MAX_OWNER_LENGTH)] | None = None
    created_before: datetime | None = None

    @field_validator("status")
    @classmethod
    def _cancellable(cls, v: Status | list[Status] | None) -> Status | list[Status] | None:
        for s in [v] if isinstance(v, Status) else v or []:
            if s not in CANCELLABLE:
                raise ValueError(
                    f"{s.value} jobs cannot be cancelled; one of {', '.join(c.value for c in CANCELLABLE)}"
                )
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and len(v) > 16:
            raise ValueError("at most 16 labels")
        for key in v or {}:
            if not LABEL_KEY.match(key):
                raise ValueError(f"label key {key!r} must be lower-case letters, digits, _ or -")
        return v

    @field_validator("created_before", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, str | datetime):
            raise ValueError("created_before is an RFC 3339 time, e.g. 2026-01-01T00:00:00Z")
        return v

    @field_validator("created_before")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("created_before needs a time zone (RFC 3339, e.g. 2026-01-01T00:00:00Z)")
        return v

    def empty(self) -> bool:
        return not (self.type or self.status or self.labels or self.owner or self.created_before)

    def statuses(self) -> list[str]:
        chosen = [self.status] if isinstance(self.status, Status) else self.status or list(CANCELLABLE)
        return [s.value for s in dict.fromkeys(chosen)]

    def equality_fields(self) -> frozenset[str]:
        fields = {"status"}
        if self.type:
            fields.add("type")
        if self.owner:
            fields.add("owner")
        return frozenset(fields | {f"labels.{k}" for k in self.labels or {}})


class BulkCancel(BaseModel):
    """`POST /v1/envs/{env}/jobs:cancel`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filter: CancelFilter
    dry_run: bool = False


class Operation(BaseModel):
    """`bulk_operations/{id}`: one bulk cancel or release, as it goes."""

    model_config = ConfigDict(frozen=True)

    id: str
    env: str
    kind: Literal["cancel", "release"]
    filter: dict[str, Any]
    by: str
    status: Literal["running", "succeeded", "failed"] = "running"
    created_at: datetime
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    matched: int = 0  # the count when it started
    processed: int = 0
    cancelled: int = 0  # waiting jobs cancelled at once
    stop_requested: int = 0  # running jobs asked to stop
    released: int = 0  # jobs dispatched again (release)
    skipped: int = 0  # ended meanwhile, or jobrelay's own
    cursor: str | None = None  # the last job id processed
    job_id: str | None = None
    error: str | None = None

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for key in ("created_at", "updated_at", "finished_at"):
            data[key] = rfc3339(getattr(self, key))
        return data


@functools.cache
def _indexed_ranges(path: Path) -> frozenset[frozenset[str]]:
    """The equality fields each composite index of `jobs` serves together with a created_at range."""
    data = json.loads(path.read_text())
    out = set()
    for ix in data.get("indexes", []):
        fields = [f["fieldPath"] for f in ix["fields"] if f["fieldPath"] != "__name__"]
        if (
            ix["collectionGroup"] == JOBS
            and fields[-1:] == ["created_at"]
            and ix["fields"][-1].get("order") == "ASCENDING"
        ):
            out.add(frozenset(fields[:-1]))
    return frozenset(out)


def _ranged_fields(f: CancelFilter) -> frozenset[str]:
    """The equality fields of the query beside a created_before range (the shard's when no owner)."""
    return f.equality_fields() | ({SHARD_FIELD} if f.owner is None else set())


def check(f: CancelFilter, indexes: Path, *, prefix: str = "filter.") -> None:
    """Refuse an empty filter, jobrelay's own types, and a created_before no index serves."""
    if f.empty():
        raise Unprocessable(
            "the filter is empty: a bulk cancel never means every job; give type, status, labels, owner or "
            "created_before",
            [{"field": prefix.rstrip("."), "problem": "empty"}],
        )
    if f.type and f.type.startswith(INTERNAL_PREFIX):
        raise Unprocessable(
            f"{prefix}type: jobrelay's own jobs ({f.type}) are not cancelled in bulk",
            [{"field": f"{prefix}type", "problem": "internal type"}],
        )
    check_indexed(f, indexes, prefix=prefix)


def check_indexed(f: CancelFilter, indexes: Path, *, prefix: str = "filter.") -> None:
    """Refuse a created_before whose query (as `queries` makes it) no composite index serves."""
    if f.created_before is None or _ranged_fields(f) in _indexed_ranges(indexes):
        return
    filters = {"status", "type", "owner", SHARD_FIELD}
    served = sorted(
        " + ".join(sorted(s - {SHARD_FIELD}))
        for s in _indexed_ranges(indexes)
        if s <= filters and (SHARD_FIELD in s) != ("owner" in s)
    )
    raise Unprocessable(
        f"{prefix}created_before with {', '.join(sorted(f.equality_fields()))} needs a composite index that "
        f"infra/firestore.indexes.json does not declare; with created_before give one of: {'; '.join(served)}",
        [{"field": f"{prefix}created_before", "problem": "no index for this combination"}],
    )


def queries(client: firestore.Client, f: CancelFilter) -> list[Any]:
    """The Firestore queries of a filter, each in a stable order to page through: one, or one per
    index shard when it ranges over created_at for every owner."""
    q: Any = client.collection(JOBS)
    statuses = f.statuses()
    q = q.where(
        filter=firestore.FieldFilter("status", *(("==", statuses[0]) if len(statuses) == 1 else ("in", statuses)))
    )
    if f.type:
        q = q.where(filter=firestore.FieldFilter("type", "==", f.type))
    if f.owner:
        q = q.where(filter=firestore.FieldFilter("owner", "==", f.owner))
    for key, value in (f.labels or {}).items():
        q = q.where(filter=firestore.FieldFilter(FieldPath("labels", key).to_api_repr(), "==", value))
    if f.created_before is None:
        return [q.order_by("__name__")]
    q = q.where(filter=firestore.FieldFilter("created_at", "<", f.created_before))
    return _oldest_first(q) if f.owner is None else [q.order_by("created_at").order_by("__name__")]


def _oldest_first(q: Any) -> list[Any]:
    """`q` once per index shard, oldest first (created_at, then id: the order `pages` merges in)."""
    return [
        q.where(filter=firestore.FieldFilter(SHARD_FIELD, "==", k)).order_by("created_at").order_by("__name__")
        for k in range(SHARDS)
    ]


def count(client: firestore.Client, f: CancelFilter) -> int:
    return sum(int(q.count().get()[0][0].value) for q in queries(client, f))


def sample(client: firestore.Client, f: CancelFilter) -> list[str]:
    """The first SAMPLE ids, in the order the operation would take them."""
    snaps = [s for q in queries(client, f) for s in q.limit(SAMPLE).stream()]
    return [s.id for s in sorted(snaps, key=_order)[:SAMPLE]]


def waiting_behind(client: firestore.Client, job_type: str) -> list[Any]:
    """The jobs waiting behind a type's pause or breaker: a query per index shard, oldest first."""
    on = firestore.FieldFilter("waiting_for.on", "==", f"type:{job_type}")
    return _oldest_first(client.collection(JOBS).where(filter=on))


def waiting_count(client: firestore.Client, job_type: str) -> int:
    """How many jobs wait behind a type (one aggregation on `waiting_for.on` alone)."""
    on = firestore.FieldFilter("waiting_for.on", "==", f"type:{job_type}")
    q: Any = client.collection(JOBS).where(filter=on)
    return int(q.count().get()[0][0].value)


# -- running an operation --------------------------------------------------------------------------


def failed(client: firestore.Client, op_id: str, error: str) -> None:
    """The operation's job ended without finishing it (its attempts used up, or cancelled)."""
    from google.api_core import exceptions as gexc

    fields = {"status": "failed", "error": error[:500], "finished_at": firestore.SERVER_TIMESTAMP}
    try:
        client.collection(OPERATIONS).document(op_id).update({**fields, "updated_at": firestore.SERVER_TIMESTAMP})
    except gexc.NotFound:
        log.warning("operation %s: its job ended but the operation is gone", op_id)
    else:
        log.error("bulk operation %s failed: %s", op_id, error)


Outcome = Literal["cancelled", "stop_requested", "released", "skipped"]
Act = Callable[[Job, datetime], Outcome]


def _order(snap: Any) -> tuple[Any, ...]:
    """A snapshot's place in the queries' order: (created_at, id) when they order by time, else (id)."""
    data = snap.to_dict() or {}
    return (data["created_at"], snap.id) if "created_at" in data else (snap.id,)


def _merged(streams: Sequence[Iterator[Any]]) -> Iterator[Any]:
    return streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_order)


def _stream(q: Any, after: Any = None) -> Iterator[Any]:
    """Every snapshot of `q` after `after` (a snapshot), read PAGE at a time."""
    last = after
    while True:
        page = list((q.start_after(last) if last is not None else q).limit(PAGE).stream())
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1]


def pages(store: JobStore, qs: Sequence[Any], cursor: str | None) -> Iterator[list[tuple[Job, datetime]]]:
    """Pages of (job, update time) from after `cursor` (a job id), however many there are; several
    queries (one per shard) are merged in their common order, each resuming after the cursor."""
    last: Any = None
    if cursor is not None:
        snap = store.jobs.document(cursor).get()
        last = snap if snap.exists else None  # gone: start over (processed jobs no longer match)
    merged = _merged([_stream(q, last) for q in qs])
    while True:
        page = list(itertools.islice(merged, PAGE))
        yield [(to_job(s.to_dict() or {}), s.update_time) for s in page]
        if len(page) < PAGE:
            return


def run(
    store: JobStore,
    op: Operation,
    qs: Sequence[Any],
    act: Act,
    *,
    progress: Callable[[int, int], None],
    stop: Callable[[], bool],
    workers: int = 8,
) -> Operation:
    """Apply `act` to every job of `qs` from the operation's cursor on, saving counts and cursor per page."""
    ref = store.client.collection(OPERATIONS).document(op.id)
    counts = {k: getattr(op, k) for k in ("processed", "cancelled", "stop_requested", "released", "skipped")}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bulk") as pool:
        for page in pages(store, qs, op.cursor):
            if not page:
                break
            for outcome in pool.map(lambda item: act(*item), page):
                counts[outcome] += 1
                counts["processed"] += 1
            op = op.model_copy(update={**counts, "cursor": page[-1][0].id})
            ref.update({**counts, "cursor": op.cursor, "updated_at": firestore.SERVER_TIMESTAMP})
            progress(counts["processed"], max(op.matched, counts["processed"]))
            if stop():
                return op
    done = {**counts, "status": "succeeded", "finished_at": firestore.SERVER_TIMESTAMP}
    ref.update({**done, "updated_at": firestore.SERVER_TIMESTAMP})
    log.warning("bulk %s %s in %s by %s done: %s", op.kind, op.id, op.env, op.by, counts)
    return op.model_copy(update={**counts, "status": "succeeded"})
