"""What the API does with pipelines, without HTTP: submit, get, list, cancel, retry (docs/pipelines.md).

A pipeline is a graph of steps, each an ordinary job carrying `pipeline_id` and `step`, waiting for
the steps it comes after through `depends_on` (the same mechanism as any job's: `waiting_on`,
`dependents`, released by `jobrelay.flow`), plus one `pipelines/{id}` document that follows them
(`jobrelay.pipeline_doc`). Every check happens before the first write, and the document with every
step's job is written in one transaction, so a refused pipeline writes nothing; an idempotency key
makes the pipeline id, so a repeat returns the first pipeline (and a key reused for another is 409).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import ValidationError

from jobrelay import dependencies, graph, pipeline_doc
from jobrelay.auth import Caller
from jobrelay.errors import Conflict, NotFound, PayloadTooLarge, PermissionDenied, Refused, Unprocessable
from jobrelay.flow import Flow
from jobrelay.graph import PipelineStatus
from jobrelay.indexes import SHARD_FIELD, SHARDS, index_shard
from jobrelay.models import JOB_ID_RULE, Job, Status, is_job_id, now
from jobrelay.pipeline_doc import PIPELINES
from jobrelay.pipeline_models import PipelineSpec
from jobrelay.prepare import Prepared
from jobrelay.service import JobService, _undispatched
from jobrelay.settings import Environment
from jobrelay.store import Fields, _decode_token, _encode_token
from jobrelay.validation import explain, validation_details

log = logging.getLogger("jobrelay.pipelines")

STEP_ONLY = ("after", "allow_failed_children")
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # all steps' payloads together (docs/pipelines.md)
NOT_IN_A_STEP = {
    "depends_on": "a step waits for other steps with `after` (step names), not `depends_on`",
    "idempotency_key": "the pipeline's idempotency_key covers its steps; a step takes none",
}


def step_job_id(pipeline_id: str, step: str) -> str:
    """A step's job id: the pipeline's id and a digest of the step's name (names may hold `_`)."""
    return f"{pipeline_id}-{hashlib.sha256(step.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Schedule:
    """A cron tick that starts a pipeline: its schedule's name and the scheduled minute."""

    name: str
    scheduled_for: str


