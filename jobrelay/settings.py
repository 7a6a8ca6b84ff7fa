"""Typed settings: the models of the `infra/*.yaml` files the code and Terraform share.

Frozen pydantic models, one per entry: an env, a class and its queue shards, a schedule, an
allow-listed script, and `Infra`, all of them together. `jobrelay.infra_files.load_infra(dir)` reads the
files into them; `jobrelay.process_settings.RuntimeSettings` holds what a process is told by its
environment (`JOBRELAY_*` variables).
"""

from __future__ import annotations

import math
import re
import zlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from jobrelay import namespace
from jobrelay.breaker_settings import Breakers
from jobrelay.errors import Refused

ENV_NAMES = ("prod", "stg", "dev")
DEFAULT_INFRA_DIR = Path(__file__).resolve().parent.parent / "infra"
QUEUE_ID = re.compile(r"[A-Za-z0-9-]{1,100}\Z")
SCHEDULE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}\Z")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Route(StrEnum):
    TASKS = "tasks"
    MUSCLE = "muscle"


class AppCheckMode(StrEnum):
    """Whether an env's submits from apps must carry a Firebase App Check token (jobrelay.appcheck).

    The Firebase console's words: "unenforced" (the default), "required" (enforced). Not off/on,
    which YAML reads as booleans.
    """

    UNENFORCED = "unenforced"
    REQUIRED = "required"


# Cloud Tasks' own ceilings for one queue (RateLimits in the v2 API reference).
QUEUE_MAX_DISPATCHES_PER_SECOND = 500.0
QUEUE_MAX_CONCURRENT_DISPATCHES = 5000
MAX_SHARDS = 16


class RateLimits(_Frozen):
    """A class's rate limits: for the whole class, split evenly over its queue shards."""

    max_dispatches_per_second: Annotated[float, Field(gt=0)]
    max_concurrent_dispatches: Annotated[int, Field(gt=0)]


class RetrySettings(_Frozen):
    """Cloud Tasks RetryConfig, in the API's own terms."""

    max_attempts: Annotated[int, Field(ge=1, le=100)]
    min_backoff_seconds: Annotated[float, Field(ge=0)]
    max_backoff_seconds: Annotated[float, Field(ge=0)]
    max_doublings: Annotated[int, Field(ge=0, le=16)]
    max_retry_duration_seconds: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _backoff_order(self) -> RetrySettings:
        if self.max_backoff_seconds < self.min_backoff_seconds:
            raise ValueError("max_backoff_seconds must be >= min_backoff_seconds")
        return self


