"""The Firestore collections jobrelay owns in each env: no job's input or output may be one of them.

A job that writes where it is told (a report's `output`, say) must never land on jobrelay's own
documents: a report written over `jobs/{id}` broke that job for good (every read and delivery of it
failed). Settings and payloads that name a collection check it here, at start-up or at submit
(docs/adr/0015-report-outputs-and-owned-collections.md). The names live in this small module, with no
Google import, so settings can use them; the store, dead letters and cron take their names from here.
"""

from __future__ import annotations

import re

JOBS = "jobs"
RESULTS = "job_results"
DEAD_LETTERS = "dead_letters"
SCHEDULES = "schedules"
# Job requests apps write in their own transactions (jobrelay.requests, docs/job-requests.md).
REQUESTS = "job_requests"
# Flow control (docs/flow-control.md): a type's pause and circuit breaker, a concurrency key's slots,
# a debounce key's window, a bulk operation's progress.
TYPE_STATES = "type_states"
CONCURRENCY_KEYS = "concurrency_keys"
DEBOUNCE_KEYS = "debounce_keys"
OPERATIONS = "bulk_operations"
FLOW = (TYPE_STATES, CONCURRENCY_KEYS, DEBOUNCE_KEYS, OPERATIONS)
PIPELINES = "pipelines"
# Collections of capabilities that are planned (DESIGN.md, "What comes next"): reserved now, so no
# report written today sits where they will live.
PLANNED = (PIPELINES, "access_log")
OWNED = frozenset({JOBS, RESULTS, DEAD_LETTERS, SCHEDULES, REQUESTS, *PLANNED, *FLOW})
# Any collection whose name starts with this is jobrelay's too (jobrelay_flaky_runs, ...).
OWNED_PREFIX = "jobrelay"


# A collection path as Firestore takes it: collection, or collection/doc/collection...; ids of letters,
# digits, _ and -, none of them the reserved `__name__` form.
COLLECTION_PATH = re.compile(r"[A-Za-z0-9_-]{1,100}(/[A-Za-z0-9_-]{1,100}/[A-Za-z0-9_-]{1,100}){0,3}\Z")
RESERVED_ID = re.compile(r"__.*__\Z")


def path_problem(path: str) -> str | None:
    """Why `path` is not a collection path Firestore accepts, or None."""
    if not COLLECTION_PATH.match(path):
        return "a collection path is name or name/doc/name (up to 4 levels) of letters, digits, _ and -"
    if any(RESERVED_ID.match(part) for part in path.split("/")):
        return "ids of the form __name__ are reserved by Firestore"
    return None


def owned(path: str) -> bool:
    """True when the collection path lies in a collection jobrelay owns (judged by its top-level name)."""
    top = path.strip("/").split("/", 1)[0]
    return top in OWNED or top.lower().startswith(OWNED_PREFIX)


def owned_names() -> str:
    return ", ".join(sorted(OWNED)) + f", {OWNED_PREFIX}*"
