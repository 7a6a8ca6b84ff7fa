"""jobrelay's own job types: the maintenance pass and the clean-up (run by the built-in schedules), and
the bulk operations of flow control (a bulk cancel, the dispatch of jobs that waited behind a pause).

Only admins and the scheduler's service account may submit them (role `jobrelay-system`).
They reach the platform (stores, dispatcher, dead-letter publishing) through `ctx.platform`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobrelay.context import JobContext, Platform
from jobrelay.registry import job_type

SYSTEM_ROLE = "jobrelay-system"


class NoPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _platform(ctx: JobContext) -> Platform:
    if ctx.platform is None:
        raise RuntimeError("this process offers no platform to housekeeping jobs")
    return ctx.platform


@job_type("jobrelay.maintenance", payload=NoPayload, job_class="A", roles=(SYSTEM_ROLE,), max_attempts=1)
def maintenance(payload: NoPayload, ctx: JobContext) -> dict[str, Any]:
    """Re-dispatches jobs whose lease expired or whose task was lost; publishes missed dead letters."""
    return _platform(ctx).maintenance(ctx.env)


@job_type("jobrelay.cleanup", payload=NoPayload, job_class="C", roles=(SYSTEM_ROLE,))
def cleanup(payload: NoPayload, ctx: JobContext) -> dict[str, Any]:
    """Deletes finished jobs and dead letters past the env's retention."""
    return _platform(ctx).cleanup(ctx.env)


class OperationPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation_id: str = Field(pattern=r"^op-[0-9a-f]{20}$")


# Resumable: every page's progress is saved on the operation, so a lost attempt goes on from there.
@job_type("jobrelay.operation", payload=OperationPayload, job_class="C", roles=(SYSTEM_ROLE,), max_attempts=3)
def operation(payload: OperationPayload, ctx: JobContext) -> dict[str, Any]:
    """Carries out a bulk operation (`bulk_operations/{id}`), a page at a time, from where it stopped."""
    return _platform(ctx).operation(ctx.env, payload.operation_id, ctx)