class JobClass(_Frozen):
    """A class of jobs: its Cloud Tasks queue(s), route, deadlines, rates and retry policy.

    One queue dispatches at most 500 tasks a second, so a class that needs more is spread over
    `shards` queues: shard 0 is `queue` itself (so adding shards never renames a queue; a deleted
    queue's name stays blocked for 7 days), shard i > 0 is `{queue}-{i}`. Each job always goes to
    the shard its id picks (`queue_for`), so a repeated submit names the same task in the same queue
    and Cloud Tasks' de-duplication still holds. The class's rate limits are the sum over its shards.
    """

    name: str
    description: str = ""
    queue: str
    route: Route
    timeout_seconds: Annotated[int, Field(gt=0, le=7 * 24 * 3600)]
    dispatch_deadline_seconds: Annotated[int, Field(ge=15, le=1800)]
    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = 1  # before rate_limits: its check reads it
    rate_limits: RateLimits
    retry: RetrySettings

    @field_validator("queue")
    @classmethod
    def _queue_id(cls, v: str) -> str:
        if not QUEUE_ID.match(v) or len(v) > 100 - 3:
            raise ValueError("a queue id is 1-97 letters, digits or hyphens (shards add '-N')")
        return v

    @field_validator("rate_limits")
    @classmethod
    def _per_queue_limits(cls, v: RateLimits, info: ValidationInfo) -> RateLimits:
        shards = info.data.get("shards", 1)
        rate = v.max_dispatches_per_second / shards
        if rate > QUEUE_MAX_DISPATCHES_PER_SECOND:
            raise ValueError(
                f"max_dispatches_per_second {v.max_dispatches_per_second:g} over {shards} shard(s) is {rate:g} "
                f"per queue; one Cloud Tasks queue dispatches at most {QUEUE_MAX_DISPATCHES_PER_SECOND:g}/s: "
                "add shards"
            )
        concurrent = math.ceil(v.max_concurrent_dispatches / shards)
        if concurrent > QUEUE_MAX_CONCURRENT_DISPATCHES:
            raise ValueError(
                f"max_concurrent_dispatches is {concurrent} per queue; one queue allows at most "
                f"{QUEUE_MAX_CONCURRENT_DISPATCHES}: add shards"
            )
        return v

    @property
    def queues(self) -> tuple[str, ...]:
        """The class's queue ids, shard 0 first."""
        return tuple(self.queue if i == 0 else f"{self.queue}-{i}" for i in range(self.shards))

    def shard_of(self, job_id: str) -> int:
        """The shard a job's tasks go to: stable across processes and restarts (not Python's hash())."""
        return zlib.crc32(job_id.encode()) % self.shards if self.shards > 1 else 0

    def queue_for(self, job_id: str) -> str:
        return self.queues[self.shard_of(job_id)]

    @property
    def shard_rate_limits(self) -> RateLimits:
        """What each shard's queue is given; the shards add up to the class's limits."""
        return RateLimits(
            max_dispatches_per_second=self.rate_limits.max_dispatches_per_second / self.shards,
            max_concurrent_dispatches=math.ceil(self.rate_limits.max_concurrent_dispatches / self.shards),
        )


class ServiceAccounts(_Frozen):
    """Service account email templates; `{project}` is replaced by the env's project id."""

    api: str
    worker: str
    tasks_invoker: str
    scheduler: str
    pubsub_push: str
    muscle: str
    # The identity of the Eventarc trigger that turns job requests into jobs (its OIDC token calls the API).
    eventarc: str = "jobrelay-eventarc@{project}.iam.gserviceaccount.com"

    def for_project(self, project: str) -> ServiceAccounts:
        return ServiceAccounts(**{k: v.format(project=project) for k, v in self.model_dump().items()})


class Quotas(_Frozen):
    submits_per_minute: Annotated[int, Field(gt=0)]
    max_waiting: Annotated[int, Field(gt=0)]


class Access(_Frozen):
    # A caller needs one of these roles (Firebase custom claim `roles`); () = any signed-in user.
    roles: tuple[str, ...] = ()
    # Service accounts whose Google OIDC tokens act as operators (admin) of the env.
    operators: tuple[str, ...] = ()


class Environment(_Frozen):
    name: str
    project: str
    region: str
    muscle_concurrency: Annotated[int, Field(ge=0)]
    priority: int
    allow_test_jobs: bool = False
    app_origins: tuple[str, ...] = ()
    app_check: AppCheckMode = AppCheckMode.UNENFORCED
    access: Access = Access()
    retention_days: Annotated[int, Field(gt=0)]
    quotas: Quotas
    max_payload_bytes: Annotated[int, Field(gt=0, le=100_000)]
    service_accounts: ServiceAccounts
    # The collections `report` jobs may write their output to (docs/adr/0015); never one jobrelay owns.
    report_outputs: tuple[str, ...] = ("reports",)

    @field_validator("report_outputs")
    @classmethod
    def _report_outputs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for path in v:
            problem = namespace.path_problem(path)
            if problem is not None:
                raise ValueError(f"{path!r}: {problem}")
            if namespace.owned(path):
                raise ValueError(f"{path!r} is a collection jobrelay owns ({namespace.owned_names()})")
        return v

    @property
    def dead_letter_topic(self) -> str:
        return "jobrelay-dead-letters"

    @property
    def muscle_topic(self) -> str:
        return "jobrelay-muscle"

    @property
    def muscle_subscription(self) -> str:
        return "jobrelay-muscle-pool"

    @property
    def muscle_dead_letter_topic(self) -> str:
        return "jobrelay-muscle-dead-letters"


