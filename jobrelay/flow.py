"""What follows a job's end: one owner, called at fixed points.

Whoever writes a job into `failed` or a final state (the runner, the pool, the maintenance pass, a
cancel, a poison message) calls `Flow.ended(env, job)` with the job as written, and nothing else:

    failed          -> publish the dead letter, mark the job dead_lettered (then as below)
    any final state -> each hook in order: the cron schedule's outcome, the job's dependents, its
                       pipeline's document, its parent's fan-in, its own children (when cancelled) ...

A job that must be delivered again (a `Retry(delay=)`, a redrive, a released dependent) goes
through `Flow.redispatch`. The hooks are small objects with one method, as dramatiq keeps its
middleware; a feature that reacts to a job's end (pipelines, concurrency keys, breakers) adds one
here and nowhere else. `Deployment` only wires the pieces.

Pipelines (docs/pipelines.md) also hang off the flow where a step moves without ending: its claim
(`started`), its handler returning after a spawn (`waiting`, then a first fan-in check), a delivery of
a waiting fan-out (`fan_in`), and a redrive (`redriven`: skipped steps back in line, a fan-out's
failed children run again).

Why a job waits is answered here too: every delivery asks `Flow.admit` whether its job may run now
(the gates of jobrelay.gates: a debounced due time, a paused type or open breaker, a concurrency
key's slots), and every attempt that ran reports to `Flow.attempted` (the circuit breakers).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from google.api_core import exceptions as gexc

from jobrelay import bulk, cron, deadletters, dependencies, fanin, pipeline_doc, slots
from jobrelay.breakers import Breakers, ReleaseWaiting
from jobrelay.gates import Decide, Gates
from jobrelay.lifecycle import ClaimDecision
from jobrelay.models import Job, Status, now
from jobrelay.settings import Infra
from jobrelay.store import JobStore, Written
from jobrelay.typestates import StateSource, TypeStates

log = logging.getLogger("jobrelay.flow")

Dispatch = Callable[[str, Job], None]
PublisherFor = Callable[[str], Any]
Withdraw = Callable[[str, Job], object]  # delete a cancelled job's task
# When a pipeline document's sync was lost to contention: tried again after these many seconds.
SYNC_RETRY_SECONDS = (1.0, 3.0, 10.0)


class Hook(Protocol):
    """Reacts to a job that reached a final state (each hook decides whether the job concerns it)."""

    def __call__(self, env: str, job: Job) -> None: ...


@dataclass(frozen=True)
class CronOutcome:
    """A scheduled job's end becomes its schedule's last outcome (`schedules/{name}`)."""

    stores: Mapping[str, JobStore]

    def __call__(self, env: str, job: Job) -> None:
        if "schedule" in job.labels:
            cron.record_outcome(self.stores[env].client, job)


@dataclass(frozen=True)
class Dependents:
    """The jobs waiting for this one: the last success they waited for dispatches them; any other end skips them."""

    flow: Flow

    def __call__(self, env: str, job: Job) -> None:
        if job.dependents:
            self.flow.release(env, job)


@dataclass(frozen=True)
class PipelineSteps:
    """A step's end is copied into its pipeline's document (which may end the pipeline)."""

    flow: Flow

    def __call__(self, env: str, job: Job) -> None:
        self.flow.step_moved(env, job)


@dataclass(frozen=True)
class CancelChildren:
    """A cancelled job's unfinished children are cancelled with it (a fan-out, or one cancelled mid-spawn)."""

    flow: Flow

    def __call__(self, env: str, job: Job) -> None:
        if job.status != Status.CANCELLED or job.started_at is None:
            return  # only a job that ran can have spawned children
        fanin.cancel_children(
            self.flow.stores[env],
            job,
            by=job.cancelled_by or "jobrelay",
            retention_days=self.flow.infra.env(env).retention_days,
            ended=lambda child: self.flow.withdrawn(env, child),
        )


@dataclass(frozen=True)
class Slots:
    """A job that held a concurrency key's slot frees it; the key's oldest waiting jobs get the free slots."""

    flow: Flow

    def __call__(self, env: str, job: Job) -> None:
        if job.concurrency is None or not job.holds_slot:
            return
        for ready in slots.release(self.flow.stores[env], job, now()):
            self.flow.redispatch(env, ready)


