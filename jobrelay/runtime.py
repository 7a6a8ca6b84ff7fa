"""Running one delivery of a job: claim, run the handler under its timeout, finish.

The same `Runner` serves the Cloud Run worker (one Cloud Task = one delivery) and the Elastic Muscle
pool (one Pub/Sub message = one delivery). While the handler runs in its own thread, the delivery's
thread keeps the lease alive, writes throttled progress, notices a cancel request (any outside change
to the document makes our next guarded write fail, and the re-read shows `cancel_requested`), and
enforces the timeout; `jobrelay.attempt` makes those writes. The `Answer` tells the transport what to
do: `ack` ends the delivery, otherwise it asks for redelivery. What follows a job's end is
`jobrelay.flow`'s business, never the runner's.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from jobrelay import lifecycle
from jobrelay import logging as jlog
from jobrelay.answers import Answer, Delivery
from jobrelay.attempt import Attempt
from jobrelay.context import JobContext, Output, Platform
from jobrelay.errors import Fatal, JobCancelled, JobTimeout
from jobrelay.flow import Flow
from jobrelay.gates import why
from jobrelay.lifecycle import Claim, ClaimDecision
from jobrelay.models import Job, Status, now, rfc3339
from jobrelay.registry import Registry
from jobrelay.settings import Infra
from jobrelay.store import Change, JobStore

log = logging.getLogger("jobrelay.runtime")


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class RunnerSettings:
    lease_seconds: float = 60.0
    progress_interval: float = 1.0
    drain_seconds: float = 8.0


SecretsFor = Callable[[str], Mapping[str, str]]


@dataclass
class Runner:
    """Runs deliveries of jobs for the envs whose stores it holds."""

    infra: Infra
    registry: Registry
    stores: Mapping[str, JobStore]
    flow: Flow
    secrets_for: SecretsFor = field(default=lambda env: {})
    platform: Platform | None = None
    settings: RunnerSettings = field(default_factory=RunnerSettings)
    worker: str = field(default_factory=worker_id)
    stopping: threading.Event = field(default_factory=threading.Event)

    def begin_shutdown(self) -> None:
        """Stop taking work; running jobs get `drain_seconds` before they are handed back."""
        self.stopping.set()

    def expire_at(self, env: str, at: datetime) -> datetime:
        """When a job of `env` that ends at `at` may be removed (its retention)."""
        return at + timedelta(days=self.infra.env(env).retention_days)

    # -- one delivery ------------------------------------------------------------------------

    def deliver(self, env: str, job_id: str, dispatch: int | None = None) -> Answer:
        """Claim and run one delivery (dispatch number `dispatch`, when known) of `job_id` in `env`."""
        store = self.stores.get(env)
        if store is None:
            return Answer(False, Delivery.WRONG_ENV, job_id, detail=f"this worker does not serve env {env!r}")
        if self.stopping.is_set():
            return Answer(False, Delivery.DRAINING, job_id, retry_after=5, detail="worker is shutting down")
        claimed = self._claim(store, job_id, dispatch)
        if isinstance(claimed, Answer):
            return claimed
        job, update_time = claimed
        with jlog.labels(env=env, job_id=job.id, type=job.type, **{"class": job.job_class}, attempt=job.attempt):
            log.info("job %s started (attempt %d of %d)", job.id, job.attempt, job.max_attempts)
            return self._run(store, env, job, update_time)

    def _claim(self, store: JobStore, job_id: str, dispatch: int | None = None) -> Answer | tuple[Job, datetime]:
        """The job and its update time when this delivery may run it, else the answer to give."""
        at = now()

        def decide(job: Job) -> Change[ClaimDecision]:
            d = lifecycle.decide_claim(
                job,
                worker_id=self.worker,
                lease_seconds=self.settings.lease_seconds,
                at=at,
                expire_at=self.expire_at(store.env, at),
            )
            return Change(d, d.fields)

        found = store.read(job_id)
        if found is None:
            log.error("delivery for unknown job %s in env %s dropped", job_id, store.env)
            return Answer(True, Delivery.MISSING, job_id, detail="no such job")
        job, update_time = found
        # The flow's gates decide first whether the job may run now (jobrelay.gates), then claim it.
        written = self.flow.admit(
            store, job, update_time, decide, at=at, expire_at=self.expire_at(store.env, at), dispatch=dispatch
        )
        d = written.outcome
        if d.outcome == Claim.WAITING:
            # Parked: Cloud Tasks stops (2xx), no attempt used; what holds it dispatches it again.
            return Answer(True, Delivery.WAITING, job_id, written.job.status.value, detail=why(written.job))
        if d.outcome == Claim.NOT_DUE:
            detail = f"not due before {rfc3339(written.job.run_at)}; dispatched again for then"
            return Answer(True, Delivery.NOT_DUE, job_id, written.job.status.value, detail=detail)
        if d.outcome == Claim.NOT_RUNNABLE:
            detail = "job already finished or not runnable; not run again"
            return Answer(True, Delivery.DUPLICATE, job_id, written.job.status.value, detail=detail)
        if d.outcome == Claim.BUSY:
            retry_after = max(1.0, d.retry_after)
            detail = "another worker holds the job's lease"
            return Answer(False, Delivery.BUSY, job_id, Status.RUNNING.value, retry_after, detail)
        if d.outcome == Claim.CANCELLED:
            self.flow.ended(store.env, written.job)
            return Answer(True, Delivery.CANCELLED, job_id, Status.CANCELLED.value)
        if d.outcome == Claim.EXHAUSTED:
            log.error("job %s: worker lost on its last attempt; dead-lettering", job_id)
            self.flow.ended(store.env, written.job)
            detail = "worker lost on the last attempt"
            return Answer(True, Delivery.DEAD_LETTERED, job_id, Status.FAILED.value, detail=detail)
        if d.lost_error is not None:
            log.warning("job %s: previous worker lost its lease; running again", job_id)
        assert written.update_time is not None
        return written.job, written.update_time

    def _run(self, store: JobStore, env: str, job: Job, update_time: datetime) -> Answer:
        jt = self.registry.get(job.type)
        cancel, output = threading.Event(), Output()
        ctx = JobContext(
            env=env,
            project=self.infra.env(env).project,
            job=job,
            secrets=self.secrets_for(env) if jt is not None else {},
            cancel=cancel,
            output=output,
            platform=self.platform,
        )
        box: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                if jt is None:
                    raise RuntimeError(f"job type {job.type!r} is not offered by this worker")
                try:
                    payload: BaseModel = jt.payload.model_validate(
                        job.payload, context={"infra": self.infra, "env": env}
                    )
                except ValidationError as exc:
                    raise Fatal(f"payload no longer valid for {job.type}: {exc.errors()[0]['msg']}") from exc
                result = jt.handler(payload, ctx)
                box["result"] = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
            except BaseException as exc:  # handed to the delivery thread, which decides
                box["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=target, name=f"job-{job.id}", daemon=True)
        started = time.monotonic()
        thread.start()
        attempt = Attempt(
            store,
            job,
            update_time,
            worker=self.worker,
            lease_seconds=self.settings.lease_seconds,
            infra=self.infra,
            flow=self.flow,
            cancel=cancel,
            output=output,
            secrets=ctx.secrets,
        )
        deadline = started + job.timeout_seconds
        next_beat = started + self.settings.lease_seconds / 3
        drain_deadline: float | None = None
        timed_out = False
        while not done.wait(self.settings.progress_interval):
            t = time.monotonic()
            if attempt.lost:
                cancel.set()
                log.warning("job %s: lease lost to another worker; abandoning this attempt", job.id)
                return Answer(True, Delivery.LEASE_LOST, job.id, detail="another worker took the job over")
            progress, lines = output.drain()
            if progress is not None or lines or t >= next_beat:
                attempt.beat(progress, lines)
                next_beat = t + self.settings.lease_seconds / 3
            if t >= deadline:
                timed_out = True
                cancel.set()
                break
            if self.stopping.is_set():
                drain_deadline = drain_deadline or t + self.settings.drain_seconds
                if t >= drain_deadline:
                    cancel.set()
                    return attempt.hand_back()
        if timed_out:
            exc: BaseException | None = JobTimeout(f"handler ran past its timeout of {job.timeout_seconds}s")
        else:
            exc = box.get("error")
        if attempt.lost:
            return Answer(True, Delivery.LEASE_LOST, job.id, detail="another worker took the job over")
        if exc is None:
            return attempt.succeed(box.get("result"))
        if isinstance(exc, JobCancelled) or (cancel.is_set() and attempt.cancel_requested):
            return attempt.cancelled()
        return attempt.fail(exc)
