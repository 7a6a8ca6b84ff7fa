"""A job spec into the document to write: every check a submit makes before its first write.

The schema (JobSpec), the job type and whether the caller may submit it, its payload model and
payload-dependent access rule (an allow-listed script's roles), class, timeouts, attempts, due time,
labels, dependencies and flow control (jobrelay.flowspec). `JobService` writes what this prepares;
pipelines, fan-out, job requests and promotion prepare through the same checks.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from jobrelay import flowspec
from jobrelay.auth import Caller
from jobrelay.errors import (
    PayloadTooLarge,
    PermissionDenied,
    Unprocessable,
)
from jobrelay.indexes import index_shard
from jobrelay.models import JobSpec, Status, now
from jobrelay.registry import JobType, Registry
from jobrelay.settings import Environment, Infra, Route
from jobrelay.validation import explain, validation_details

TASKS_MAX_TIMEOUT = 1800 - 30  # Cloud Tasks waits at most 30 minutes for an HTTP target


@dataclass(frozen=True)
class Prepared:
    """A spec that passed every check, ready to be written."""

    spec: JobSpec
    job_type: JobType
    doc: dict[str, Any]
    due: datetime | None


class Preparer:
    """Prepares specs for the envs of `infra`, with the job types of `registry`."""

    def __init__(self, infra: Infra, registry: Registry) -> None:
        self.infra = infra
        self.registry = registry

    def offered(self, env: Environment, caller: Caller) -> list[str]:
        """The job types `caller` may submit in `env`; jobrelay's own (`jobrelay.*`) are never listed."""
        return sorted(
            n
            for n, jt in self.registry.types.items()
            if (env.allow_test_jobs or not jt.test_only) and not jt.internal and caller.may_use(jt.roles)
        )

    def prepare(
        self,
        env: Environment,
        caller: Caller,
        raw: Any,
        *,
        trace_id: str | None,
        field_prefix: str = "",
        job_id: str | None = None,
        batch: bool = False,
    ) -> Prepared:
        """Validate one spec completely; raise the refusal that names the first problem."""
        if not isinstance(raw, dict):
            raise Unprocessable(
                f"{field_prefix or 'body'}: a job spec must be a JSON object",
                [{"field": field_prefix.rstrip(".") or "body", "problem": "not an object"}],
            )
        try:
            spec = JobSpec.model_validate(raw)
        except ValidationError as exc:
            details = validation_details(exc, field_prefix)
            raise Unprocessable(f"invalid job spec: {explain(details)}", details) from exc
        jt = self.registry.get(spec.type)
        if jt is None or (jt.test_only and not env.allow_test_jobs):
            offered = self.offered(env, caller)
            raise Unprocessable(
                f"unknown job type {spec.type!r} in env {env.name}; offered: {', '.join(offered)}",
                [{"field": f"{field_prefix}type", "problem": "unknown job type", "offered": offered}],
            )
        if not caller.may_use(jt.roles):
            raise PermissionDenied(
                f"user {caller.uid} may not submit {spec.type!r} jobs: it needs one of the roles {list(jt.roles)}"
            )
        size = len(json.dumps(spec.payload, separators=(",", ":")).encode())
        if size > env.max_payload_bytes:
            raise PayloadTooLarge(
                f"payload is {size} bytes; the limit in env {env.name} is {env.max_payload_bytes} bytes "
                "(store large inputs in Cloud Storage or Firestore and pass a reference)",
                {"field": f"{field_prefix}payload", "bytes": size, "limit": env.max_payload_bytes},
            )
        try:
            payload = jt.payload.model_validate(spec.payload, context={"infra": self.infra, "env": env.name})
        except ValidationError as exc:
            details = validation_details(exc, f"{field_prefix}payload.")
            raise Unprocessable(f"invalid payload for {spec.type}: {explain(details)}", details) from exc
        self._check_needs(env, caller, jt, payload, field_prefix)
        class_name = spec.job_class or jt.job_class
        job_class = self.infra.classes.get(class_name)
        if job_class is None:
            raise Unprocessable(
                f"unknown class {class_name!r}; classes: {', '.join(sorted(self.infra.classes))}",
                [{"field": f"{field_prefix}class", "problem": "unknown class"}],
            )
        route = Route.MUSCLE if (jt.heavy or job_class.route == Route.MUSCLE) else Route.TASKS
        timeout = spec.timeout_seconds or jt.timeout_seconds or job_class.timeout_seconds
        if route == Route.TASKS and timeout > TASKS_MAX_TIMEOUT:
            raise Unprocessable(
                f"timeout_seconds {timeout} is over {TASKS_MAX_TIMEOUT}, the most a Cloud Run delivery allows; "
                "use a class routed to the Elastic Muscle pool (D) for longer jobs",
                [{"field": f"{field_prefix}timeout_seconds", "problem": "too long for the tasks route"}],
            )
        max_attempts = spec.max_attempts or jt.max_attempts or job_class.retry.max_attempts
        if max_attempts > job_class.retry.max_attempts:
            raise Unprocessable(
                f"max_attempts {max_attempts} is over class {class_name}'s limit of {job_class.retry.max_attempts}",
                [{"field": f"{field_prefix}max_attempts", "problem": "over the class limit"}],
            )
        at = now()
        try:
            due = spec.due_at(at)
        except ValueError as exc:
            raise Unprocessable(str(exc), [{"field": f"{field_prefix}run_at", "problem": str(exc)}]) from exc
        canonical = payload.model_dump(mode="json")
        spec_hash = hashlib.sha256(
            json.dumps([spec.type, canonical, class_name, spec.depends_on], sort_keys=True).encode()
        ).hexdigest()[:32]
        if job_id is not None:
            pass  # derived by the caller (a cron tick), so a repeat finds the first job
        elif spec.idempotency_key is not None:
            key = f"{env.name}\0{caller.uid}\0{spec.idempotency_key}".encode()
            job_id = "k" + hashlib.sha256(key).hexdigest()[:23]
        else:
            job_id = secrets.token_hex(12)
        doc: dict[str, Any] = {
            "id": job_id,
            "env": env.name,
            "type": spec.type,
            "class": class_name,
            "route": route.value,
            "status": Status.QUEUED.value,
            "owner": caller.uid,
            "payload": canonical,
            "attempt": 0,
            "max_attempts": max_attempts,
            "timeout_seconds": timeout,
            "idempotency_key": spec.idempotency_key,
            "spec_hash": spec_hash,
            "labels": spec.labels,
            "depends_on": spec.depends_on,
            "dependents": [],
            "waiting_on": [],
            "progress": None,
            "created_at": at,
            "run_at": due,
            "due_at": due or at,
            "ix": index_shard(job_id),  # the index shard (jobrelay.indexes)
            "dispatch_count": 0,
            "trace_id": trace_id,
            "cancel_requested": False,
            "errors": [],
            "log_tail": [],
            # What the children it may spawn are checked against (jobrelay.fanout).
            "authority": {"admin": caller.admin, "roles": sorted(caller.roles)},
        }
        flow_due = flowspec.apply(doc, spec, jt, env=env.name, prefix=field_prefix, at=at, batch=batch)
        return Prepared(spec=spec, job_type=jt, doc=doc, due=flow_due or due)

    def _check_needs(self, env: Environment, caller: Caller, jt: JobType, payload: Any, field_prefix: str) -> None:
        """The job type's payload-dependent access rule (an allow-listed script's roles, say)."""
        need = jt.needs(payload, self.infra) if jt.needs is not None else None
        if need is None or caller.admin or need.anyone or caller.roles & set(need.roles):
            return
        who = f"one of the roles {list(need.roles)}" if need.roles else "an operator (the admin claim)"
        raise PermissionDenied(
            f"user {caller.uid} may not run {need.what} in env {env.name}: it needs {who}",
            {"field": f"{field_prefix}payload", "roles": list(need.roles), "operators_only": not need.roles},
        )
