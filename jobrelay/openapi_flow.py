"""The OpenAPI components of the flow-control routes (jobrelay.routes), from the models they validate with.

Kept apart from jobrelay.openapi, which calls `flow_schemas(schemas)` while it builds the document.
"""

from __future__ import annotations

from typing import Any

from jobrelay.bulk import BulkCancel, Operation
from jobrelay.typestates import TypeState

REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema (shared by the openapi_* modules)."""
    return {"$ref": REF + name}


def add_model(schemas: dict[str, Any], name: str, model: Any, mode: str) -> None:
    """Add `model`'s JSON Schema to `schemas` as `name`, its nested definitions lifted beside it."""
    schema = model.model_json_schema(by_alias=True, mode=mode, ref_template=REF + "{model}")
    for def_name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(def_name, definition)
    schemas[name] = schema


def flow_schemas(schemas: dict[str, Any]) -> None:
    """Add the bodies of the bulk cancel, operation and type routes to `schemas`."""
    add_model(schemas, "BulkCancelRequest", BulkCancel, "validation")
    add_model(schemas, "Operation", Operation, "serialization")
    add_model(schemas, "TypeState", TypeState, "serialization")
    schemas["TypeStateView"] = {
        "description": "a type's state (type_states/{type}), the jobs waiting behind its pause, its breaker's settings",
        "allOf": [
            ref("TypeState"),
            {
                "type": "object",
                "required": ["waiting"],
                "properties": {
                    "waiting": {"type": "integer", "description": "jobs waiting behind the pause (0 when not paused)"},
                    "breaker_config": {"type": ["object", "null"], "description": "infra/breakers.yaml for this type"},
                    "queued": {"type": "integer", "description": "its jobs queued now"},
                    "retrying": {"type": "integer", "description": "its jobs waiting for a retry"},
                    "running": {"type": "integer", "description": "its jobs running"},
                    "oldest_queued_at": {"type": ["string", "null"], "description": "the oldest queued job's creation"},
                    "oldest_queued_age_seconds": {"type": ["number", "null"]},
                },
            },
        ],
    }
    schemas["TypeStates"] = {
        "type": "object",
        "required": ["env", "types"],
        "properties": {
            "env": {"type": "string"},
            "generated_at": {"type": "string"},
            "types": {"type": "array", "items": ref("TypeStateView")},
        },
    }
    schemas["PauseRequest"] = {
        "type": "object",
        "required": ["reason"],
        "additionalProperties": False,
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}},
    }
    schemas["ResumeRequest"] = {"type": "object", "additionalProperties": False, "properties": {}}
    schemas["PauseAnswer"] = {
        "type": "object",
        "required": ["type_state", "changed"],
        "properties": {"type_state": ref("TypeStateView"), "changed": {"type": "boolean"}},
    }
    schemas["ResumeAnswer"] = {
        "type": "object",
        "required": ["type_state", "changed", "operation"],
        "properties": {
            "type_state": ref("TypeStateView"),
            "changed": {"type": "boolean"},
            "operation": {"anyOf": [ref("Operation"), {"type": "null"}]},
        },
    }
    schemas["BulkCancelAnswer"] = {
        "type": "object",
        "required": ["dry_run", "count", "filter"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "count": {"type": "integer", "description": "jobs the filter selects now"},
            "filter": {"type": "object", "description": "the filter applied (a user's own jobs only, for users)"},
            "sample": {"type": "array", "items": {"type": "string"}, "description": "dry run: the first few ids"},
            "operation": {"anyOf": [ref("Operation"), {"type": "null"}]},
        },
    }
    paused = {"type": "array", "items": ref("TypeStateView"), "description": "the paused types of the env"}
    for name in ("Stats", "Queues"):
        schemas[name]["properties"]["paused"] = paused
