"""Cloud Scheduler's side of the API, without HTTP: a tick becomes one job; each schedule's health.

The API verifies that the caller is the env's scheduler account before it calls `Cron.tick`, so an
unauthenticated caller learns nothing about the schedules. `jobrelay.cron` holds the rules (job ids
from the scheduled time, fire times, what healthy means) that this applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobrelay import cron
from jobrelay.auth import Caller
from jobrelay.errors import BadRequest, Conflict, NotFound
from jobrelay.models import Job
from jobrelay.service import JobService
from jobrelay.settings import Infra
from jobrelay.store import JobStore

if TYPE_CHECKING:
    from jobrelay.pipelines import PipelineService

log = logging.getLogger("jobrelay.cron")


class Cron:
    """Cloud Scheduler's ticks and the schedules' health, for the envs whose stores it holds."""

    def __init__(
        self,
        infra: Infra,
        stores: Mapping[str, JobStore],
        jobs: JobService,
        pipelines: Callable[[], PipelineService] | None = None,
    ) -> None:
        self.infra = infra
        self.stores = stores
        self.jobs = jobs
        self._pipelines = pipelines

    def fire(
        self, name: str, env: str, schedule_time: str | None, caller: Caller, *, trace_id: str | None
    ) -> tuple[dict[str, Any], bool]:
        """One tick, answered as the API shows it: the tick's job, or the pipeline it started."""
        schedule = self.infra.schedules.get(name)
        if schedule is None or schedule.pipeline is None or self._pipelines is None:
            job, created = self.tick(name, env, schedule_time, caller, trace_id=trace_id)
            return job.public(), created
        from jobrelay.pipeline_doc import public
        from jobrelay.pipelines import Schedule

        self._check(name, env)
        scheduled = self._scheduled(schedule_time)
        minute = scheduled.strftime("%Y%m%d%H%M")
        pipeline_id = cron.job_id(name, scheduled, prefix="p")
        body = {"name": name, **schedule.pipeline}
        pipeline, created = self._pipelines().submit(
            env, caller, body, trace_id=trace_id, pipeline_id=pipeline_id, schedule=Schedule(name, minute)
        )
        if created:
            cron.record_pipeline_tick(self.stores[env].client, schedule, scheduled, pipeline_id)
        log.info(
            "cron %s in %s for %s: pipeline %s (%s)", name, env, minute, pipeline_id, "new" if created else "repeat"
        )
        return public(pipeline), created

    def _check(self, name: str, env: str) -> None:
        schedule = self.infra.schedules.get(name)
        if schedule is None:
            raise NotFound(f"no schedule {name!r}; schedules: {', '.join(sorted(self.infra.schedules))}")
        if env not in schedule.envs:
            raise NotFound(f"schedule {name!r} does not run in env {env}")
        if not schedule.enabled:
            raise Conflict(f"schedule {name!r} is disabled in infra/schedules.yaml")

    @staticmethod
    def _scheduled(schedule_time: str | None) -> datetime:
        try:
            return cron.parse_schedule_time(schedule_time, datetime.now(UTC))
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc

    def tick(
        self, name: str, env: str, schedule_time: str | None, caller: Caller, *, trace_id: str | None
    ) -> tuple[Job, bool]:
        """One tick of schedule `name` in `env` becomes one job, however often the tick is retried."""
        self._check(name, env)
        schedule = self.infra.schedules[name]
        if schedule.type is None:
            raise Conflict(f"schedule {name!r} starts a pipeline, not a job")
        scheduled = self._scheduled(schedule_time)
        spec: dict[str, object] = {
            "type": schedule.type,
            "payload": schedule.payload,
            "labels": {"schedule": name, "scheduled_for": scheduled.strftime("%Y%m%d%H%M")},
        }
        if schedule.job_class:
            spec["class"] = schedule.job_class
        job, created = self.jobs.submit(env, caller, spec, trace_id=trace_id, job_id=cron.job_id(name, scheduled))
        if created:
            cron.record_tick(self.stores[env].client, schedule, scheduled, job)
        log.info(
            "cron %s in %s for %s: job %s (%s)",
            name,
            env,
            scheduled.isoformat(),
            job.id,
            "new" if created else "repeat",
        )
        return job, created

    def health(self, envs: Sequence[str]) -> dict[str, Any]:
        """Health of every schedule in every env of `envs`; `healthy` is false when one is not."""
        at = datetime.now(UTC)
        out = []
        for env in envs:
            store = self.stores[env]
            states = {s.id: s.to_dict() or {} for s in store.client.collection(cron.SCHEDULES).stream()}
            wanted = [s for s in self.infra.schedules.values() if env in s.envs]
            last_ids = [
                states[s.name]["last_job_id"] for s in wanted if s.name in states and states[s.name].get("last_job_id")
            ]
            jobs = store.get_many(last_ids) if last_ids else {}
            for s in wanted:
                state = states.get(s.name)
                last = jobs.get((state or {}).get("last_job_id", ""))
                out.append(cron.health(s, env, state, last, at).body)
        return {"healthy": all(s["healthy"] for s in out), "checked_at": at.isoformat(), "schedules": out}
