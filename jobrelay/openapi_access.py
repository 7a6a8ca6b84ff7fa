"""The OpenAPI components of the operators' access routes (jobrelay.access, jobrelay.routes).

Kept apart from jobrelay.openapi, which calls `access_schemas(schemas)` while it builds the document.
"""

from __future__ import annotations

from typing import Any

from jobrelay.openapi_flow import add_model, ref


def access_schemas(schemas: dict[str, Any]) -> None:
    """The bodies of the operators' access routes (jobrelay.access)."""
    from jobrelay.access import AccessChange

    grants = {
        "type": "object",
        "required": ["admin", "roles"],
        "properties": {"admin": {"type": "boolean"}, "roles": {"type": "array", "items": {"type": "string"}}},
    }
    add_model(schemas, "AccessChange", AccessChange, "validation")
    schemas["Grants"] = grants
    schemas["AccessOutcome"] = {
        "type": "object",
        "required": ["action", "uid", "email", "changed", "before", "after", "log_id"],
        "properties": {
            "action": {"type": "string", "enum": ["grant", "revoke"]},
            "uid": {"type": "string"},
            "email": {"type": "string"},
            "changed": {"type": "boolean"},
            "before": ref("Grants"),
            "after": ref("Grants"),
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
                        "before": ref("Grants"),
                        "after": ref("Grants"),
                        "status": {"type": "string", "enum": ["pending", "applied", "failed"]},
                    },
                },
            }
        },
    }
