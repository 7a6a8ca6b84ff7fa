"""How job documents are indexed so one env can write 1,000 jobs a second (docs/capacity.md).

Firestore limits a collection to about 500 writes a second into any index whose values increase
monotonically (a timestamp), and jobs carry many such fields. So:
- every monotonically increasing field (`MONOTONIC_JOB_FIELDS`) is exempt from single-field indexing
  (`infra/firestore.indexes.json`), as no query needs it alone;
- the queries that do range over or order by one (`QUERIES`) use composite indexes whose first field
  is either the owner (one user's jobs: at most `submits_per_minute` a minute, infra/environments.yaml)
  or `ix`, the job's index shard (`index_shard`, written once at create). A query that is not
  per-owner runs once per shard (`SHARDS`) and merges, so each index range takes 1/SHARDS of the
  writes: Google's "sharded timestamps" answer.
The same holds for the documents written as jobs run (`MONOTONIC_FIELDS`: pipelines, concurrency
keys, debounce windows), which carry `ix` too. `tests/infra/test_capacity.py` holds the index file
and the code's queries (the console's too) to these declarations.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from jobrelay.namespace import CONCURRENCY_KEYS, DEBOUNCE_KEYS, JOBS, PIPELINES

SHARD_FIELD = "ix"
SHARDS = 4  # 4 x 500 writes/s per index range: 2,000 a second, twice the design's 1,000 jobs/s

# Fields of a job document whose values grow with time across documents (set to about "now", or
# now + a fixed delay, when written). Each is a hot index range if indexed on its own.
MONOTONIC_JOB_FIELDS = (
    "created_at",
    "run_at",
    "due_at",
    "started_at",
    "attempt_started_at",
    "lease_expires_at",
    "next_attempt_at",
    "finished_at",
    "expire_at",
    "dead_lettered_at",
    "redriven_at",
    "waiting_since",  # a fan-out going `waiting` for its children (issue 16)
    "child_index",  # 0, 1, 2, ... written 500 at a time while a fan-out spawns (ids are hashed, not this)
    "waiting_for.since",  # a job starting to wait behind a concurrency key, a pause or a breaker (issue 17)
    "debounce.first_at",  # a debounced job's window (issue 17)
    "debounce.max_at",
    "error.at",  # the last failure (a failure storm writes it at the full rate)
    "promoted_from.at",
)
# The other collections written as jobs run, by the job or by its step, key or window (docs/capacity.md),
# and their fields that grow with time. Their documents carry `ix` too, from their ids.
MONOTONIC_FIELDS: dict[str, tuple[str, ...]] = {
    JOBS: MONOTONIC_JOB_FIELDS,
    # One per pipeline, written on each step event (claim, waiting, end, retry, cancel).
    PIPELINES: ("created_at", "updated_at", "finished_at", "expire_at", "retried_at", "cancel_requested_at"),
    # One per key in use, written about twice per job holding a slot (take, free or hand over).
    CONCURRENCY_KEYS: ("oldest_since", "updated_at"),
    # One per debounce key, written once per submit on it.
    DEBOUNCE_KEYS: ("first_at", "max_at", "due_at", "updated_at", "expire_at"),
}
# Label filters name any key: `labels.<key>` fields of a query are declared as this one field.
LABELS = "labels.*"


def index_shard(doc_id: str) -> int:
    """A document's index shard, from its id (stable across processes; ids are random or hashed)."""
    return zlib.crc32(doc_id.encode()) % SHARDS


@dataclass(frozen=True)
class Query:
    """One query jobrelay makes: its equality fields, then its range/order fields in order.

    `merged`: an equality-only query served by Firestore merging the single-field indexes of its
    fields (none exempt), so it needs no composite index (a label filter could not have one: any key).
    """

    name: str
    equality: tuple[str, ...]
    order: tuple[tuple[str, str], ...]  # (field, "ASCENDING" | "DESCENDING")
    merged: bool = False
    collection: str = JOBS

    @property
    def per_shard(self) -> bool:
        return SHARD_FIELD in self.equality


ASC, DESC = "ASCENDING", "DESCENDING"
_NEWEST_FIRST = (("created_at", DESC), ("id", DESC))
_OLDEST_FIRST = (("created_at", ASC),)


def _lists() -> tuple[Query, ...]:
    """`GET /jobs` and the console's job list, newest first: per owner (a user's own, or an operator's
    owner filter), else per shard, merged (an operator's list of everyone's)."""
    out = []
    for first in ("owner", SHARD_FIELD):
        for extra in ((), ("status",), ("type",), ("status", "type")):
            out.append(Query(f"list by {first}{''.join(' + ' + e for e in extra)}", (first, *extra), _NEWEST_FIRST))
    return tuple(out)


