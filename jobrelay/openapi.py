"""The API's OpenAPI 3.1 document, built from the routes the API serves and the models it validates with.

`python -m jobrelay.openapi` writes `jobrelay/openapi.json` (served at `/v1/openapi.json`); a test
checks the committed file matches what this builds, and that real answers match the document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from jobrelay import pipeline_models, promotion
from jobrelay.api import CANCEL_MESSAGES
from jobrelay.deadletters import MAX_REDRIVE_IDS
from jobrelay.models import JOB_ID_PATTERN, ErrorInfo, Job, JobSpec, Progress
from jobrelay.openapi_access import access_schemas
from jobrelay.openapi_flow import flow_schemas
from jobrelay.promotion import KINDS, SOURCE_ID, PromotionRecord, PromotionRequest
from jobrelay.routes import ROUTES, Route
from jobrelay.settings import ENV_NAMES
from jobrelay.validation import FINGERPRINT_PATTERN

OUT = Path(__file__).resolve().parent / "openapi.json"
REF = "#/components/schemas/"


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


PATH_PARAMS: dict[str, dict[str, Any]] = {
    "env": {"type": "string", "enum": list(ENV_NAMES)},
    "job_id": {"type": "string", "pattern": JOB_ID_PATTERN},
    "name": {"type": "string"},
    "kind": {"type": "string", "enum": list(KINDS)},
    "source_id": {"type": "string", "pattern": SOURCE_ID},
    "pipeline_id": {"type": "string", "pattern": JOB_ID_PATTERN},
    "job_type": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"},
    "operation_id": {"type": "string", "pattern": "^op-[0-9a-f]{20}$"},
}
PATH_NOTES = {
    "job_id": {"description": "a job id; any other string answers 404"},
    "pipeline_id": {"description": "a pipeline id; any other string answers 404"},
}
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "anyone": [],
    "user": [{"firebase": []}, {"googleOidc": []}],
    "operator": [{"firebase": []}, {"googleOidc": []}],
    "scheduler": [{"googleOidc": []}],
    "eventarc": [{"googleOidc": []}],
}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.operation_id,
        "security": SECURITY[route.who],
        "responses": {
            str(code): {
                "description": text,
                **_json(_ref(schema) if schema else {"type": "object"}),
            }
            for code, (text, schema) in route.answers.items()
        }
        # Every route that checks a token answers 503 when the token's signing keys cannot be fetched.
        | _error_responses(*route.errors, *((503,) if route.who != "anyone" else ())),
    }
    if route.description:
        op["description"] = route.description
    if route.body:
        op["requestBody"] = {"required": route.body_required, **_json(_ref(route.body))}
        if route.body == "DocumentEventData":  # Eventarc's protobuf form of the same message
            op["requestBody"]["content"]["application/protobuf"] = {"schema": {"type": "string", "format": "binary"}}
    return op


def _paths(auth: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The paths of every route in jobrelay.routes.ROUTES, path parameters declared on the path."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        item = paths.setdefault(route.path, {})
        path_params = [
            {"name": n, "in": "path", "required": True, "schema": PATH_PARAMS[n], **PATH_NOTES.get(n, {})}
            for n in route.path_params()
        ]
        query = [
            {
                "name": q.name,
                "in": q.where,
                "schema": q.schema,
                **({"description": q.description} if q.description else {}),
            }
            for q in route.params
        ]
        op = _operation(route)
        if route.who == "scheduler":
            item["parameters"] = path_params + query  # the tick's env and schedule time belong to the path
        else:
            if path_params:
                item["parameters"] = path_params
            if query:
                op["parameters"] = query
        item[route.method.lower()] = op
    return paths


def build() -> dict[str, Any]:
    auth = SECURITY["user"]
    schemas = _collect(
        {
            "JobSpec": (JobSpec, "validation"),
            "Job": (Job, "serialization"),
            "ErrorInfo": (ErrorInfo, "serialization"),
            "Progress": (Progress, "serialization"),
            "PromotionRequest": (PromotionRequest, "validation"),
            "PromotionRecord": (PromotionRecord, "validation"),
        }
    )
    schemas.update(promotion.openapi_schemas())
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
            "DocumentEventData": {
                "description": "google.events.cloud.firestore.v1.DocumentEventData (proto3 JSON form)",
                "type": "object",
                "required": ["value"],
                "properties": {
                    "value": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "fields": {"type": "object"},
                            "createTime": {"type": "string"},
                            "updateTime": {"type": "string"},
                        },
                    },
                    "oldValue": {"type": "object"},
                    "updateMask": {"type": "object"},
                },
            },
            "RequestOutcome": {
                "type": "object",
                "required": ["request_id", "status", "job_id", "error", "repeat"],
                "properties": {
                    "request_id": {"type": "string"},
                    "status": {"type": "string", "enum": ["pending", "accepted", "refused", "gone"]},
                    "job_id": {"type": ["string", "null"]},
                    "error": {"type": ["object", "null"]},
                    "repeat": {"type": "boolean"},
                },
            },
            "BatchRequest": {
                "type": "object",
                "required": ["jobs"],
                "additionalProperties": False,
                "properties": {"jobs": {"type": "array", "minItems": 1, "maxItems": 500, "items": _ref("JobSpec")}},
            },
            "Jobs": {
                "type": "object",
                "required": ["jobs"],
                "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
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
                    "job_id": {"type": "string", "pattern": JOB_ID_PATTERN},
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
                                "job_id": {"type": "string", "pattern": JOB_ID_PATTERN},
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
    paths = _paths(auth)
    access_schemas(schemas)
    schemas.update(pipeline_models.openapi_schemas(REF))  # the pipeline routes' bodies (jobrelay.pipeline_models)
    flow_schemas(schemas)
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


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if OUT.read_text() == render() else 1)
    OUT.write_text(render())