class MuscleSettings(_Frozen):
    project: str
    zone: str
    machine_type: str = "e2-standard-4"
    min_replicas: Annotated[int, Field(ge=0)] = 0
    max_replicas: Annotated[int, Field(ge=1)] = 4
    backlog_per_vm: Annotated[int, Field(gt=0)] = 6
    total_slots: Annotated[int, Field(gt=0)]
    drain_grace_seconds: Annotated[int, Field(ge=0)] = 60


class Schedule(_Frozen):
    name: str
    cron: str
    time_zone: str = "Etc/UTC"
    # A tick starts one job of `type` (with `payload`, `class`), or one pipeline (`pipeline`: the body
    # of POST /v1/envs/{env}/pipelines, docs/pipelines.md): exactly one of the two.
    type: str | None = None
    pipeline: dict[str, Any] | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    job_class: str | None = Field(default=None, alias="class")
    envs: tuple[str, ...] = ENV_NAMES
    enabled: bool = True
    description: str = ""
    builtin: bool = False

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SCHEDULE_NAME.match(v):
            raise ValueError("a schedule name is lower-case letters, digits and hyphens, starting with a letter")
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if not croniter.is_valid(v):
            raise ValueError(f"{v!r} is not a valid cron expression")
        return v

    @model_validator(mode="after")
    def _job_or_pipeline(self) -> Schedule:
        if (self.type is None) == (self.pipeline is None):
            raise ValueError("give a job `type` or a `pipeline`, exactly one")
        if self.pipeline is not None:
            if self.payload or self.job_class:
                raise ValueError("payload and class belong to a job schedule; a pipeline's steps carry their own")
            from jobrelay.graph import order

            steps = self.pipeline.get("steps")
            if not isinstance(steps, dict) or not all(isinstance(b, dict) for b in steps.values()):
                raise ValueError('a pipeline is {"name", "steps": {"<step>": {<job spec>, "after": [...]}}}')
            try:
                order({name: list(body.get("after", [])) for name, body in steps.items()})
            except Refused as exc:
                raise ValueError(f"pipeline: {exc.message}") from exc
        return self

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


class ScriptArg(_Frozen):
    name: str
    # Matched against the whole value (re.fullmatch), so a trailing newline never passes.
    pattern: str = r"[A-Za-z0-9_.:/=-]{1,200}"
    required: bool = False
    description: str = ""


class Script(_Frozen):
    """One allow-listed command. Who may run it is explicit: operators only unless `roles` or `any_user`."""

    name: str
    command: tuple[str, ...]
    args: tuple[ScriptArg, ...] = ()
    timeout_seconds: Annotated[int, Field(gt=0)] = 3600
    # The envs it may run in; named for every script, so none runs in prod by omission.
    envs: tuple[str, ...]
    # Callers with one of these roles may run it (admins always may); none listed: operators only.
    roles: tuple[str, ...] = ()
    # Any signed-in user of the env may run it (harmless diagnostics only).
    any_user: bool = False
    description: str = ""
    cwd: str | None = None
    retryable_exit_codes: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _one_access_rule(self) -> Script:
        if self.any_user and self.roles:
            raise ValueError("give roles or any_user: true, not both")
        return self

    @property
    def operators_only(self) -> bool:
        return not self.roles and not self.any_user


class Infra(_Frozen):
    """Everything under `infra/`, validated."""

    directory: Path
    environments: dict[str, Environment]
    classes: dict[str, JobClass]
    muscle: MuscleSettings
    schedules: dict[str, Schedule]
    scripts: dict[str, Script]
    breakers: Breakers = Field(default_factory=dict)  # infra/breakers.yaml (jobrelay.breaker_settings)

    def env(self, name: str) -> Environment:
        return self.environments[name]

    def job_class(self, name: str) -> JobClass:
        return self.classes[name]