def _bulk_cancels() -> tuple[Query, ...]:
    """A bulk cancel's filter (jobrelay.bulk): status always, type, owner and labels if given.

    Equalities alone are merged single-field indexes; `created_before` ranges over created_at, so it
    is served per owner, or per shard for an operator's filter without one (never by labels).
    """
    out = []
    for extra in ((), ("type",), ("owner",), ("type", "owner")):
        for labels in ((), (LABELS,)):
            eq = ("status", *extra, *labels)
            out.append(Query(f"bulk cancel by {' + '.join(eq)}", eq, (), merged=True))
    for first in ("owner", SHARD_FIELD):
        for extra in ((), ("type",)):
            eq = (first, *extra, "status")
            out.append(Query(f"bulk cancel created before, by {' + '.join(eq)}", eq, _OLDEST_FIRST))
    return tuple(out)


QUERIES: tuple[Query, ...] = (
    *_lists(),
    # The maintenance pass (jobrelay.maintenance): overdue leases, deliveries, retries, dead letters,
    # fan-outs waiting long for their children (their fan-in is checked again).
    Query("expired leases", (SHARD_FIELD, "status"), (("lease_expires_at", ASC),)),
    Query("overdue queued", (SHARD_FIELD, "status"), (("due_at", ASC),)),
    Query("overdue retries", (SHARD_FIELD, "status"), (("next_attempt_at", ASC),)),
    Query("unpublished failures", (SHARD_FIELD, "status"), (("finished_at", ASC),)),
    Query("waiting fan-outs", (SHARD_FIELD, "status"), (("waiting_since", ASC),)),
    # The retention clean-up (jobrelay.maintenance.cleanup; Firestore TTL does it in the cloud too).
    Query("expired jobs", (SHARD_FIELD, "status"), (("expire_at", ASC),)),
    # Stats (jobrelay.stats): counts by status and class, the recent window, the oldest waiting job;
    # per type (GET .../types): counts by status and the oldest queued one.
    Query("counts by status and class", ("status", "class"), ()),
    Query("recent finished", (SHARD_FIELD, "status"), (("finished_at", ASC),)),
    Query("recent run times", (SHARD_FIELD, "status"), (("finished_at", ASC), ("duration_seconds", ASC))),
    Query("oldest queued", (SHARD_FIELD, "status"), _OLDEST_FIRST),
    Query("counts by type and status", ("type", "status"), ()),
    Query("oldest queued per type", (SHARD_FIELD, "type", "status"), _OLDEST_FIRST),
    # Quotas (jobrelay.quotas via Deployment.quotas): a user's waiting jobs.
    Query("waiting per owner", ("owner", "status"), ()),
    # Fan-in (jobrelay.fanin): a fan-out's children, each parent its own range (random parent ids,
    # hashed child ids): whether one has not ended, how many succeeded, the ones to cancel or redrive.
    Query("children by status", ("parent_id", "status"), ()),
    Query("children", ("parent_id",), (), merged=True),
    # Flow control (jobrelay.slots, breakers, bulk, maintenance): the jobs waiting behind a key or a
    # type, oldest first. Nothing bounds how fast jobs start to wait behind one (a paused type may be
    # the env's whole traffic), so per shard, merged; how many wait is a count on the key alone.
    Query("waiting behind a key or type", (SHARD_FIELD, "waiting_for.on"), _OLDEST_FIRST),
    Query("how many wait behind a type", ("waiting_for.on",), (), merged=True),
    *_bulk_cancels(),
    # The console's pool page: the pool's running jobs (a few: the pool's slots).
    Query("running on the pool", ("route", "status"), (), merged=True),
    # Pipelines (jobrelay.pipelines, pipeline_doc, the console): lists newest first per owner or per
    # shard, the maintenance pass's running pipelines not written for a while, the clean-up.
    *(
        Query(
            f"pipelines by {first}{' + status' if status else ''}",
            (first, *status),
            _NEWEST_FIRST,
            collection=PIPELINES,
        )
        for first in ("owner", SHARD_FIELD)
        for status in ((), ("status",))
    ),
    Query("stale pipelines", (SHARD_FIELD, "status"), (("updated_at", ASC),), collection=PIPELINES),
    Query("ended pipelines", (SHARD_FIELD,), (("expire_at", ASC),), collection=PIPELINES),
    # The maintenance pass's slots held long (jobrelay.slots.heal), the clean-up of closed windows.
    Query("keys held long", (SHARD_FIELD,), (("oldest_since", ASC),), collection=CONCURRENCY_KEYS),
    Query("closed debounce windows", (SHARD_FIELD,), (("expire_at", ASC),), collection=DEBOUNCE_KEYS),
)
