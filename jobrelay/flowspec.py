"""What a spec asks of flow control, checked at submit with the rest of the spec (jobrelay.service).

- `concurrency`: the spec's own key and limit, or the key its job type makes from the payload
  (`job_type(..., concurrency=("tenant:{tenant_id}", 2))`); a spec may not set one for a type that
  declares its own (422), so a caller cannot escape the type's limit.
- `debounce`: its window decides when the job runs, so it goes without run_at, delay_seconds,
  idempotency_key and depends_on, and only in single submits (jobrelay.debounce collapses them).
Both become fields of the job document (models.ConcurrencyRef, models.DebounceRef); every check
happens before anything is written.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from jobrelay import slots
from jobrelay.errors import Unprocessable
from jobrelay.models import CONTROL_CHARS, MAX_FLOW_KEY, Concurrency, JobSpec
from jobrelay.registry import JobType, template_fields

NOT_WITH_DEBOUNCE = ("run_at", "delay_seconds", "idempotency_key", "depends_on")


def _refuse(field: str, problem: str, message: str) -> Unprocessable:
    return Unprocessable(message, [{"field": field, "problem": problem}])


def concurrency_of(spec: JobSpec, jt: JobType, payload: dict[str, Any], prefix: str) -> Concurrency | None:
    """The job's concurrency key and limit: its type's (made from the payload) or its spec's."""
    if jt.concurrency is None:
        return spec.concurrency
    if spec.concurrency is not None:
        raise _refuse(
            f"{prefix}concurrency",
            "set by the job type",
            f"concurrency: job type {jt.name!r} sets its own concurrency key ({jt.concurrency[0]!r}, limit "
            f"{jt.concurrency[1]}); leave concurrency out",
        )
    template, limit = jt.concurrency
    values: dict[str, str] = {}
    for name in template_fields(template, jt.payload):
        value = payload.get(name)
        if value is None or isinstance(value, dict | list):
            raise _refuse(
                f"{prefix}payload.{name}",
                "needed for the concurrency key",
                f"payload.{name}: job type {jt.name!r} makes its concurrency key {template!r} from it; give a "
                "string or number",
            )
        values[name] = str(value)
    key = template.format(**values)
    if not key.strip() or len(key) > MAX_FLOW_KEY or CONTROL_CHARS.search(key):
        raise _refuse(
            f"{prefix}payload",
            "makes an invalid concurrency key",
            f"payload: the concurrency key {key[:60]!r} made from {template!r} must be 1-{MAX_FLOW_KEY} characters "
            "with no control characters",
        )
    return Concurrency(key=key, limit=limit)


def debounce_id(env: str, owner: str, job_type: str, key: str) -> str:
    """A debounce key's document: one per env, owner, type and key (another user's submits never collapse in)."""
    return hashlib.sha256(f"{env}\0{owner}\0{job_type}\0{key}".encode()).hexdigest()[:32]


def apply(
    doc: dict[str, Any],
    spec: JobSpec,
    jt: JobType,
    *,
    env: str,
    prefix: str,
    at: datetime,
    batch: bool = False,
) -> datetime | None:
    """Add the spec's flow-control fields to `doc` (refusing what does not go together); returns the job's
    due time when debounce sets it."""
    concurrency = concurrency_of(spec, jt, doc["payload"], prefix)
    if concurrency is not None:
        doc["concurrency"] = slots.ref(env, concurrency)
        doc["holds_slot"] = False
    if spec.debounce is None:
        return None
    if batch:
        raise _refuse(
            f"{prefix}debounce",
            "not in a batch",
            f"{prefix}debounce: debounced jobs are submitted one at a time (POST /v1/envs/{env}/jobs)",
        )
    for name in NOT_WITH_DEBOUNCE:
        if getattr(spec, name):
            raise _refuse(
                f"{prefix}debounce",
                f"not with {name}",
                f"debounce decides when the job runs and which submit it is: leave out {name}",
            )
    d = spec.debounce
    due = at + timedelta(seconds=d.seconds)
    doc["debounce"] = {
        "key": d.key,
        "seconds": d.seconds,
        "id": debounce_id(env, doc["owner"], doc["type"], d.key),
        "first_at": at,
        "max_at": at + timedelta(seconds=d.longest),
        "submits": 1,
    }
    doc["run_at"] = doc["due_at"] = due
    return due
