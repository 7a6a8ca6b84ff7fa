"""Promoting a pipeline dev -> stg -> prod (jobrelay.promotion's three steps, docs/adr/0019).

What a pipeline promotes is what its steps are: each step's job spec as a job's promotion takes it
(`promotion.spec_of_job`: type, payload, class, labels, timeout, attempts) with its `after` and
`allow_failed_children`, under the pipeline's name and labels, read from the source env's step jobs.
The target env submits it as a new pipeline of the operator there (checked as their own submit is,
all steps or nothing), carrying `promoted_from`; its id derives from the source and the spec, so a
repeat answers the first pipeline. The source records `promoted_to` on `pipelines/{id}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.cloud import firestore

from jobrelay import pipeline_doc
from jobrelay.auth import Caller
from jobrelay.errors import NotFound, Unprocessable
from jobrelay.models import Job
from jobrelay.pipeline_doc import PIPELINES
from jobrelay.pipelines import STEP_ONLY, PipelineService
from jobrelay.promotion import MAX_LINKS, SPEC_FIELDS, spec_of_job

PIPELINE_FIELDS = ("name", "labels", "steps")
STEP_FIELDS = (*SPEC_FIELDS, *STEP_ONLY)


def spec_of_pipeline(data: Mapping[str, Any], jobs: Mapping[str, Job]) -> dict[str, Any]:
    """A stored pipeline as the body of a submit: its steps' specs in order, each with its `after`."""
    steps: dict[str, Any] = {}
    for name in data["order"]:
        entry = data["steps"][name]
        job = jobs[entry["job_id"]]
        step = spec_of_job(job)
        step["after"] = list(entry.get("after") or [])
        if job.allow_failed_children:
            step["allow_failed_children"] = job.allow_failed_children
        steps[name] = step
    return {"name": data["name"], "labels": dict(data.get("labels") or {}), "steps": steps}


def check_spec(spec: Mapping[str, Any]) -> None:
    """A promoted pipeline carries what its steps are, not when they ran or under which key (422)."""
    # Names come from the caller: each is cut short before it is echoed in the answer.
    extra = [f"spec.{str(k)[:60]}" for k in sorted(set(spec) - set(PIPELINE_FIELDS))]
    steps = spec.get("steps")
    if isinstance(steps, Mapping):
        for name, step in steps.items():
            if isinstance(step, Mapping):
                extra += [f"spec.steps.{str(name)[:40]}.{str(k)[:60]}" for k in sorted(set(step) - set(STEP_FIELDS))]
    if extra:
        raise Unprocessable(
            f"{extra[0]}: a promoted pipeline holds only {', '.join(PIPELINE_FIELDS)}, and each step only "
            f"{', '.join(STEP_FIELDS)} (what its steps are, not when they ran in their own env)",
            [{"field": f, "problem": "not promotable"} for f in extra[:20]],
        )


class PipelinePromoter:
    """`promotion.PipelinePromotions` on the pipelines of the envs this deployment serves."""

    def __init__(self, pipelines: PipelineService) -> None:
        self.pipelines = pipelines

    def source(self, env: str, caller: Caller, pipeline_id: str) -> tuple[dict[str, Any], list[Any]]:
        data = self.pipelines.get(env, caller, pipeline_id)  # 404 for an id that is not a pipeline of env
        ids = [s["job_id"] for s in data["steps"].values()]
        jobs = self.pipelines.jobs.store(env).get_many(ids)
        gone = sorted(n for n, s in data["steps"].items() if s["job_id"] not in jobs)
        if gone:
            raise NotFound(
                f"pipeline {pipeline_id}: the jobs of steps {', '.join(gone)} are gone (deleted after the env's "
                "retention), so its spec cannot be read; submit it to the next env instead",
                {"pipeline_id": pipeline_id, "steps": gone},
            )
        links = [pipeline_doc.public_link(x) for x in data.get("promoted_to") or []]
        return spec_of_pipeline(data, jobs), links

    @staticmethod
    def schedule_spec(name: str, pipeline: Mapping[str, Any]) -> dict[str, Any]:
        steps = {
            step: {k: v for k, v in body.items() if k in STEP_FIELDS} if isinstance(body, Mapping) else body
            for step, body in (pipeline.get("steps") or {}).items()
        }
        labels = {**(pipeline.get("labels") or {}), "promoted_schedule": name}
        return {"name": name, "labels": labels, "steps": steps}

    def create(
        self,
        env: str,
        caller: Caller,
        spec: dict[str, Any],
        promoted_from: dict[str, Any],
        pipeline_id: str,
        trace_id: str | None,
    ) -> tuple[dict[str, Any], bool]:
        check_spec(spec)
        store = self.pipelines.jobs.store(env)
        existing = pipeline_doc.get(store.client, pipeline_id)
        origin = (existing or {}).get("promoted_from") or {}
        same = [origin.get(k) for k in ("env", "kind", "id")] == [promoted_from[k] for k in ("env", "kind", "id")]
        if existing is not None and same and existing.get("owner") != caller.uid:
            # Promoted before by another operator: the id is the source's and the spec's, so this is
            # that promotion again (a repeat by the same operator goes through the submit's own check).
            return pipeline_doc.public(existing), False
        labels = spec.get("labels", {})
        # Labels that are not a map are left for the pipeline's own validation to refuse.
        body = spec
        if isinstance(labels, dict):
            body = {**spec, "labels": {**labels, "promoted_from": promoted_from["env"]}}
        doc, created = self.pipelines.submit(
            env, caller, body, trace_id=trace_id, pipeline_id=pipeline_id, extra={"promoted_from": promoted_from}
        )
        return pipeline_doc.public(doc), created

    def record(self, env: str, caller: Caller, pipeline_id: str, link: dict[str, Any]) -> list[dict[str, Any]]:
        self.pipelines.get(env, caller, pipeline_id)  # 404 for an id that is not a pipeline of env
        client = self.pipelines.jobs.store(env).client
        ref = client.collection(PIPELINES).document(pipeline_id)

        @firestore.transactional
        def txn(transaction: firestore.Transaction) -> list[Any]:
            data = ref.get(transaction=transaction).to_dict() or {}
            links = list(data.get("promoted_to") or [])
            if not any(old.get("env") == link["env"] and old.get("id") == link["id"] for old in links):
                links = [*links[-(MAX_LINKS - 1) :], link]
                transaction.update(ref, {"promoted_to": links})
            return links

        return [pipeline_doc.public_link(x) for x in txn(client.transaction())]
