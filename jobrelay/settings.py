"""Typed settings: the `infra/*.yaml` files the code and Terraform share, and the process settings.

`load_infra(dir)` reads every YAML file into frozen pydantic models. A broken file fails fast with a
`SettingsError` naming the file, the key and the reason. `RuntimeSettings` holds what a process is
told by its environment (`JOBRELAY_*` variables): which envs it serves, where the worker lives, and so on.
"""

from __future__ import annotations

import math
import re
import zlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobrelay import namespace
from jobrelay.breaker_settings import Breakers, load_breakers
from jobrelay.errors import Refused, SettingsError

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


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(str(path), "", f"cannot read: {exc.strerror}") from exc
    try:
        # libyaml's loader when PyYAML was built with it: 6x faster, part of every process's cold start.
        data = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader, C or Python
    except yaml.YAMLError as exc:
        raise SettingsError(str(path), "", f"not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(str(path), "", "the top level must be a mapping")
    return data


def _build(path: Path, key_prefix: str, model: type[_Frozen] | type[Schedule], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        key = f"{key_prefix}.{loc}" if loc else key_prefix
        raise SettingsError(str(path), key, err["msg"]) from exc


def _section(path: Path, data: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        if required:
            raise SettingsError(str(path), key, "missing")
        return {}
    if not isinstance(value, dict):
        raise SettingsError(str(path), key, "must be a mapping")
    return value


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_environments(path: Path) -> tuple[dict[str, Environment], MuscleSettings]:
    data = _read_yaml(path)
    defaults = _section(path, data, "defaults", required=False)
    envs_raw = _section(path, data, "environments")
    unknown = sorted(set(envs_raw) - set(ENV_NAMES))
    if unknown:
        raise SettingsError(str(path), f"environments.{unknown[0]}", f"unknown env; expected {ENV_NAMES}")
    envs: dict[str, Environment] = {}
    for name, raw in envs_raw.items():
        if not isinstance(raw, dict):
            raise SettingsError(str(path), f"environments.{name}", "must be a mapping")
        merged = _merge(defaults, raw)
        merged["name"] = name
        env = _build(path, f"environments.{name}", Environment, merged)
        envs[name] = env.model_copy(update={"service_accounts": env.service_accounts.for_project(env.project)})
    projects = [e.project for e in envs.values()]
    if len(set(projects)) != len(projects):
        raise SettingsError(str(path), "environments", "two envs share a project; each env needs its own")
    muscle = _build(path, "muscle", MuscleSettings, _section(path, data, "muscle"))
    return envs, muscle


def load_classes(path: Path) -> dict[str, JobClass]:
    data = _read_yaml(path)
    raw = _section(path, data, "classes")
    classes: dict[str, JobClass] = {}
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise SettingsError(str(path), f"classes.{name}", "must be a mapping")
        classes[name] = _build(path, f"classes.{name}", JobClass, {**body, "name": name})
    if not classes:
        raise SettingsError(str(path), "classes", "at least one class is needed")
    queues = [q for c in classes.values() for q in c.queues]
    if len(set(queues)) != len(queues):
        raise SettingsError(str(path), "classes", "two classes share a queue id (shards count as queues)")
    return classes


def load_schedules(path: Path, envs: dict[str, Environment], classes: dict[str, JobClass]) -> dict[str, Schedule]:
    if not path.exists():
        return {}
    data = _read_yaml(path)
    raw = _section(path, data, "schedules", required=False)
    out: dict[str, Schedule] = {}
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise SettingsError(str(path), f"schedules.{name}", "must be a mapping")
        sched = _build(path, f"schedules.{name}", Schedule, {**body, "name": name})
        for env in sched.envs:
            if env not in envs:
                raise SettingsError(str(path), f"schedules.{name}.envs", f"unknown env {env!r}")
        if sched.job_class is not None and sched.job_class not in classes:
            raise SettingsError(str(path), f"schedules.{name}.class", f"unknown class {sched.job_class!r}")
        out[name] = sched
    return out


def load_scripts(path: Path, envs: dict[str, Environment]) -> dict[str, Script]:
    if not path.exists():
        return {}
    data = _read_yaml(path)
    raw = _section(path, data, "scripts", required=False)
    out: dict[str, Script] = {}
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise SettingsError(str(path), f"scripts.{name}", "must be a mapping")
        script = _build(path, f"scripts.{name}", Script, {**body, "name": name})
        for i, arg in enumerate(script.args):
            try:
                re.compile(arg.pattern)
            except re.error as exc:
                raise SettingsError(str(path), f"scripts.{name}.args.{i}.pattern", str(exc)) from exc
        for env in script.envs:
            if env not in envs:
                raise SettingsError(str(path), f"scripts.{name}.envs", f"unknown env {env!r}")
        out[name] = script
    return out


def load_infra(directory: Path | str | None = None) -> Infra:
    """Read and validate every settings file under `directory` (default: the repo's `infra/`)."""
    d = Path(directory) if directory is not None else DEFAULT_INFRA_DIR
    envs, muscle = load_environments(d / "environments.yaml")
    classes = load_classes(d / "classes.yaml")
    return Infra(
        directory=d,
        environments=envs,
        classes=classes,
        muscle=muscle,
        schedules=load_schedules(d / "schedules.yaml", envs, classes),
        scripts=load_scripts(d / "scripts.yaml", envs),
        breakers=load_breakers(d / "breakers.yaml", list(envs), _read_yaml),
    )


class RuntimeSettings(BaseSettings):
    """What one process is told by its environment (`JOBRELAY_*`)."""

    model_config = SettingsConfigDict(env_prefix="JOBRELAY_", frozen=True, extra="ignore")

    infra_dir: Path = DEFAULT_INFRA_DIR
    envs: str = "prod,stg,dev"
    # Where Cloud Tasks delivers (the worker's base URL) and the audience its OIDC token carries.
    worker_url: str = "http://127.0.0.1:8081"
    worker_audience: str | None = None
    # Per-env worker URLs, for a process serving several envs in the cloud (the Elastic Muscle pool):
    # JSON, e.g. {"prod": "https://jobrelay-worker-123.us-central1.run.app", ...}. Falls back to worker_url.
    worker_urls: dict[str, str] = Field(default_factory=dict)
    # Use each env's own `muscle` service account (impersonated) for that env's clients: the pool's VMs
    # run with an identity that may only impersonate those, so no credential crosses envs.
    impersonate: bool = False
    # Overrides infra's muscle.total_slots on this VM (smaller machines, tests).
    muscle_total_slots: int | None = None
    # Where Pub/Sub pushes dead letters, and the audience of that push's OIDC token.
    deadletter_url: str = "http://127.0.0.1:8082"
    # The public URL of this API (the cron route's OIDC audience).
    api_url: str = "http://127.0.0.1:8080"
    # Where Google-signed OIDC tokens' public keys live; the local stack points this at its emulator.
    oidc_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    # Firebase App Check's public keys (envs with `app_check: required`); tests serve their own.
    app_check_jwks_url: str = "https://firebaseappcheck.googleapis.com/v1/jwks"
    # local | cloud: "local" allows unsigned Firebase emulator tokens; "cloud" refuses to start with them.
    mode: Literal["local", "cloud"] = "cloud"
    # Extra job modules to import (comma separated), besides the built-in `jobs` package.
    job_modules: str = "jobs"
    # Where a job's secrets come from: none | file (local: {secrets_dir}/{env}.json) | secretmanager
    # (secrets labelled jobrelay=true in the env's project) | doppler (DOPPLER_TOKEN_<ENV> service tokens).
    secrets_backend: Literal["none", "file", "secretmanager", "doppler"] = "none"
    secrets_dir: Path | None = None
    # Create a new job's document and its Cloud Task at once instead of one after the other
    # (docs/adr/0012-submit-writes-the-document-then-the-task.md).
    submit_overlap: bool = False
    # Seconds a running job's lease lasts; the worker renews it every third of that.
    lease_seconds: float = 60.0
    # A job request still pending this long after it was written had its event lost: the maintenance
    # pass processes it (jobrelay.intake).
    request_sweep_seconds: float = Field(default=30.0, ge=0)
    # Span export: none (default; trace ids still flow through logs) | console (stderr) | cloud (Cloud Trace).
    trace_export: Literal["none", "console", "cloud"] = "none"
    log_level: str = "INFO"

    @field_validator("envs")
    @classmethod
    def _envs(cls, v: str) -> str:
        names = [n.strip() for n in v.split(",") if n.strip()]
        bad = [n for n in names if n not in ENV_NAMES]
        if bad or not names:
            raise ValueError(f"JOBRELAY_ENVS must list some of {ENV_NAMES}, got {v!r}")
        return ",".join(names)

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(self.envs.split(","))

    def worker_url_for(self, env: str) -> str:
        return self.worker_urls.get(env, self.worker_url)
