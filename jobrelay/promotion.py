"""Promotion: a job's, a schedule's or a pipeline's spec goes from one env to the next, dev -> stg -> prod.

Each env's API writes only its own env, so a promotion crosses in the caller, an operator holding
credentials of both envs (`jobrelay promote`, the console), in three calls (docs/adr/0019):

1. source env, `GET .../promotions/{kind}/{id}?to=DST`: the spec to promote (nothing written);
2. target env, `POST .../promotions` `{"from": {"env", "kind", "id"}, "spec"}`: a new job, owned by the
   operator there, carrying `promoted_from`; its id derives from the source and the spec, so a
   repeated promotion answers the first job (200) instead of running it twice;
3. source env, `POST .../promotions/{kind}/{id}:record` `{"to": {"env", "id"}}`: `promoted_to` on the
   source (the job document, or `schedules/{name}`).

Both ends check the direction (the next env only; never skipping one, never backwards) and that the
caller is an operator of their env; a refusal at any step leaves every env as it was. A pipeline's
steps go as one new pipeline, through `PipelinePromotions` (jobrelay.pipeline_promotion).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobrelay.errors import NotFound, Unprocessable
from jobrelay.models import JOB_ID_PATTERN, JOB_ID_RULE, Job, is_job_id, now
from jobrelay.namespace import SCHEDULES
from jobrelay.validation import validation_details

if TYPE_CHECKING:
    from jobrelay.auth import Caller
    from jobrelay.service import JobService
    from jobrelay.settings import Infra

# The one order envs are promoted in (the team's environment strategy, shared/seeds).
ORDER = ("dev", "stg", "prod")
KINDS = ("job", "schedule", "pipeline")
MAX_LINKS = 20  # promoted_to entries kept on one source (each target env holds one job per spec)
SOURCE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
# What a promoted spec may carry: what the job is, not when or after what it runs in the source env.
SPEC_FIELDS = ("type", "payload", "class", "labels", "timeout_seconds", "max_attempts")


def next_env(env: str) -> str | None:
    """The env `env` promotes to (None for the last)."""
    i = ORDER.index(env) if env in ORDER else -1
    return ORDER[i + 1] if 0 <= i < len(ORDER) - 1 else None


def check_direction(source: str, target: str) -> None:
    """Refuse anything but the next env: `to` must follow `source` in ORDER."""
    chain = " -> ".join(ORDER)
    detail = [{"field": "to", "problem": "not the next env", "from": source, "to": target}]
    if source not in ORDER or target not in ORDER:
        unknown = source if source not in ORDER else target
        raise Unprocessable(f"unknown env {unknown!r}; envs are promoted {chain}", detail)
    step = ORDER.index(target) - ORDER.index(source)
    if step == 1:
        return
    if step == 0:
        raise Unprocessable(f"{source} -> {target}: a promotion goes to another env ({chain})", detail)
    if step < 0:
        raise Unprocessable(f"{source} -> {target} goes backwards: envs are promoted {chain}", detail)
    via = next_env(source)
    raise Unprocessable(
        f"{source} -> {target} skips {via}: promote to {via} first, then promote that {via} job to {target} "
        f"(envs are promoted {chain}, one step at a time)",
        detail,
    )


class Kind(StrEnum):
    JOB = "job"
    SCHEDULE = "schedule"
    PIPELINE = "pipeline"


class Recorded(StrEnum):
    RECORDED = "recorded"
    ALREADY = "already"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


EnvName = Literal["dev", "stg", "prod"]
SourceId = Annotated[str, Field(pattern=SOURCE_ID)]
TargetId = Annotated[str, Field(pattern=JOB_ID_PATTERN)]


class Source(_Strict):
    env: EnvName
    kind: Kind
    id: SourceId


class PromotionRequest(_Strict):
    """Step 2, to the target env: where the spec comes from, and the spec."""

    source: Source = Field(alias="from")
    spec: dict[str, Any]


class Target(_Strict):
    env: EnvName
    id: TargetId


class PromotionRecord(_Strict):
    """Step 3, to the source env: what the promotion made in the target env."""

    to: Target


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], raw: Any, what: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = validation_details(exc)
        raise Unprocessable(f"invalid {what}: {details[0]['field']}: {details[0]['problem']}", details) from exc


def spec_of_job(job: Job) -> dict[str, Any]:
    """What a job runs, as a spec; its `schedule` label stays behind (the target's cron would take it for its own)."""
    labels = {k: v for k, v in job.labels.items() if k != "schedule"}
    return {
        "type": job.type,
        "payload": job.payload,
        "class": job.job_class,
        "labels": labels,
        "timeout_seconds": job.timeout_seconds,
        "max_attempts": job.max_attempts,
    }


def promoted_job_id(source: Source, spec: Mapping[str, Any]) -> str:
    """The target job's id: the same source and spec always give the same job."""
    key = json.dumps([source.env, source.kind.value, source.id, spec], sort_keys=True, default=str)
    return "p" + hashlib.sha256(key.encode()).hexdigest()[:23]


class PipelinePromotions(Protocol):
    """The three steps for a pipeline (jobrelay.pipeline_promotion.PipelinePromoter)."""

    def source(self, env: str, caller: Caller, pipeline_id: str) -> tuple[dict[str, Any], list[Any]]:
        """(the pipeline's spec, its promotions made before)."""
        ...

    def create(
        self,
        env: str,
        caller: Caller,
        spec: dict[str, Any],
        promoted_from: dict[str, Any],
        pipeline_id: str,
        trace_id: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """The promoted pipeline (as the API answers it), and whether it is new."""
        ...

    def record(self, env: str, caller: Caller, pipeline_id: str, link: dict[str, Any]) -> list[dict[str, Any]]: ...

    def schedule_spec(self, name: str, pipeline: Mapping[str, Any]) -> dict[str, Any]:
        """What a schedule that starts a pipeline promotes: that pipeline, named after the schedule."""
        ...


class Promotions:
    """The three steps of a promotion, each on the env this deployment serves."""

    def __init__(self, infra: Infra, service: JobService, pipelines: PipelinePromotions) -> None:
        self.infra = infra
        self.service = service
        self.pipelines = pipelines

    def _kind(self, kind: str) -> Kind:
        if kind not in KINDS:
            raise NotFound(f"unknown kind {kind[:40]!r}: one of {', '.join(KINDS)}", {"kind": kind[:40]})
        return Kind(kind)

    def _schedule(self, env: str, name: str) -> Any:
        s = self.infra.schedules.get(name)
        if s is None or env not in s.envs:
            raise NotFound(f"no schedule {name[:100]!r} runs in env {env}", {"schedule": name[:100]})
        if s.builtin:
            raise Unprocessable(
                f"schedule {name} is jobrelay's own housekeeping, which every env runs already",
                [{"field": "id", "problem": "built-in schedule"}],
            )
        return s

    def _job(self, env: str, caller: Caller, job_id: str) -> Job:
        return self.service.get(env, caller, job_id)  # 404 for an id that is not a job of env

    # -- step 1: the source env says what it would promote ----------------------------------------

    def source(self, env: str, caller: Caller, kind: str, ident: str, to: str | None) -> dict[str, Any]:
        self.service.env(env)
        k = self._kind(kind)
        if not to:
            raise Unprocessable("say where to promote to: ?to=ENV", [{"field": "to", "problem": "missing"}])
        check_direction(env, to)
        links: list[Any]
        if k == Kind.JOB:
            job = self._job(env, caller, ident)
            spec, links = spec_of_job(job), list(job.promoted_to)
        elif k == Kind.SCHEDULE:
            s = self._schedule(env, ident)
            if s.pipeline is not None:  # a schedule that starts a pipeline promotes the pipeline
                spec = self.pipelines.schedule_spec(s.name, s.pipeline)
            else:
                spec = {"type": s.type, "payload": s.payload, "labels": {"promoted_schedule": s.name}}
                if s.job_class:
                    spec["class"] = s.job_class
            state = self.service.store(env).client.collection(SCHEDULES).document(s.name).get().to_dict() or {}
            links = list(state.get("promoted_to") or [])
        else:
            spec, links = self.pipelines.source(env, caller, ident)
        return {"from": {"env": env, "kind": k.value, "id": ident}, "to": to, "spec": spec, "promoted_to": links}

    # -- step 2: the target env runs it -------------------------------------------------------------

    def create(self, env: str, caller: Caller, raw: Any, trace_id: str | None) -> tuple[dict[str, Any], bool]:
        """The promoted job (or pipeline) in `env`, and whether it is new."""
        self.service.env(env)
        req = _parse(PromotionRequest, raw, "promotion")
        check_direction(req.source.env, env)
        # A pipeline's spec (its own, or a pipeline schedule's) is checked by the pipeline promoter.
        as_pipeline = req.source.kind == Kind.PIPELINE or (req.source.kind == Kind.SCHEDULE and "steps" in req.spec)
        extra = sorted(set(req.spec) - set(SPEC_FIELDS))
        if extra and not as_pipeline:
            raise Unprocessable(
                f"spec.{extra[0]}: a promoted spec holds only {', '.join(SPEC_FIELDS)} (what the job is, "
                "not when or after what it ran in its own env)",
                [{"field": f"spec.{f}", "problem": "not promotable"} for f in extra],
            )
        new_id = promoted_job_id(req.source, req.spec)
        origin = {
            "env": req.source.env,
            "kind": req.source.kind.value,
            "id": req.source.id,
            "by": caller.uid,
            "at": now(),
        }
        if as_pipeline:
            return self.pipelines.create(env, caller, req.spec, origin, new_id, trace_id)
        spec = {**req.spec, "labels": {**(req.spec.get("labels") or {}), "promoted_from": req.source.env}}
        job, created = self.service.submit(
            env, caller, spec, trace_id=trace_id, job_id=new_id, extra={"promoted_from": origin}
        )
        return job.public(), created

    # -- step 3: the source env records where it went -------------------------------------------------

    def record(self, env: str, caller: Caller, kind: str, ident: str, raw: Any) -> dict[str, Any]:
        self.service.env(env)
        k = self._kind(kind)
        req = _parse(PromotionRecord, raw, "promotion record")
        check_direction(env, req.to.env)
        if not is_job_id(req.to.id):
            raise Unprocessable(f"to.id: {JOB_ID_RULE}", [{"field": "to.id", "problem": "not a job id"}])
        made = "job"
        if k == Kind.PIPELINE or (k == Kind.SCHEDULE and self._schedule(env, ident).pipeline is not None):
            made = "pipeline"
        link = {"env": req.to.env, "kind": made, "id": req.to.id, "by": caller.uid, "at": now()}
        if k == Kind.JOB:
            links = self._record_job(env, caller, ident, link)
        elif k == Kind.SCHEDULE:
            links = self._record_schedule(env, ident, link)
        else:
            links = self.pipelines.record(env, caller, ident, link)
        return {"from": {"env": env, "kind": k.value, "id": ident}, "promoted_to": links}

    def _record_job(self, env: str, caller: Caller, job_id: str, link: dict[str, Any]) -> list[Any]:
        from jobrelay.store import Change

        self._job(env, caller, job_id)

        def decide(job: Job) -> Change[Recorded]:
            if any(_same_link(old, link) for old in job.promoted_to):
                return Change(Recorded.ALREADY, None)
            kept = [old.model_dump() for old in job.promoted_to][-(MAX_LINKS - 1) :]
            return Change(Recorded.RECORDED, {"promoted_to": [*kept, link]})

        written = self.service.store(env).transition(job_id, decide)
        return [old.model_dump(mode="json") for old in written.job.promoted_to]

    def _record_schedule(self, env: str, name: str, link: dict[str, Any]) -> list[Any]:
        from google.cloud import firestore

        s = self._schedule(env, name)
        ref = self.service.store(env).client.collection(SCHEDULES).document(s.name)
        links = list((ref.get().to_dict() or {}).get("promoted_to") or [])
        if not any(_same_link(old, link) for old in links):
            ref.set({"name": s.name, "promoted_to": firestore.ArrayUnion([link])}, merge=True)
            links.append(link)
        return [{**x, "at": _rfc3339(x.get("at"))} for x in links[-MAX_LINKS:]]


def _same_link(old: Any, new: Mapping[str, Any]) -> bool:
    if isinstance(old, Mapping):
        return bool(old.get("env") == new["env"] and old.get("id") == new["id"])
    return bool(getattr(old, "env", None) == new["env"] and getattr(old, "id", None) == new["id"])


def _rfc3339(value: Any) -> Any:
    from jobrelay.models import rfc3339

    return rfc3339(value) if isinstance(value, datetime) else value


def openapi_schemas() -> dict[str, Any]:
    """The promotion routes' bodies and answers, for jobrelay.openapi."""
    link = {
        "type": "object",
        "required": ["env", "id"],
        "properties": {
            "env": {"type": "string"},
            "kind": {"type": "string"},
            "id": {"type": "string"},
            "by": {"type": "string"},
            "at": {"type": ["string", "null"]},
        },
    }
    source = {
        "type": "object",
        "required": ["env", "kind", "id"],
        "properties": {"env": {"type": "string"}, "kind": {"type": "string"}, "id": {"type": "string"}},
    }
    return {
        "PromotionLink": link,
        "PromotionSource": {
            "type": "object",
            "required": ["from", "to", "spec", "promoted_to"],
            "properties": {
                "from": source,
                "to": {"type": "string"},
                "spec": {"type": "object"},
                "promoted_to": {"type": "array", "items": {"$ref": "#/components/schemas/PromotionLink"}},
            },
        },
        "Promoted": {
            "description": "the promoted job, or pipeline (a pipeline or a pipeline schedule promoted)",
            "anyOf": [{"$ref": "#/components/schemas/Job"}, {"$ref": "#/components/schemas/Pipeline"}],
        },
        "PromotionLinks": {
            "type": "object",
            "required": ["from", "promoted_to"],
            "properties": {
                "from": source,
                "promoted_to": {"type": "array", "items": {"$ref": "#/components/schemas/PromotionLink"}},
            },
        },
    }
