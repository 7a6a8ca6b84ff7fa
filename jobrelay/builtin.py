"""jobrelay's own job types, run by the built-in schedules: the maintenance pass and the clean-up.

Only admins and the scheduler's service account may submit them (role `jobrelay-system`).
They reach the platform (stores, dispatcher, dead-letter publishing) through `ctx.platform`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

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
