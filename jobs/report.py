"""`report`: aggregate a Firestore collection of the env into a report document.

Counts documents (optionally filtered), groups them by a field and sums numeric fields per group,
then writes `{output}/{job_id}` in the same env's Firestore, where the app can read it. It reads the
collection with the server SDK, past security rules, so only callers with the `reporter` role (or
admins) may submit it. `output` must be one of the env's `report_outputs` (infra/environments.yaml,
`reports` by default), and neither it nor the collection read may be one jobrelay owns
(docs/adr/0015-report-outputs-and-owned-collections.md): checked at submit.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from jobrelay import JobContext, job_type, namespace
from jobrelay.infra_files import load_infra
from jobrelay.settings import Infra

FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}(\.[A-Za-z_][A-Za-z0-9_]{0,99}){0,9}\Z")


class Where(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str
    op: Literal["==", "!=", "<", "<=", ">", ">=", "in", "array-contains"]
    value: Any

    @field_validator("field")
    @classmethod
    def _field(cls, v: str) -> str:
        if not FIELD.match(v):
            raise ValueError("a field path is dotted names of letters, digits and _")
        return v


class ReportPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: Annotated[str, Field(min_length=1, max_length=500)]
    group_by: str | None = None
    sum_fields: Annotated[list[str], Field(max_length=10)] = Field(default_factory=list)
    where: Annotated[list[Where], Field(max_length=5)] = Field(default_factory=list)
    output: str = "reports"
    max_groups: Annotated[int, Field(ge=1, le=5000)] = 1000

    @field_validator("collection", "output")
    @classmethod
    def _collection(cls, v: str) -> str:
        problem = namespace.path_problem(v)
        if problem is not None:
            raise ValueError(problem)
        if namespace.owned(v):
            raise ValueError(f"{v!r} is a collection jobrelay owns ({namespace.owned_names()}); reports stay out")
        return v

    @model_validator(mode="after")
    def _output_allowed(self, info: ValidationInfo) -> ReportPayload:
        ctx = info.context or {}
        infra = ctx.get("infra")
        infra = infra if isinstance(infra, Infra) else load_infra()
        envs = [infra.env(ctx["env"])] if ctx.get("env") in infra.environments else list(infra.environments.values())
        for env in envs:
            if self.output not in env.report_outputs:
                raise ValueError(
                    f"output {self.output!r} is not one of env {env.name}'s report_outputs "
                    f"({', '.join(env.report_outputs)}; infra/environments.yaml)"
                )
        return self

    @field_validator("group_by")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        if v is not None and not FIELD.match(v):
            raise ValueError("a field path is dotted names of letters, digits and _")
        return v

    @field_validator("sum_fields")
    @classmethod
    def _sums(cls, v: list[str]) -> list[str]:
        for f in v:
            if not FIELD.match(f):
                raise ValueError(f"{f!r} is not a field path")
        return v


def _dig(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@job_type("report", payload=ReportPayload, job_class="B", roles=("reporter",))
def report(payload: ReportPayload, ctx: JobContext) -> dict[str, Any]:
    """Aggregates a Firestore collection into `{output}/{job_id}`."""
    from google.cloud import firestore

    db = ctx.firestore()
    query: Any = db.collection(payload.collection)
    for w in payload.where:
        query = query.where(filter=firestore.FieldFilter(w.field, w.op, w.value))
    total = int(query.count().get()[0][0].value)
    ctx.progress(0, total, f"reading {total} documents of {payload.collection}")
    fields = [f for f in {payload.group_by, *payload.sum_fields} if f]
    if fields:
        query = query.select(fields)
    groups: dict[str, dict[str, float]] = {}
    rows = 0
    for snap in query.stream():
        data = snap.to_dict() or {}
        key = str(_dig(data, payload.group_by)) if payload.group_by else "all"
        group = groups.get(key)
        if group is None:
            if len(groups) >= payload.max_groups:
                key = "(other)"
                group = groups.setdefault(key, {"count": 0, **{f: 0.0 for f in payload.sum_fields}})
            else:
                group = groups[key] = {"count": 0, **{f: 0.0 for f in payload.sum_fields}}
        group["count"] += 1
        for f in payload.sum_fields:
            value = _dig(data, f)
            if isinstance(value, int | float) and not isinstance(value, bool):
                group[f] += value
        rows += 1
        if rows % 200 == 0:
            ctx.check_cancelled()
            ctx.progress(rows, total, f"read {rows} of {total}")
    ctx.progress(rows, total, "writing the report")
    doc = db.collection(payload.output).document(ctx.job_id)
    doc.set(
        {
            "job_id": ctx.job_id,
            "collection": payload.collection,
            "group_by": payload.group_by,
            "sum_fields": payload.sum_fields,
            "rows": rows,
            "groups": groups,
            "created_at": firestore.SERVER_TIMESTAMP,
        }
    )
    ctx.log(f"report of {rows} documents in {len(groups)} groups written to {doc.path}")
    return {"document": doc.path, "rows": rows, "groups": len(groups)}
