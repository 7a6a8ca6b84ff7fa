"""Validation errors as callers read them: the field path as they wrote it, and the problem."""

from __future__ import annotations

from pydantic import ValidationError


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
