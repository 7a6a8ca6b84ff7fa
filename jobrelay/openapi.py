"""The API's OpenAPI 3.1 document, built from the same pydantic models the API validates with.

`python -m jobrelay.openapi` writes `jobrelay/openapi.json` (served at `/v1/openapi.json`); a test
checks the committed file matches what this builds, and that real answers match the document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from jobrelay.api import CANCEL_MESSAGES
from jobrelay.deadletters import MAX_REDRIVE_IDS
from jobrelay.models import ErrorInfo, Job, JobSpec, Progress, Status
from jobrelay.service import MAX_OWNER_LENGTH, MAX_TYPE_LENGTH
from jobrelay.store import MAX_PAGE_TOKEN

OUT = Path(__file__).resolve().parent / "openapi.json"
REF = "#/components/schemas/"
# The id rules of jobrelay.models.JOB_ID and jobrelay.deadletters.FINGERPRINT, as JSON Schema patterns.
JOB_ID_PATTERN = "^[a-z0-9][a-z0-9-]{5,99}$"
FINGERPRINT_PATTERN = "^[A-Za-z0-9_-]{1,64}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _error_responses(*codes: int) -> dict[str, Any]:
    text = {
        400: "malformed request",
        401: "missing, malformed, expired or foreign token",
        403: "not allowed for this caller",
        404: "no such env, job, schedule or route",
        405: "method not allowed on this route",
        409: "the job's state does not allow it",
        413: "too large",
        422: "fails validation",
        429: "over the caller's quota (see Retry-After)",
        503: "the token cannot be checked now (its signing keys are unreachable): retry after Retry-After",
    }
    retry = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
    return {
        str(c): {"description": text[c], **({"headers": retry} if c in (429, 503) else {}), **_json(_ref("Error"))}
        for c in codes
    }


def _collect(models: dict[str, tuple[type[Any], str]]) -> dict[str, Any]:
    """JSON Schemas of the models, their nested definitions lifted into components."""
    schemas: dict[str, Any] = {}
    for name, (model, mode) in models.items():
        schema = model.model_json_schema(by_alias=True, mode=mode, ref_template=REF + "{model}")
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(def_name, definition)
        schemas[name] = schema
    return schemas


def build() -> dict[str, Any]:
    env = {
        "name": "env",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["prod", "stg", "dev"]},
    }
    job_id = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
        "description": "a job id; any other string answers 404",
    }
    auth: list[dict[str, list[str]]] = [{"firebase": []}, {"googleOidc": []}]
    schemas = _collect(
        {
            "JobSpec": (JobSpec, "validation"),
            "Job": (Job, "serialization"),
            "ErrorInfo": (ErrorInfo, "serialization"),
            "Progress": (Progress, "serialization"),
        }
    )
    schemas.update(
        {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "details": {},
                        },
                    }
                },
            },
            "CancelAnswer": {
                "description": "the job, and what the cancel did",
                "allOf": [
                    _ref("Job"),
                    {
                        "type": "object",
                        "required": ["cancel"],
                        "properties": {
                            "cancel": {
                                "type": "object",
                                "required": ["outcome", "message"],
                                "properties": {
                                    "outcome": {"enum": sorted(CANCEL_MESSAGES)},
                                    "message": {"type": "string"},
                                },
                                "description": (
                                    "cancelled: the job will not run. requested / already: the job is running and "
                                    "stops at its next cancellation check; if its handler finishes first it still "
                                    "ends succeeded (or failed), so watch it for its final status"
                                ),
                            }
                        },
                    },
                ],
            },
            "BatchRequest": {
                "type": "object",
                "required": ["jobs"],
                "additionalProperties": False,
                "properties": {"jobs": {"type": "array", "minItems": 1, "maxItems": 500, "items": _ref("JobSpec")}},
            },
            "JobListing": {
                "type": "object",
                "required": ["jobs"],
                "properties": {
                    "jobs": {"type": "array", "items": _ref("Job")},
                    "next_page_token": {"type": ["string", "null"]},
                },
            },
            "DeadLetter": {
                "type": "object",
                "required": ["job_id", "fingerprint"],
                "properties": {
                    "job_id": {"type": "string"},
                    "env": {"type": "string"},
                    "type": {"type": "string"},
                    "fingerprint": {"type": "string"},
                    "attempt": {"type": "integer"},
                    "error": {"anyOf": [_ref("ErrorInfo"), {"type": "null"}]},
                    "dead_at": {"type": ["string", "null"]},
                    "source": {"type": "string"},
                    "redriven": {"type": "boolean"},
                },
            },
            "DeadLetterGroup": {
                "type": "object",
                "required": ["fingerprint", "count", "job_ids"],
                "properties": {
                    "fingerprint": {"type": "string"},
                    "count": {"type": "integer"},
                    "type": {"type": ["string", "null"]},
                    "error_type": {"type": ["string", "null"]},
                    "message": {"type": ["string", "null"]},
                    "job_ids": {"type": "array", "items": {"type": "string"}},
                },
            },
            "DeadLetters": {
                "type": "object",
                "required": ["groups", "dead_letters", "total"],
                "properties": {
                    "groups": {"type": "array", "items": _ref("DeadLetterGroup")},
                    "dead_letters": {"type": "array", "items": _ref("DeadLetter")},
                    "total": {"type": "integer"},
                },
            },
            "RedriveRequest": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "job_ids": {
                        "anyOf": [
                            {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_REDRIVE_IDS,
                                "items": {"type": "string", "pattern": JOB_ID_PATTERN},
                            },
                            {"type": "null"},
                        ]
                    },
                    "fingerprint": {"anyOf": [{"type": "string", "pattern": FINGERPRINT_PATTERN}, {"type": "null"}]},
                    "all": {"type": "boolean"},
                    "dry_run": {"type": "boolean", "default": False},
                },
                "description": (
                    "exactly one of job_ids, fingerprint or all: true (null is the same as leaving one out); every "
                    "dead letter only with all: true (an empty list or fingerprint is refused); a fingerprint with "
                    "no open dead letter is a 404"
                ),
            },
            "RedriveResult": {
                "type": "object",
                "required": ["dry_run", "count", "redriven", "results"],
                "properties": {
                    "dry_run": {"type": "boolean"},
                    "count": {"type": "integer"},
                    "redriven": {"type": "integer"},
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["job_id", "outcome"],
                            "properties": {
                                "job_id": {"type": "string"},
                                "outcome": {"enum": ["redriven", "would_redrive", "skipped"]},
                                "detail": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "Stats": {
                "type": "object",
                "required": ["env", "counts", "recent"],
                "properties": {
                    "env": {"type": "string"},
                    "generated_at": {"type": "string"},
                    "window_seconds": {"type": "integer"},
                    "counts": {
                        "type": "object",
                        "required": ["by_status", "by_class", "by_status_and_class", "total"],
                    },
                    "oldest_queued": {"type": ["object", "null"]},
                    "recent": {
                        "type": "object",
                        "required": ["succeeded", "dead_lettered", "failure_rate", "duration_seconds"],
                    },
                },
            },
            "Queues": {
                "type": "object",
                "required": ["env", "queues"],
                "properties": {
                    "env": {"type": "string"},
                    "queues": {
                        "type": "array",
                        "items": {"type": "object", "required": ["class", "queue", "route", "state"]},
                    },
                },
            },
            "Schedules": {
                "type": "object",
                "required": ["healthy", "schedules"],
                "properties": {
                    "healthy": {"type": "boolean"},
                    "checked_at": {"type": "string"},
                    "schedules": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "env", "cron", "healthy", "reason"],
                            "properties": {
                                "name": {"type": "string"},
                                "env": {"type": "string"},
                                "cron": {"type": "string"},
                                "next_run": {"type": ["string", "null"]},
                                "last_run": {"type": ["string", "null"]},
                                "last_job_id": {"type": ["string", "null"]},
                                "last_outcome": {"type": ["string", "null"]},
                                "last_success": {"type": ["string", "null"]},
                                "healthy": {"type": "boolean"},
                                "reason": {"type": "string"},
                            },
                        },
                    },
                },
            },
        }
    )
    job_ok = {"description": "the job", **_json(_ref("Job"))}
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "summary": "liveness",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": {"description": "ok", **_json({"type": "object"})}},
            }
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "this document",
                "operationId": "openapi",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", **_json({"type": "object"})}},
            }
        },
        "/v1/envs/{env}/jobs": {
            "parameters": [env],
            "post": {
                "summary": "submit a job",
                "operationId": "submitJob",
                "security": auth,
                "requestBody": {"required": True, **_json(_ref("JobSpec"))},
                "responses": {
                    "202": {"description": "new job", **_json(_ref("Job"))},
                    "200": {"description": "same idempotency key: the first job", **_json(_ref("Job"))},
                    **_error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
                },
            },
            "get": {
                "summary": "list jobs, newest first",
                "operationId": "listJobs",
                "security": auth,
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": [s.value for s in Status]}},
                    {
                        "name": "type",
                        "in": "query",
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TYPE_LENGTH},
                    },
                    {
                        "name": "owner",
                        "in": "query",
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_OWNER_LENGTH},
                        "description": "admins only: one user's jobs",
                    },
                    {
                        "name": "page_size",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    },
                    {
                        "name": "page_token",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": MAX_PAGE_TOKEN},
                        "description": "next_page_token of the page before; empty or left out: the first page",
                    },
                ],
                "responses": {
                    "200": {"description": "a page", **_json(_ref("JobListing"))},
                    **_error_responses(400, 401, 403, 404, 422, 503),
                },
            },
        },
        "/v1/envs/{env}/jobs:batch": {
            "parameters": [env],
            "post": {
                "summary": "submit up to 500 jobs at once (all valid, or none written)",
                "operationId": "submitBatch",
                "security": auth,
                "requestBody": {"required": True, **_json(_ref("BatchRequest"))},
                "responses": {
                    "202": {
                        "description": "jobs",
                        **_json(
                            {
                                "type": "object",
                                "required": ["jobs"],
                                "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
                            }
                        ),
                    },
                    "200": {
                        "description": "all repeats",
                        **_json(
                            {
                                "type": "object",
                                "required": ["jobs"],
                                "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
                            }
                        ),
                    },
                    **_error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
                },
            },
        },
        "/v1/envs/{env}/jobs/{job_id}": {
            "parameters": [env, job_id],
            "get": {
                "summary": "one job (owner or admin; another user's job answers 404, as a missing one)",
                "operationId": "getJob",
                "security": auth,
                "responses": {"200": job_ok, **_error_responses(401, 403, 404, 503)},
            },
        },
        "/v1/envs/{env}/jobs/{job_id}:cancel": {
            "parameters": [env, job_id],
            "post": {
                "summary": "cancel a waiting job now, or ask a running one to stop",
                "description": (
                    "200: the job was waiting and is cancelled; it will not run. 202: the job is running and was "
                    "asked to stop; it stops at its handler's next cancellation check, and if the handler finishes "
                    "first the job still ends succeeded (or failed). Watch the job for its final status."
                ),
                "operationId": "cancelJob",
                "security": auth,
                "responses": {
                    "200": {"description": "cancelled: it will not run", **_json(_ref("CancelAnswer"))},
                    "202": {
                        "description": "stop requested: the job may still end succeeded if its handler finishes first",
                        **_json(_ref("CancelAnswer")),
                    },
                    **_error_responses(401, 403, 404, 409, 503),
                },
            },
        },
        "/v1/envs/{env}/dead-letters": {
            "parameters": [env],
            "get": {
                "summary": "open dead letters, grouped by fingerprint (operators)",
                "operationId": "deadLetters",
                "security": auth,
                "parameters": [
                    {"name": "fingerprint", "in": "query", "schema": {"type": "string", "pattern": FINGERPRINT_PATTERN}}
                ],
                "responses": {
                    "200": {"description": "dead letters", **_json(_ref("DeadLetters"))},
                    **_error_responses(401, 403, 404, 422, 503),
                },
            },
        },
        "/v1/envs/{env}/dead-letters/{job_id}": {
            "parameters": [env, job_id],
            "get": {
                "summary": "one dead letter with its job (operators)",
                "operationId": "deadLetter",
                "security": auth,
                "responses": {
                    "200": {"description": "dead letter", **_json(_ref("DeadLetter"))},
                    **_error_responses(401, 403, 404, 503),
                },
            },
        },
        "/v1/envs/{env}/dead-letters:redrive": {
            "parameters": [env],
            "post": {
                "summary": "redrive dead jobs as a new attempt each (dry_run first)",
                "operationId": "redrive",
                "security": auth,
                "requestBody": {"required": True, **_json(_ref("RedriveRequest"))},
                "responses": {
                    "200": {"description": "what was (or would be) redriven", **_json(_ref("RedriveResult"))},
                    **_error_responses(400, 401, 403, 404, 413, 422, 503),
                },
            },
        },
        "/v1/envs/{env}/stats": {
            "parameters": [env],
            "get": {
                "summary": "counts, oldest waiting job, failure rate, p50/p95 (operators)",
                "operationId": "stats",
                "security": auth,
                "parameters": [
                    {
                        "name": "window_seconds",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 60, "default": 3600},
                    }
                ],
                "responses": {
                    "200": {"description": "stats", **_json(_ref("Stats"))},
                    **_error_responses(400, 401, 403, 404, 422, 503),
                },
            },
        },
        "/v1/envs/{env}/queues": {
            "parameters": [env],
            "get": {
                "summary": "depth and oldest task per class (operators)",
                "operationId": "queues",
                "security": auth,
                "responses": {
                    "200": {"description": "queues", **_json(_ref("Queues"))},
                    **_error_responses(401, 403, 404, 503),
                },
            },
        },
        "/v1/cron/{name}": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "env",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "needed when the deployment serves several envs",
                },
                {"name": "X-CloudScheduler-ScheduleTime", "in": "header", "schema": {"type": "string"}},
            ],
            "post": {
                "summary": "Cloud Scheduler's tick: one job per schedule and scheduled time",
                "operationId": "cronTick",
                "security": [{"googleOidc": []}],
                "responses": {
                    "202": {"description": "new job", **_json(_ref("Job"))},
                    "200": {"description": "the tick's job already exists", **_json(_ref("Job"))},
                    **_error_responses(400, 401, 403, 404, 409, 503),
                },
            },
        },
        "/v1/schedules": {
            "get": {
                "summary": "schedule health (503 when one is unhealthy)",
                "operationId": "schedules",
                "security": [],
                "responses": {
                    "200": {"description": "all healthy", **_json(_ref("Schedules"))},
                    "503": {"description": "some unhealthy", **_json(_ref("Schedules"))},
                },
            }
        },
    }
    _add_apps(paths, schemas, env, auth)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobrelay",
            "version": "1.0.0",
            "description": "Batch jobs for Firebase apps on Google Cloud: submit, watch, cancel, operate.",
        },
        "servers": [{"url": "/"}],
        "security": auth,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "firebase": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "Firebase ID token of the env's project",
                },
                "googleOidc": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "Google-signed OIDC token (scheduler, operators)",
                },
            },
        },
    }


def _add_apps(paths: dict[str, Any], schemas: dict[str, Any], env: dict[str, Any], auth: Any) -> None:
    """App Check on submits, and the operators' access routes (jobrelay.appcheck, jobrelay.access)."""
    from jobrelay.access import AccessChange

    app_check = {
        "name": "X-Firebase-AppCheck",
        "in": "header",
        "schema": {"type": "string"},
        "description": "the app's Firebase App Check token; required from apps where the env has app_check: required",
    }
    for path in ("/v1/envs/{env}/jobs", "/v1/envs/{env}/jobs:batch"):
        paths[path]["post"].setdefault("parameters", []).append(app_check)
    grants = {
        "type": "object",
        "required": ["admin", "roles"],
        "properties": {"admin": {"type": "boolean"}, "roles": {"type": "array", "items": {"type": "string"}}},
    }
    schemas.update(_collect({"AccessChange": (AccessChange, "validation")}))
    schemas["Grants"] = grants
    schemas["AccessOutcome"] = {
        "type": "object",
        "required": ["action", "uid", "email", "changed", "before", "after", "log_id"],
        "properties": {
            "action": {"type": "string", "enum": ["grant", "revoke"]},
            "uid": {"type": "string"},
            "email": {"type": "string"},
            "changed": {"type": "boolean"},
            "before": _ref("Grants"),
            "after": _ref("Grants"),
            "log_id": {"type": ["string", "null"]},
            "note": {"type": "string"},
        },
    }
    schemas["AccessUsers"] = {
        "type": "object",
        "required": ["users", "next_page_token", "known_roles"],
        "properties": {
            "users": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["uid", "admin", "roles"],
                    "properties": {
                        "uid": {"type": "string"},
                        "email": {"type": ["string", "null"]},
                        "disabled": {"type": "boolean"},
                        "admin": {"type": "boolean"},
                        "roles": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "next_page_token": {"type": ["string", "null"]},
            "known_roles": {"type": "array", "items": {"type": "string"}},
        },
    }
    schemas["AccessLog"] = {
        "type": "object",
        "required": ["entries"],
        "properties": {
            "entries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "at", "action", "by", "target", "before", "after", "status"],
                    "properties": {
                        "id": {"type": "string"},
                        "at": {"type": "string"},
                        "env": {"type": "string"},
                        "action": {"type": "string", "enum": ["grant", "revoke"]},
                        "by": {"type": "object"},
                        "target": {"type": "object"},
                        "asked": {"type": "object"},
                        "before": _ref("Grants"),
                        "after": _ref("Grants"),
                        "status": {"type": "string", "enum": ["pending", "applied", "failed"]},
                    },
                },
            }
        },
    }
    paths["/v1/envs/{env}/access"] = {
        "parameters": [env],
        "get": {
            "summary": "users holding jobrelay claims, one page of the project's users (operators)",
            "operationId": "accessList",
            "security": auth,
            "parameters": [{"name": "page_token", "in": "query", "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "users with access", **_json(_ref("AccessUsers"))},
                **_error_responses(400, 401, 403, 404),
            },
        },
    }
    paths["/v1/envs/{env}/access/log"] = {
        "parameters": [env],
        "get": {
            "summary": "access changes, newest first (operators)",
            "operationId": "accessLog",
            "security": auth,
            "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 200}}],
            "responses": {
                "200": {"description": "log entries", **_json(_ref("AccessLog"))},
                **_error_responses(400, 401, 403, 404),
            },
        },
    }
    for action, summary in (
        ("grant", "give a user the admin claim and/or roles (operators; audited in access_log)"),
        ("revoke", "take the admin claim and/or roles from a user (operators; audited in access_log)"),
    ):
        paths[f"/v1/envs/{{env}}/access:{action}"] = {
            "parameters": [env],
            "post": {
                "summary": summary,
                "operationId": f"access{action.title()}",
                "security": auth,
                "requestBody": {"required": True, **_json(_ref("AccessChange"))},
                "responses": {
                    "200": {
                        "description": "what changed (the token refresh brings it to the user)",
                        **_json(_ref("AccessOutcome")),
                    },
                    **_error_responses(400, 401, 403, 404, 422),
                },
            },
        }


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if OUT.read_text() == render() else 1)
    OUT.write_text(render())
