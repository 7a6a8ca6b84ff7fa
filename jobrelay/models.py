"""The job as callers submit it (`JobSpec`) and as everyone reads it (`Job`), plus its lifecycle.

Lifecycle (one Firestore document per job)::

    queued -> running -> succeeded
       |         |-> retrying -> running ...      (retryable error, attempts left)
       |         |-> failed -> dead_lettered      (non-retryable, or attempts used up)
       |         |-> cancelled                    (cooperative)
       |         '-> waiting -> succeeded | failed | cancelled   (spawned children: fan-in, docs/pipelines.md)
       '-> cancelled | skipped (a dependency failed)

    skipped -> queued          (a pipeline's retry brings back a step skipped because of a failed one)
    dead_lettered -> retrying  (a redrive), or -> waiting (a fan-out step whose failed children run again)

`ALLOWED` is the transition table every guarded write checks.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Every id that becomes a Firestore document id or a task name: no "/", ".", "..", no reserved `__x__`,
# short enough for a task id. Patterns end in \Z: `$` would also match before a trailing newline.
JOB_ID_CHARS = "[a-z0-9][a-z0-9-]{5,99}"
JOB_ID = re.compile(JOB_ID_CHARS + r"\Z")
JOB_ID_PATTERN = f"^{JOB_ID_CHARS}$"  # the same rule as a JSON Schema pattern (OpenAPI)
JOB_ID_RULE = "a job id is 6-100 lower-case letters, digits and hyphens, starting with a letter or digit"
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}\Z")
MAX_DELAY_SECONDS = 30 * 24 * 3600  # Cloud Tasks accepts schedule times up to 30 days ahead
# Firestore refuses a document whose maps and arrays nest deeper than 20 levels; a payload is one of them.
MAX_PAYLOAD_DEPTH = 20
# Flow control (docs/flow-control.md). A key's holders live in one document, and a freed slot's
# hand-over writes one job per slot in one transaction: 100 keeps both far inside Firestore's limits.
MAX_FLOW_KEY = 200
MAX_CONCURRENCY_LIMIT = 100
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def is_job_id(value: object) -> bool:
    """True when `value` can be a job id (and so a Firestore document id and a task name)."""
    return isinstance(value, str) and JOB_ID.match(value) is not None


def depth_over(value: Any, limit: int) -> bool:
    """True when JSON `value` nests objects and arrays more than `limit` levels (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return False


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    # The handler spawned children and returned; the job waits for them holding no request (fan-in).
    WAITING = "waiting"

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def pending(self) -> bool:
        """Waiting for a delivery to run it (a gate may park it here: jobrelay.gates); not a fan-out's `waiting`."""
        return self in (Status.QUEUED, Status.RETRYING)


FINAL = frozenset({Status.SUCCEEDED, Status.DEAD_LETTERED, Status.CANCELLED, Status.SKIPPED})

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED, Status.SKIPPED, Status.FAILED}),
    Status.RETRYING: frozenset({Status.RUNNING, Status.CANCELLED, Status.SKIPPED, Status.FAILED}),
    Status.RUNNING: frozenset(
        {Status.SUCCEEDED, Status.RETRYING, Status.FAILED, Status.CANCELLED, Status.RUNNING, Status.WAITING}
    ),
    Status.FAILED: frozenset({Status.DEAD_LETTERED}),
    # A redrive puts a dead job back in line as a new attempt of the same job; a fan-out that failed
    # for its children goes back to waiting while its failed children run again.
    Status.DEAD_LETTERED: frozenset({Status.RETRYING, Status.WAITING}),
    Status.SUCCEEDED: frozenset(),
    Status.CANCELLED: frozenset(),
    # A pipeline's retry brings back the steps skipped because of the failed ones.
    Status.SKIPPED: frozenset({Status.QUEUED}),
    # The fan-in ends it; a cancel ends it early (and its unfinished children with it).
    Status.WAITING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}),
}


def can_move(current: Status, wanted: Status) -> bool:
    """True when the lifecycle allows `current -> wanted`."""
    return wanted in ALLOWED[current]


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _flow_key(v: str) -> str:
    if not v.strip():
        raise ValueError("a key needs a character that is not a space")
    if CONTROL_CHARS.search(v):
        raise ValueError("a key may not hold control characters (newlines, tabs, ...)")
    return v


FlowKey = Annotated[str, Field(min_length=1, max_length=MAX_FLOW_KEY)]


