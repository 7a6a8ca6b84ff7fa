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
`tests/infra/test_capacity.py` holds the index file and the code's queries to these declarations.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

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
)


def index_shard(job_id: str) -> int:
    """The job's index shard, from its id (stable across processes; ids are random or hashed)."""
    return zlib.crc32(job_id.encode()) % SHARDS


@dataclass(frozen=True)
class JobQuery:
    """One query jobrelay makes on `jobs`: its equality fields, then its range/order fields in order."""

    name: str
    equality: tuple[str, ...]
    order: tuple[tuple[str, str], ...]  # (field, "ASCENDING" | "DESCENDING")

    @property
    def per_shard(self) -> bool:
        return SHARD_FIELD in self.equality


ASC, DESC = "ASCENDING", "DESCENDING"
_NEWEST_FIRST = (("created_at", DESC), ("id", DESC))


def _lists() -> tuple[JobQuery, ...]:
    """`GET /jobs` newest first: per owner for users (their own jobs), per shard for admins."""
    out = []
    for first in ("owner", SHARD_FIELD):
        for extra in ((), ("status",), ("type",), ("status", "type")):
            out.append(JobQuery(f"list by {first}{''.join(' + ' + e for e in extra)}", (first, *extra), _NEWEST_FIRST))
    return tuple(out)


QUERIES: tuple[JobQuery, ...] = (
    *_lists(),
    # The maintenance pass (jobrelay.maintenance): overdue leases, deliveries, retries, dead letters.
    JobQuery("expired leases", (SHARD_FIELD, "status"), (("lease_expires_at", ASC),)),
    JobQuery("overdue queued", (SHARD_FIELD, "status"), (("due_at", ASC),)),
    JobQuery("overdue retries", (SHARD_FIELD, "status"), (("next_attempt_at", ASC),)),
    JobQuery("unpublished failures", (SHARD_FIELD, "status"), (("finished_at", ASC),)),
    # The retention clean-up (jobrelay.maintenance.cleanup; Firestore TTL does it in the cloud too).
    JobQuery("expired jobs", (SHARD_FIELD, "status"), (("expire_at", ASC),)),
    # Stats (jobrelay.stats): counts by status and class, the recent window, the oldest waiting job.
    JobQuery("counts by status and class", ("status", "class"), ()),
    JobQuery("recent finished", (SHARD_FIELD, "status"), (("finished_at", ASC),)),
    JobQuery("recent run times", (SHARD_FIELD, "status"), (("finished_at", ASC), ("duration_seconds", ASC))),
    JobQuery("oldest queued", (SHARD_FIELD, "status"), (("created_at", ASC),)),
    # Quotas (jobrelay.quotas via Deployment.quotas): a user's waiting jobs.
    JobQuery("waiting per owner", ("owner", "status"), ()),
)