class PipelineService:
    """Pipelines of the envs the job service serves."""

    def __init__(self, jobs: JobService, flow: Flow) -> None:
        self.jobs = jobs
        self.flow = flow

    # -- submit ---------------------------------------------------------------------------------

    def submit(
        self,
        env_name: str,
        caller: Caller,
        raw: Any,
        *,
        trace_id: str | None = None,
        pipeline_id: str | None = None,
        schedule: Schedule | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Check the whole pipeline, then write it and its steps at once and dispatch the first steps.

        Returns (pipeline document, created); a repeated idempotency key returns the first pipeline.
        `extra`: fields recorded on the pipeline document beside its own (a promotion's `promoted_from`).
        """
        env = self.jobs.env(env_name)
        spec = self._envelope(raw)
        steps: dict[str, Any] = spec.steps
        after = {name: self._after(name, body) for name, body in steps.items()}
        ordered = graph.order(after)
        if pipeline_id is None:
            if spec.idempotency_key is not None:
                key = f"{env.name}\0{caller.uid}\0{spec.idempotency_key}".encode()
                pipeline_id = "p" + hashlib.sha256(key).hexdigest()[:23]
            else:
                pipeline_id = "p" + secrets.token_hex(12)[:23]
        ids = {name: step_job_id(pipeline_id, name) for name in ordered}
        prepared = {
            name: self._step(env, caller, pipeline_id, name, steps[name], ids, after, trace_id) for name in ordered
        }
        size = sum(len(json.dumps(p.doc["payload"], separators=(",", ":")).encode()) for p in prepared.values())
        if size > MAX_PAYLOAD_BYTES:  # all steps go in one commit, which Firestore caps at 10 MiB
            raise PayloadTooLarge(
                f"the steps' payloads are {size} bytes together; a pipeline holds at most {MAX_PAYLOAD_BYTES} "
                "(store large inputs in Cloud Storage or Firestore and pass a reference)",
                {"field": "steps", "bytes": size, "limit": MAX_PAYLOAD_BYTES},
            )
        shape = {n: [p.doc["spec_hash"], after[n], p.doc["allow_failed_children"]] for n, p in prepared.items()}
        spec_hash = hashlib.sha256(json.dumps([spec.name, spec.labels, shape], sort_keys=True).encode()).hexdigest()[
            :32
        ]
        store = self.jobs.stores[env.name]
        existing = pipeline_doc.get(store.client, pipeline_id)
        if existing is not None:
            return self._repeat(env, caller, spec, existing, spec_hash), False
        if schedule is None:
            self.jobs.quotas.check(env.name, caller.uid, env.quotas, n=len(prepared))
        at = now()
        doc: dict[str, Any] = {
            "id": pipeline_id,
            SHARD_FIELD: index_shard(pipeline_id),  # everyone's lists and scans run per shard (indexes)
            "env": env.name,
            "name": spec.name,
            "owner": caller.uid,
            "labels": spec.labels,
            "idempotency_key": spec.idempotency_key,
            "spec_hash": spec_hash,
            "order": ordered,
            "steps": {
                n: {
                    **pipeline_doc.step_entry(Job.model_validate(prepared[n].doc)),
                    "type": prepared[n].spec.type,
                    "after": after[n],
                }
                for n in ordered
            },
            "created_at": at,
            "updated_at": at,
            "finished_at": None,
            "cancel_requested": False,
            "cancelled_by": None,
            "retry_count": 0,
            "retried_at": None,
            "schedule": schedule.name if schedule else None,
            "scheduled_for": schedule.scheduled_for if schedule else None,
            "trace_id": trace_id,
            "expire_at": None,
            **(extra or {}),
        }
        _, doc["counts"] = pipeline_doc.summary(doc["steps"], False)
        doc["status"] = PipelineStatus.RUNNING.value
        try:
            written = dependencies.create_linked(
                store,
                [prepared[n].doc for n in ordered],
                owner=caller.uid,
                admin=caller.admin,
                retention_days=env.retention_days,
                same=self.jobs._same,
                also=lambda tx: tx.create(store.client.collection(PIPELINES).document(pipeline_id), doc),
            )
        except (gexc.AlreadyExists, gexc.Conflict):
            # Created at the same moment by a repeat of this request: answer as a repeat.
            stored = pipeline_doc.get(store.client, pipeline_id)
            if stored is None:
                raise
            return self._repeat(env, caller, spec, stored, spec_hash), False
        roots = [(job, 0, prepared[job.step or ""].due) for job, created in written if _undispatched(job, created)]
        self.jobs.dispatchers[env.name].dispatch_many(env, roots)
        log.info("pipeline %s (%s) submitted by %s: %d steps", pipeline_id, spec.name, caller.uid, len(ordered))
        return doc, True

    @staticmethod
    def _envelope(raw: Any) -> PipelineSpec:
        if not isinstance(raw, dict):
            raise Unprocessable(
                'a pipeline is {"name", "steps": {"<step>": {<job spec>, "after": [...]}}}',
                [{"field": "body", "problem": "not an object"}],
            )
        try:
            return PipelineSpec.model_validate(raw)
        except ValidationError as exc:
            details = validation_details(exc)
            raise Unprocessable(f"invalid pipeline: {explain(details)}", details) from exc

    @staticmethod
    def _after(name: str, body: Any) -> list[str]:
        field = f"steps.{str(name)[:60]}"
        if not isinstance(body, dict):
            raise Unprocessable(
                f"{field}: a step is a job spec (a JSON object)", [{"field": field, "problem": "not an object"}]
            )
        value = body.get("after", [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Unprocessable(
                f"{field}.after: a list of step names", [{"field": f"{field}.after", "problem": "not a list of names"}]
            )
        return list(value)

    def _step(
        self,
        env: Environment,
        caller: Caller,
        pipeline_id: str,
        name: str,
        body: dict[str, Any],
        ids: Mapping[str, str],
        after: Mapping[str, list[str]],
        trace_id: str | None,
    ) -> Prepared:
        """One step checked as a single job's spec is, its refusals prefixed with the step."""
        where = f"steps.{name}"
        for key, why in NOT_IN_A_STEP.items():
            if key in body:
                raise Unprocessable(f"{where}.{key}: {why}", [{"field": f"{where}.{key}", "problem": "not in a step"}])
        allow = body.get("allow_failed_children", 0)
        if not isinstance(allow, int) or isinstance(allow, bool) or not 0 <= allow <= 10_000:
            raise Unprocessable(
                f"{where}.allow_failed_children: a whole number from 0 to 10000",
                [{"field": f"{where}.allow_failed_children", "problem": "range"}],
            )
        spec = {k: v for k, v in body.items() if k not in STEP_ONLY}
        try:
            prepared = self.jobs.preparer.prepare(
                env, caller, spec, trace_id=trace_id, field_prefix=f"{where}.", job_id=ids[name]
            )
        except PermissionDenied as exc:
            # A step the caller may not submit makes the whole pipeline invalid (422, naming the step).
            raise Unprocessable(
                f"{where}: {exc.message}", [{"field": f"{where}.type", "problem": "not allowed for this caller"}]
            ) from exc
        except Refused as exc:
            exc.message = f"{where}: {exc.message}"
            raise
        prepared.doc.update(
            pipeline_id=pipeline_id,
            step=name,
            upstream={dep: ids[dep] for dep in after[name]},
            depends_on=[ids[dep] for dep in after[name]],
            allow_failed_children=allow,
        )
        return prepared

    def _repeat(
        self, env: Environment, caller: Caller, spec: PipelineSpec, stored: Fields, spec_hash: str
    ) -> dict[str, Any]:
        """A pipeline id that exists: the same request again (its first steps dispatched if they never
        were), or a key reused for another pipeline (409)."""
        if stored.get("owner") != caller.uid or stored.get("spec_hash") != spec_hash:
            raise Conflict(
                f"idempotency key {spec.idempotency_key!r} was already used for a different pipeline "
                f"({stored.get('id')}); use a new key for a new pipeline",
                {"pipeline_id": stored.get("id")},
            )
        store = self.jobs.stores[env.name]
        jobs = store.get_many(s["job_id"] for s in stored["steps"].values())
        again = [(job, 0, job.run_at) for job in jobs.values() if _undispatched(job, False)]
        self.jobs.dispatchers[env.name].dispatch_many(env, again)
        return stored

    # -- read -----------------------------------------------------------------------------------

    def get(self, env_name: str, caller: Caller, pipeline_id: str) -> dict[str, Any]:
        """The pipeline, if the caller may see it; another user's answers exactly as a missing one does."""
        store = self.jobs.store(env_name)
        missing = NotFound(
            f"pipeline {pipeline_id[:100]!r} not found in env {env_name}", {"pipeline_id": pipeline_id[:100]}
        )
        if not is_job_id(pipeline_id):
            missing.message += f" ({JOB_ID_RULE.replace('job id', 'pipeline id')})"
            raise missing
        data = pipeline_doc.get(store.client, pipeline_id)
        if data is None or (data.get("owner") != caller.uid and not caller.admin):
            raise missing
        return data

    def list(
        self,
        env_name: str,
        caller: Caller,
        *,
        status: str | None,
        page_size: int,
        page_token: str | None,
        owner: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The caller's pipelines (admins: everyone's, or one owner's), newest first, a page at a time."""
        if status is not None and status not in {s.value for s in PipelineStatus}:
            raise Unprocessable(
                f"status {status[:40]!r} is not one of {', '.join(s.value for s in PipelineStatus)}",
                [{"field": "status", "problem": "unknown status"}],
            )
        if not 1 <= page_size <= 200:
            raise Unprocessable("page_size must be between 1 and 200", [{"field": "page_size", "problem": "range"}])
        if owner is not None and (not owner.strip() or len(owner) > 256):
            raise Unprocessable("owner must be 1-256 characters", [{"field": "owner", "problem": "range"}])
        if not caller.admin and owner not in (None, caller.uid):
            raise PermissionDenied("only admins may list another user's pipelines")
        who = owner if caller.admin else caller.uid
        q: Any = self.jobs.store(env_name).client.collection(PIPELINES)
        if status:
            q = q.where(filter=firestore.FieldFilter("status", "==", status))
        after = _decode_token(page_token) if page_token else None

        def newest_first(query: Any) -> Iterator[dict[str, Any]]:
            query = query.order_by("created_at", direction=firestore.Query.DESCENDING).order_by(
                "id", direction=firestore.Query.DESCENDING
            )
            if after is not None:
                query = query.start_after({"created_at": after[0], "id": after[1]})
            return (s.to_dict() or {} for s in query.limit(page_size + 1).stream())

        # One owner's pipelines are that owner's index range; everyone's are one query per index
        # shard, merged (created_at grows with time: docs/capacity.md), as the jobs' lists are.
        if who is not None:
            found: Iterable[dict[str, Any]] = newest_first(q.where(filter=firestore.FieldFilter("owner", "==", who)))
        else:
            found = heapq.merge(
                *(newest_first(q.where(filter=firestore.FieldFilter(SHARD_FIELD, "==", k))) for k in range(SHARDS)),
                key=lambda d: (d["created_at"], d["id"]),
                reverse=True,
            )
        docs = list(itertools.islice(found, page_size + 1))
        token = None
        if len(docs) > page_size:
            docs = docs[:page_size]
            token = _encode_token(docs[-1]["created_at"], docs[-1]["id"])
        return docs, token

    # -- cancel and retry -----------------------------------------------------------------------

    def cancel(self, env_name: str, caller: Caller, pipeline_id: str) -> dict[str, Any]:
        """Cancel every step that has not ended (running ones cooperatively, a fan-out with its children)."""
        data = self.get(env_name, caller, pipeline_id)
        if PipelineStatus(data["status"]).final:
            raise Conflict(
                f"pipeline {pipeline_id} is {data['status']}; only a running pipeline can be cancelled",
                {"pipeline_id": pipeline_id, "status": data["status"]},
            )
        store = self.jobs.stores[env_name]
        store.client.collection(PIPELINES).document(pipeline_id).update(
            {"cancel_requested": True, "cancelled_by": caller.uid, "cancel_requested_at": now()}
        )
        ordered, _, ids = pipeline_doc.graph_of(data)
        # Dependents first: a step cancelled before the ones it waits for ends `cancelled`, not `skipped`.
        for name in reversed(ordered):
            try:
                self.jobs.cancel(env_name, caller, ids[name])
            except Conflict:
                continue  # it has ended already
        pipeline_doc.sync(store.client, pipeline_id, list(ids.values()), self.jobs.env(env_name).retention_days)
        log.info("pipeline %s: cancel by %s", pipeline_id, caller.uid)
        return self.get(env_name, caller, pipeline_id)

    def retry(self, env_name: str, caller: Caller, pipeline_id: str) -> dict[str, Any]:
        """Run a failed pipeline's failed steps again (new attempts) and bring back the steps skipped
        because of them, in order; succeeded steps are not run again."""
        data = self.get(env_name, caller, pipeline_id)
        if data["status"] != PipelineStatus.FAILED.value:
            raise Conflict(
                f"pipeline {pipeline_id} is {data['status']}; only a failed pipeline can be retried",
                {"pipeline_id": pipeline_id, "status": data["status"]},
            )
        store = self.jobs.stores[env_name]
        _, _, ids = pipeline_doc.graph_of(data)
        jobs = store.get_many(ids.values())
        dead = [j.id for j in jobs.values() if j.status == Status.DEAD_LETTERED]
        if not dead:
            raise Conflict(
                f"pipeline {pipeline_id} has no step that failed for good to run again (a step cancelled on "
                "its own stays cancelled); submit it again instead",
                {"pipeline_id": pipeline_id},
            )
        store.client.collection(PIPELINES).document(pipeline_id).update(
            {"retry_count": firestore.Increment(1), "retried_at": now(), "retried_by": caller.uid}
        )
        self.flow.redrive(env_name, dead, by=caller.uid)
        log.info("pipeline %s: retry by %s of %d failed steps", pipeline_id, caller.uid, len(dead))
        return self.get(env_name, caller, pipeline_id)