class Concurrency(BaseModel):
    """At most `limit` jobs with this `key` run at once in the env; the others wait in order of submission."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: FlowKey
    limit: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY_LIMIT)]

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return _flow_key(v)


class Debounce(BaseModel):
    """Submits with the same key inside the window become one job, run `seconds` after the last one
    (never later than `max_wait` after the first), with the latest payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: FlowKey
    seconds: Annotated[float, Field(gt=0, le=MAX_DELAY_SECONDS)]
    max_wait: Annotated[float, Field(gt=0, le=MAX_DELAY_SECONDS)] | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return _flow_key(v)

    @model_validator(mode="after")
    def _window(self) -> Debounce:
        if self.max_wait is not None and self.max_wait < self.seconds:
            raise ValueError(f"max_wait ({self.max_wait:g}) must be at least seconds ({self.seconds:g})")
        return self

    @property
    def longest(self) -> float:
        """How long after the first submit the job runs at the latest (max_wait; default 10x seconds)."""
        return self.max_wait if self.max_wait is not None else min(10 * self.seconds, MAX_DELAY_SECONDS)


class JobSpec(BaseModel):
    """What a caller submits. Unknown fields are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    type: Annotated[str, Field(min_length=1, max_length=100)]
    payload: dict[str, Any] = Field(default_factory=dict)
    job_class: str | None = Field(default=None, alias="class")
    idempotency_key: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    run_at: datetime | None = None
    delay_seconds: Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS)] | None = None
    depends_on: Annotated[list[str], Field(max_length=50)] = Field(default_factory=list)
    labels: dict[str, Annotated[str, Field(max_length=256)]] = Field(default_factory=dict)
    timeout_seconds: Annotated[int, Field(gt=0, le=7 * 24 * 3600)] | None = None
    max_attempts: Annotated[int, Field(ge=1, le=100)] | None = None
    concurrency: Concurrency | None = None
    debounce: Debounce | None = None

    @field_validator("run_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("run_at needs a time zone (RFC 3339, e.g. 2026-01-01T00:00:00Z)")
        return v

    @field_validator("payload")
    @classmethod
    def _payload_depth(cls, v: dict[str, Any]) -> dict[str, Any]:
        if depth_over(v, MAX_PAYLOAD_DEPTH):
            raise ValueError(
                f"the payload nests objects and arrays more than {MAX_PAYLOAD_DEPTH} levels deep, "
                "more than a Firestore document holds"
            )
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 16:
            raise ValueError("at most 16 labels")
        for key in v:
            if not LABEL_KEY.match(key):
                raise ValueError(f"label key {key!r} must be lower-case letters, digits, _ or -")
        return v

    @field_validator("depends_on")
    @classmethod
    def _deps(cls, v: list[str]) -> list[str]:
        for dep in v:
            if not is_job_id(dep):
                raise ValueError(f"{dep!r} is not a job id: {JOB_ID_RULE}")
        return v

    @model_validator(mode="after")
    def _one_delay(self) -> JobSpec:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        return self

    def due_at(self, at: datetime) -> datetime | None:
        """When the job may first run (None: now)."""
        if self.run_at is not None:
            if self.run_at - at > timedelta(seconds=MAX_DELAY_SECONDS):
                raise ValueError("run_at is more than 30 days ahead")
            return self.run_at if self.run_at > at else None
        if self.delay_seconds:
            return at + timedelta(seconds=self.delay_seconds)
        return None


class Progress(BaseModel):
    model_config = ConfigDict(frozen=True)

    done: float = 0
    total: float | None = None
    message: str | None = None


class ErrorInfo(BaseModel):
    """One failed attempt, as the job document keeps it."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    stack: str = ""
    retryable: bool
    fingerprint: str
    attempt: int = 0
    at: datetime | None = None


class PromotionLink(BaseModel):
    """One end of a promotion (jobrelay.promotion): the env and id of the other side, who, when."""

    model_config = ConfigDict(frozen=True)

    env: str
    kind: str = "job"
    id: str
    by: str | None = None
    at: datetime | None = None


class Authority(BaseModel):
    """The claims a job was submitted with (admin, roles)."""

    model_config = ConfigDict(frozen=True)

    admin: bool = False
    roles: list[str] = Field(default_factory=list)


class ConcurrencyRef(BaseModel):
    """A job's concurrency key as stored: the key, its limit, and its document (`concurrency_keys/{id}`)."""

    model_config = ConfigDict(frozen=True)

    key: str
    limit: int
    id: str


