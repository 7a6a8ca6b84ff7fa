"""A pipeline as callers submit it (`PipelineSpec`, with its `PipelineStep`s) and read it (`Pipeline`).

The submit is validated in two layers: the envelope here (name, steps as a mapping, labels, key),
then each step by `jobrelay.pipelines` with the same checks as a single job's spec (`JobService.prepare`)
and the graph by `jobrelay.graph`. `Pipeline` describes `pipelines/{id}` as the API answers it (and
as docs/pipelines.md lists its fields); the OpenAPI document is generated from these models.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobrelay.graph import MAX_AFTER, MAX_STEPS, STEP_NAME_CHARS, PipelineStatus
from jobrelay.models import LABEL_KEY, JobSpec, PromotionLink, Status

MAX_PIPELINE_NAME = 100


class PipelineStep(JobSpec):
    """One step: a job spec (no `depends_on`, no `idempotency_key`: steps wait on steps by name, and the
    pipeline's key covers them), the steps it comes after, and how many spawned children may fail."""

    after: Annotated[list[Annotated[str, Field(pattern=f"^{STEP_NAME_CHARS}$")]], Field(max_length=MAX_AFTER)] = Field(
        default_factory=list
    )
    allow_failed_children: Annotated[int, Field(ge=0, le=10_000)] = 0


class PipelineSpec(BaseModel):
    """What a caller submits: `POST /v1/envs/{env}/pipelines`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=MAX_PIPELINE_NAME)]
    # Step name -> step; each step is checked on its own (jobrelay.pipelines), so errors name it.
    steps: Annotated[dict[str, Any], Field(min_length=1, json_schema_extra={"maxProperties": MAX_STEPS})]
    labels: dict[str, Annotated[str, Field(max_length=256)]] = Field(default_factory=dict)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=256)] | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 16:
            raise ValueError("at most 16 labels")
        for key in v:
            if not LABEL_KEY.match(key):
                raise ValueError(f"label key {key!r} must be lower-case letters, digits, _ or -")
        return v


class StepState(BaseModel):
    """`steps.<name>` of a pipeline: its job and where it is."""

    job_id: str
    status: Status
    type: str
    after: list[str]
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    children: int | None = None  # a fan-out: how many children it spawned
    # ... and, once its fan-in ended it, how many of them succeeded and how many did not.
    children_succeeded: int | None = None
    children_failed: int | None = None


class Pipeline(BaseModel):
    """A pipeline as stored in `pipelines/{id}` and as the API answers it (times in RFC 3339)."""

    id: str
    env: str
    name: str
    status: PipelineStatus
    owner: str
    steps: dict[str, StepState]
    order: list[str]
    counts: dict[str, int]
    labels: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    cancel_requested: bool = False
    cancelled_by: str | None = None
    retry_count: int = 0
    retried_at: datetime | None = None
    schedule: str | None = None
    scheduled_for: str | None = None
    trace_id: str | None = None
    expire_at: datetime | None = None
    # Promotion (docs/adr/0019): the pipeline of the env before this one it came from, and the ones it went to.
    promoted_from: PromotionLink | None = None
    promoted_to: list[PromotionLink] = Field(default_factory=list)


def openapi_schemas(ref: str) -> dict[str, Any]:
    """The OpenAPI components of the pipeline routes (`ref`: the prefix of a component reference)."""
    out: dict[str, Any] = {}
    for name, model, mode in (
        ("PipelineStep", PipelineStep, "validation"),
        ("PipelineSpec", PipelineSpec, "validation"),
        ("Pipeline", Pipeline, "serialization"),
    ):
        schema = model.model_json_schema(by_alias=True, mode=mode, ref_template=ref + "{model}")  # type: ignore[arg-type]
        for def_name, definition in schema.pop("$defs", {}).items():
            out.setdefault(def_name, definition)
        out[name] = schema
    out["PipelineStep"]["description"] = (
        "a job spec (no depends_on, no idempotency_key: a step waits on steps by name, and the pipeline's key "
        "covers it) plus the steps it comes after and how many of its spawned children may fail for good"
    )
    out["PipelineSpec"]["properties"]["steps"] = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": MAX_STEPS,
        "propertyNames": {"pattern": f"^{STEP_NAME_CHARS}$"},
        "additionalProperties": {"$ref": ref + "PipelineStep"},
    }
    out["PipelineListing"] = {
        "type": "object",
        "required": ["pipelines"],
        "properties": {
            "pipelines": {"type": "array", "items": {"$ref": ref + "Pipeline"}},
            "next_page_token": {"type": ["string", "null"]},
        },
    }
    return out


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys it was given more than once (json.loads keeps the last)."""

    twice: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    out = _Object(pairs)
    seen: set[str] = set()
    out.twice = []
    for key, _ in pairs:
        if key in seen:
            out.twice.append(key)
        seen.add(key)
    return out


def steps_named_twice(body: bytes) -> list[str]:
    """Step names a JSON body gives twice in its `steps` object (a parser would keep only the last)."""
    try:
        data = json.loads(body, object_pairs_hook=_object)
    except (ValueError, RecursionError):
        return []  # the body's own parse has refused it already
    steps = data.get("steps") if isinstance(data, dict) else None
    return list(dict.fromkeys(steps.twice)) if isinstance(steps, _Object) else []
