"""Cron through Cloud Scheduler: each tick of a schedule becomes an ordinary job, once.

The job id derives from the schedule and its scheduled time (Cloud Scheduler's
`X-CloudScheduler-ScheduleTime` header), so a retried or duplicated tick finds the job it created
the first time. Each env keeps `schedules/{name}` with its last tick and outcome, from which
`health` says whether a schedule is healthy: its last run succeeded and it is not overdue.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from google.cloud import firestore
from pydantic import ValidationError

from jobrelay.errors import SettingsError
from jobrelay.models import Job, Status, rfc3339
from jobrelay.namespace import SCHEDULES as SCHEDULES
from jobrelay.registry import Registry
from jobrelay.settings import Infra, Schedule

LATE_GRACE = timedelta(minutes=2)  # Cloud Scheduler fires within seconds; later than this is overdue


def check_schedules(infra: Infra, registry: Registry) -> None:
    """Fail at start-up if a schedule names an unknown job type or a payload its schema refuses."""
    path = str(infra.directory / "schedules.yaml")
    for s in infra.schedules.values():
        if s.pipeline is not None:  # each step as a job schedule (its graph was checked at load)
            for step, body in (s.pipeline.get("steps") or {}).items():
                where = f"schedules.{s.name}.pipeline.steps.{step}"
                _check_job(infra, registry, path, where, str(body.get("type")), body.get("payload") or {}, s.envs)
            continue
        _check_job(infra, registry, path, f"schedules.{s.name}", str(s.type), s.payload, s.envs)


def _check_job(
    infra: Infra, registry: Registry, path: str, where: str, job_type: str, payload: Any, envs: tuple[str, ...]
) -> None:
    jt = registry.get(job_type)
    if jt is None:
        raise SettingsError(path, f"{where}.type", f"unknown job type {job_type!r}")
    try:
        for env in envs:
            jt.payload.model_validate(payload, context={"infra": infra, "env": env})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise SettingsError(path, f"{where}.payload.{loc}".rstrip("."), err["msg"]) from exc


def job_id(schedule: str, scheduled: datetime, prefix: str = "c") -> str:
    """The job id of one tick (`prefix` "p": its pipeline's id): the same schedule and time, the same id."""
    minute = scheduled.astimezone(UTC).strftime("%Y%m%d%H%M")
    digest = hashlib.sha256(f"{schedule}\0{minute}".encode()).hexdigest()[:8]
    return f"{prefix}{digest}-{schedule[:60]}-{minute}"


def parse_schedule_time(header: str | None, at: datetime) -> datetime:
    """Cloud Scheduler's RFC 3339 schedule time; without one (a manual run), the current minute."""
    if header:
        try:
            value = datetime.fromisoformat(header.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"X-CloudScheduler-ScheduleTime {header!r} is not RFC 3339") from exc
        if value.tzinfo is None:
            raise ValueError("X-CloudScheduler-ScheduleTime needs a time zone")
        return value.astimezone(UTC)
    return at.replace(second=0, microsecond=0)


def fire_times(s: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """The schedule's fire times in (start, end], in UTC."""
    tz = ZoneInfo(s.time_zone)
    it = croniter(s.cron, start.astimezone(tz))
    out: list[datetime] = []
    while True:
        nxt: datetime = it.get_next(datetime)
        if nxt > end.astimezone(tz):
            return out
        out.append(nxt.astimezone(UTC))


def next_run(s: Schedule, at: datetime) -> datetime:
    tz = ZoneInfo(s.time_zone)
    value: datetime = croniter(s.cron, at.astimezone(tz)).get_next(datetime)
    return value.astimezone(UTC)


def previous_run(s: Schedule, at: datetime) -> datetime:
    tz = ZoneInfo(s.time_zone)
    value: datetime = croniter(s.cron, at.astimezone(tz)).get_prev(datetime)
    return value.astimezone(UTC)


def record_tick(client: firestore.Client, s: Schedule, scheduled: datetime, job: Job) -> None:
    client.collection(SCHEDULES).document(s.name).set(
        {
            "name": s.name,
            "last_scheduled_time": scheduled,
            "last_job_id": job.id,
            "last_tick_at": datetime.now(UTC),
        },
        merge=True,
    )


def record_pipeline_tick(client: firestore.Client, s: Schedule, scheduled: datetime, pipeline_id: str) -> None:
    """A tick that started a pipeline: its outcome is recorded when the pipeline ends (jobrelay.pipeline_doc)."""
    client.collection(SCHEDULES).document(s.name).set(
        {
            "name": s.name,
            "last_scheduled_time": scheduled,
            "last_job_id": None,
            "last_pipeline_id": pipeline_id,
            "last_outcome": "running",
            "last_tick_at": datetime.now(UTC),
        },
        merge=True,
    )


def record_outcome(client: firestore.Client, job: Job) -> None:
    """Called when a scheduled job ends: its outcome becomes the schedule's last outcome."""
    name = job.labels.get("schedule")
    if not name:
        return
    fields: dict[str, Any] = {
        "last_outcome": job.status.value,
        "last_outcome_job_id": job.id,
        "last_finished_at": job.finished_at,
    }
    if job.status == Status.SUCCEEDED:
        fields["last_success_at"] = job.finished_at
        fields["last_success_job_id"] = job.id
    client.collection(SCHEDULES).document(name).set(fields, merge=True)


@dataclass(frozen=True)
class Health:
    healthy: bool
    reason: str
    body: dict[str, Any]


def health(s: Schedule, env: str, state: dict[str, Any] | None, last_job: Job | None, at: datetime) -> Health:
    """Whether a schedule in one env is healthy: last run succeeded (or is under way) and not overdue."""
    state = state or {}
    last_scheduled: datetime | None = state.get("last_scheduled_time")
    due = previous_run(s, at - LATE_GRACE)  # the latest run that should have happened by now
    outcome = last_job.status.value if last_job is not None else state.get("last_outcome")
    if not s.enabled:
        healthy, reason = True, "disabled"
    elif last_scheduled is None:
        healthy, reason = True, "no run recorded yet"
    elif last_scheduled < due:
        healthy, reason = False, f"overdue: the run due at {rfc3339(due)} has not happened"
    elif outcome in (Status.SUCCEEDED.value,):
        healthy, reason = True, "last run succeeded"
    elif outcome in (Status.QUEUED.value, Status.RUNNING.value, Status.RETRYING.value):
        healthy, reason = True, f"last run is {outcome}"
    else:
        healthy, reason = False, f"last run ended {outcome}"
    body = {
        "name": s.name,
        "env": env,
        "description": s.description,
        "cron": s.cron,
        "time_zone": s.time_zone,
        "type": s.type,
        "pipeline": (s.pipeline or {}).get("name") if s.pipeline is not None else None,
        "class": s.job_class,
        "enabled": s.enabled,
        "builtin": s.builtin,
        "next_run": rfc3339(next_run(s, at)) if s.enabled else None,
        "last_run": rfc3339(last_scheduled),
        "last_job_id": state.get("last_job_id"),
        "last_pipeline_id": state.get("last_pipeline_id"),
        "last_outcome": outcome,
        "last_success": rfc3339(state.get("last_success_at")),
        "healthy": healthy,
        "reason": reason,
    }
    return Health(healthy, reason, body)
