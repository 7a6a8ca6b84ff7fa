"""A pipeline's steps as a graph: names, order, cycles, and what a retry brings back. Pure, no Google.

The pipeline service checks a submitted graph here before anything is written; the settings check a
cron schedule's pipeline here at start-up; the retry asks here which skipped steps come back. The
status of a whole pipeline is a function of its steps' statuses, decided here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

from jobrelay.errors import PayloadTooLarge, Unprocessable
from jobrelay.models import Status

# A step name is a map key in `pipelines/{id}.steps` and a key of `ctx.results`: short, lower case.
STEP_NAME_CHARS = "[a-z][a-z0-9_-]{0,39}"
STEP_NAME = re.compile(STEP_NAME_CHARS + r"\Z")
STEP_NAME_RULE = "a step name is 1-40 lower-case letters, digits, _ or -, starting with a letter"
# Steps in one pipeline: all of them and the pipeline document are written in one atomic commit.
MAX_STEPS = 100
MAX_AFTER = 50  # as JobSpec.depends_on


class PipelineStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self != PipelineStatus.RUNNING


def order(after: Mapping[str, Sequence[str]]) -> list[str]:
    """The steps in an order where each comes after the steps it waits for; refuses a bad graph.

    `after` maps each step name to the names it comes after. Refused (422, nothing written): no
    steps, too many, an invalid name, `after` naming an unknown step or the step itself, a name given
    twice in one `after`, a cycle (named, e.g. `b -> c -> b`).
    """
    if not after:
        raise Unprocessable("a pipeline needs at least one step", [{"field": "steps", "problem": "empty"}])
    if len(after) > MAX_STEPS:
        raise PayloadTooLarge(
            f"a pipeline has at most {MAX_STEPS} steps; got {len(after)}",
            {"field": "steps", "count": len(after), "limit": MAX_STEPS},
        )
    for name, deps in after.items():
        if not isinstance(name, str) or not STEP_NAME.match(name):
            raise Unprocessable(
                f"steps: {str(name)[:60]!r} is not a valid step name: {STEP_NAME_RULE}",
                [{"field": f"steps.{str(name)[:60]}", "problem": "invalid step name"}],
            )
        if len(deps) > MAX_AFTER:
            raise Unprocessable(
                f"steps.{name}.after: at most {MAX_AFTER} steps",
                [{"field": f"steps.{name}.after", "problem": "too many"}],
            )
        for dep in deps:
            field = f"steps.{name}.after"
            if dep == name:
                raise Unprocessable(
                    f"{field}: step {name!r} cannot come after itself", [{"field": field, "problem": "cycle"}]
                )
            if dep not in after:
                known = ", ".join(sorted(after))
                raise Unprocessable(
                    f"{field}: no step {str(dep)[:60]!r} in this pipeline (steps: {known})",
                    [{"field": field, "problem": "unknown step", "step": str(dep)[:60]}],
                )
        if len(set(deps)) != len(deps):
            raise Unprocessable(
                f"steps.{name}.after names a step twice", [{"field": f"steps.{name}.after", "problem": "duplicate"}]
            )
    return _topological(after)


def _topological(after: Mapping[str, Sequence[str]]) -> list[str]:
    """Depth-first, in the order the steps were given; a back edge is a cycle, reported as its path."""
    done: set[str] = set()
    path: list[str] = []
    out: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise Unprocessable(
                f"steps form a cycle: {' -> '.join(cycle)} (each waits for the next to finish)",
                [{"field": f"steps.{cycle[0]}.after", "problem": "cycle", "cycle": cycle}],
            )
        path.append(name)
        for dep in after[name]:
            visit(dep)
        path.pop()
        done.add(name)
        out.append(name)

    for name in after:
        visit(name)
    return out


def pipeline_status(statuses: Iterable[Status], *, cancel_requested: bool) -> PipelineStatus:
    """running while a step has not ended; then succeeded (every step did), cancelled (a cancel was
    asked), or failed (a step failed for good or was cancelled on its own, and its dependents skipped)."""
    seen = list(statuses)
    if any(not s.final for s in seen):
        return PipelineStatus.RUNNING
    if all(s == Status.SUCCEEDED for s in seen):
        return PipelineStatus.SUCCEEDED
    return PipelineStatus.CANCELLED if cancel_requested else PipelineStatus.FAILED


def counts(statuses: Iterable[Status]) -> dict[str, int]:
    """How many steps are in each job status (every status listed, zeros included), and the total."""
    out = {s.value: 0 for s in Status}
    total = 0
    for s in statuses:
        out[s.value] += 1
        total += 1
    return {**out, "total": total}


def restorable(ordered: Sequence[str], after: Mapping[str, Sequence[str]], statuses: Mapping[str, Status]) -> list[str]:
    """The skipped steps a retry brings back, in order: those whose every unfinished-or-failed
    dependency runs again (is not final now, or is itself brought back). A step skipped because of a
    cancelled step stays skipped: nothing will run what it waits for."""
    back: set[str] = set()
    out: list[str] = []
    for name in ordered:
        if statuses[name] != Status.SKIPPED:
            continue
        deps = [d for d in after[name] if statuses[d] != Status.SUCCEEDED]
        if deps and all(d in back or not statuses[d].final for d in deps):
            back.add(name)
            out.append(name)
    return out
