"""Validation errors as callers read them: the field path as they wrote it, and the problem."""

from __future__ import annotations

from pydantic import ValidationError

# Bounds of the values that reach a Firestore query or path, checked at the edge (Firestore refuses
# longer ones with an error that would otherwise be a 500).
MAX_TYPE_LENGTH = 100  # as JobSpec.type
MAX_OWNER_LENGTH = 256  # Firebase uids are at most 128 characters, service account emails under 256
MAX_PAGE_TOKEN = 512
# What jobrelay.faults.fingerprint makes (16 hex digits) and the fixed ones (`worker-lost`, `pool-poison`).
FINGERPRINT_CHARS = "[A-Za-z0-9_-]{1,64}"
FINGERPRINT_PATTERN = f"^{FINGERPRINT_CHARS}$"  # as a JSON Schema pattern (OpenAPI)


def validation_details(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic errors as [{field, problem}], with field paths as callers wrote them."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        problem = err["msg"].removeprefix("Value error, ")
        out.append({"field": f"{prefix}{loc}" if loc else prefix.rstrip("."), "problem": problem})
    return out


def explain(details: list[dict[str, str]]) -> str:
    return "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