@dataclass(frozen=True)
class OperationOutcome:
    """A bulk operation's job that ended without finishing it marks the operation failed (not running forever)."""

    stores: Mapping[str, JobStore]

    def __call__(self, env: str, job: Job) -> None:
        if job.type == bulk.OPERATION_JOB and job.status != Status.SUCCEEDED:
            bulk.failed(self.stores[env].client, job.id, job.error.message if job.error else job.status.value)


class Flow:
    """Runs what follows a job's end, and decides whether a delivery may run, for the envs whose stores it holds."""

    def __init__(
        self,
        infra: Infra,
        stores: Mapping[str, JobStore],
        *,
        dispatch: Dispatch,
        publisher_for: PublisherFor,
        extra_hooks: Sequence[Hook] = (),
        schedule_check: fanin.ScheduleCheck | None = None,
        withdraw: Withdraw | None = None,
        states: StateSource | None = None,
        release_waiting: ReleaseWaiting | None = None,
    ) -> None:
        self.infra = infra
        self.stores = stores
        self._dispatch = dispatch
        self._publisher_for = publisher_for
        self._withdraw = withdraw
        self._checks = fanin.SingleFlight()
        # In order: the schedule learns the outcome before dependents (and their own ends) move on.
        self.hooks: list[Hook] = [
            CronOutcome(stores),
            Dependents(self),
            Slots(self),
            PipelineSteps(self),
            CancelChildren(self),
            OperationOutcome(stores),
        ]
        if schedule_check is not None:
            self.hooks.append(fanin.ChildEnded(schedule_check))
        self.hooks.extend(extra_hooks)
        # Each served env's type states, from one listener per env (jobrelay.typestates).
        self.states = states if states is not None else TypeStates({e: s.client for e, s in stores.items()})
        self.gates = Gates(self.states, self.redispatch)
        self.breakers = Breakers(infra, stores, self.states, release_waiting or _not_wired)

    def admit(
        self,
        store: JobStore,
        job: Job,
        update_time: datetime,
        decide: Decide,
        *,
        at: datetime,
        expire_at: datetime,
        dispatch: int | None = None,
    ) -> Written[ClaimDecision]:
        """May this delivery of `job` run now? Claims it if so; else parks or defers it (jobrelay.gates)."""
        return self.gates.claim(store, job, update_time, decide, at=at, expire_at=expire_at, dispatch=dispatch)

    def attempted(self, env: str, job: Job, succeeded: bool) -> None:
        """An attempt of `job` ran and ended (`succeeded` or failed): its type's circuit breaker judges it."""
        self.breakers.record(env, job, succeeded)

    def ended(self, env: str, job: Job) -> None:
        """`job` was just written failed or final: dead-letter it if failed, then run the hooks."""
        if job.status == Status.FAILED:
            marked = self.dead_letter(env, job)
            if marked is None:
                return  # still `failed`: the maintenance pass publishes it again
            job = marked
        if not job.status.final:
            return
        for hook in self.hooks:
            hook(env, job)

    def dead_letter(self, env: str, job: Job) -> Job | None:
        """Publish a job that failed for good, then mark it dead_lettered; None when the publish failed."""
        env_settings = self.infra.env(env)
        try:
            deadletters.publish(
                self._publisher_for(env),
                env_settings.project,
                env_settings.dead_letter_topic,
                deadletters.DeadLetterMessage.of(env, job),
            )
        except Exception as exc:  # the job stays `failed`; the maintenance pass publishes it again
            log.error("job %s: dead-letter publish failed (%s); maintenance will retry", job.id, exc)
            return None
        marked = deadletters.mark_dead_lettered(self.stores[env], job.id, env_settings.retention_days)
        return marked.job if marked.wrote else None  # not written: marked (and followed up) by another

    def redispatch(self, env: str, job: Job) -> None:
        """Deliver an already recorded job again (a released dependent, a redrive, a delayed retry)."""
        self._dispatch(env, job)

    def release(self, env: str, job: Job) -> None:
        """Resolve the dependents of a job that ended: dispatch the ready ones, follow the skipped ones."""
        released = dependencies.release(self.stores[env], job, self.infra.env(env).retention_days)
        for ready in released.ready:
            self.redispatch(env, ready)
        for skipped in released.skipped:
            self.ended(env, skipped)

    def withdrawn(self, env: str, job: Job) -> None:
        """A job cancelled before it ran: its task deleted (when it has one), then its end followed."""
        if self._withdraw is not None:
            self._withdraw(env, job)
        self.ended(env, job)

    # -- pipelines and fan-out (docs/pipelines.md) ------------------------------------------------

    def step_moved(self, env: str, *jobs: Job) -> None:
        """Steps of one pipeline changed state: their pipeline's document follows."""
        steps = [j for j in jobs if j.pipeline_id and j.step]
        if not steps or not steps[0].pipeline_id:
            return
        self._sync(env, steps[0].pipeline_id, [j.id for j in steps], 0)

    def _sync(self, env: str, pipeline_id: str, job_ids: list[str], tried: int) -> None:
        """Copy steps into their pipeline's document. One lost to contention is tried again shortly,
        from a timer (the steps' own documents are right; the maintenance pass is the last resort)."""
        try:
            pipeline_doc.sync(self.stores[env].client, pipeline_id, job_ids, self.infra.env(env).retention_days)
        except gexc.GoogleAPIError as exc:
            if tried >= len(SYNC_RETRY_SECONDS):
                log.error("pipeline %s: steps not copied (%s); maintenance will sync it", pipeline_id, exc)
                return
            delay = SYNC_RETRY_SECONDS[tried]
            log.warning("pipeline %s: steps not copied (%s); again in %g s", pipeline_id, exc, delay)
            timer = threading.Timer(delay, self._sync, (env, pipeline_id, job_ids, tried + 1))
            timer.daemon = True
            timer.start()

    def started(self, env: str, job: Job) -> None:
        """A job was claimed to run (a step shows `running`)."""
        self.step_moved(env, job)

    def waiting(self, env: str, job: Job) -> None:
        """A job's handler spawned children and returned: it waits; children that ended already count now."""
        self.step_moved(env, job)
        self.fan_in(env, job)

    def fan_in(self, env: str, job: Job) -> None:
        """A fan-in check of a waiting job: when its children have all ended, it ends (and is followed).

        Checks of one job in this process run one at a time; one asked for meanwhile runs after."""
        store = self.stores[env]
        seen = [job]

        def once() -> bool:
            current = seen.pop() if seen else store.get(job.id)  # a second run reads it again
            written = fanin.check(store, current, self.infra.env(env).retention_days) if current else None
            if written is not None and written.wrote:
                self.ended(env, written.job)
            return written is None or written.wrote

        self._checks.run((env, job.id), once)

    def redriven(self, env: str, job: Job) -> None:
        """A dead job was put back in line (a dead-letter redrive, a pipeline's retry).

        Its pipeline's steps skipped because of it come back first (before it can run and release
        them); then a fan-out waits again while its failed children run again, anything else is
        dispatched.
        """
        store = self.stores[env]
        restored: list[Job] = []
        ended: list[Job] = []
        if job.pipeline_id:
            data = pipeline_doc.get(store.client, job.pipeline_id)
            if data is not None:
                restored, ended = pipeline_doc.restore_skipped(store, data)
            self.step_moved(env, job, *restored)
        if job.status == Status.WAITING:
            fanin.reopen(store, job, lambda ids: self.redrive(env, ids, by="jobrelay"))
            self.fan_in(env, job)
        else:
            self.redispatch(env, job)
        for dep in ended:
            self.release(env, dep)

    def redrive(self, env: str, job_ids: list[str], *, by: str, dry_run: bool = False) -> list[Any]:
        """Put dead jobs of `env` back in line, each followed by `redriven` (dead letters marked redriven)."""
        store = self.stores[env]
        return deadletters.redrive(
            store.client, store, job_ids, dispatch=lambda j: self.redriven(env, j), dry_run=dry_run, by=by
        )


def _not_wired(env: str, job_type: str, by: str) -> None:
    # The maintenance pass releases the jobs that waited behind the pause, a page per type and pass.
    log.warning("type %s resumed in %s by %s; its waiting jobs are left to the maintenance pass", job_type, env, by)