class DebounceRef(BaseModel):
    """A debounced job's window as stored (its document: `debounce_keys/{id}`)."""

    model_config = ConfigDict(frozen=True)

    key: str
    seconds: float
    id: str
    first_at: datetime
    max_at: datetime
    submits: int = 1


class WaitingFor(BaseModel):
    """Why a queued (or retrying) job does not run now; cleared when it is dispatched again.

    kind `concurrency`: its key's slots are all taken (`key`); `paused`: an operator paused its type
    (`reason`, `by`); `breaker`: its type's circuit breaker is open. `on` is what releases it
    (`key:<document id>` or `type:<job type>`), queried to find the jobs waiting behind it.
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    on: str
    since: datetime
    key: str | None = None
    reason: str | None = None
    by: str | None = None


class Job(BaseModel):
    """A job as stored and as the API answers it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str
    env: str
    type: str
    job_class: str = Field(alias="class")
    status: Status
    owner: str
    payload: dict[str, Any] = Field(default_factory=dict)
    attempt: int = 0
    max_attempts: int
    timeout_seconds: int
    idempotency_key: str | None = None
    spec_hash: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    progress: Progress | None = None
    result: Any = None
    result_ref: str | None = None
    error: ErrorInfo | None = None
    errors: list[ErrorInfo] = Field(default_factory=list)
    log_tail: list[str] = Field(default_factory=list)
    created_at: datetime
    run_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_expires_at: datetime | None = None
    worker_id: str | None = None
    cancel_requested: bool = False
    dispatch_count: int = 0
    task_name: str | None = None
    trace_id: str | None = None
    waiting_on: list[str] = Field(default_factory=list)
    dependents: list[str] = Field(default_factory=list)
    next_attempt_at: datetime | None = None
    attempt_started_at: datetime | None = None
    expire_at: datetime | None = None
    skip_reason: str | None = None
    cancelled_by: str | None = None
    dead_lettered_at: datetime | None = None
    redriven_at: datetime | None = None
    redrive_count: int = 0
    route: str = "tasks"
    duration_seconds: float | None = None
    # While queued: when its delivery is due (run_at, or when it became ready); the maintenance pass
    # looks for overdue ones by it. Null while it waits on dependencies, and once Pub/Sub holds its
    # pool message (Pub/Sub redelivers until acknowledged). See docs/adr/0014.
    due_at: datetime | None = None
    # Pool route: the highest dispatch number whose message Pub/Sub accepted (None: none yet).
    published_dispatch: int | None = None
    # Promotion (docs/adr/0019): where this job's spec came from, and the jobs it was promoted to.
    promoted_from: PromotionLink | None = None
    promoted_to: list[PromotionLink] = Field(default_factory=list)
    # The job request (`job_requests/{id}`) this job was made from, if any (jobrelay.intake).
    request_id: str | None = None
    # Who submitted it, with which claims: what its spawned children are checked against (docs/pipelines.md).
    authority: Authority | None = None
    # A pipeline's step: its pipeline, its name, and the job ids of the steps it comes after (by name).
    pipeline_id: str | None = None
    step: str | None = None
    upstream: dict[str, str] = Field(default_factory=dict)
    # A spawned child: the job that spawned it, and its index among that job's children.
    parent_id: str | None = None
    child_index: int | None = None
    # A fan-out (status waiting): how many children it spawned, how many may fail for good, since when.
    spawned: int | None = None
    returned: Any = None  # a fan-out's own handler result, kept while it waits (large ones: result_ref)
    allow_failed_children: int = 0
    waiting_since: datetime | None = None
    # Flow control (docs/flow-control.md): a concurrency key, whether the job holds one of its slots
    # (from its claim, or handed over when a slot freed, until its end), a debounce window, and why
    # it waits without running (null when it does not).
    concurrency: ConcurrencyRef | None = None
    holds_slot: bool = False
    debounce: DebounceRef | None = None
    waiting_for: WaitingFor | None = None

    @property
    def waiting_on_deps(self) -> bool:
        return bool(self.waiting_on)

    def public(self) -> dict[str, Any]:
        """The JSON the API answers: RFC 3339 times, `class` spelled as in specs."""
        data = self.model_dump(by_alias=True, mode="json", exclude={"payload"})
        data["payload"] = self.payload
        for key in (
            "created_at",
            "run_at",
            "started_at",
            "finished_at",
            "lease_expires_at",
            "next_attempt_at",
            "attempt_started_at",
            "expire_at",
            "dead_lettered_at",
            "redriven_at",
            "due_at",
            "waiting_since",
        ):
            data[key] = rfc3339(getattr(self, key))
        return data
