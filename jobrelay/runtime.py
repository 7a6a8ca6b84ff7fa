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
import queue
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
from jobrelay.context import JobContext, Output, Platform, ResultSource, Spawner
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
    # A task can reach the worker before its document is committed (the submit creates both at once,
    # docs/adr/0012): read once more after this wait, then answer "come back later" for the first
    # `young_retries` attempts before dropping the delivery as one for a job that does not exist.
    missing_wait: float = 0.03
    young_retries: int = 3


SecretsFor = Callable[[str], Mapping[str, str]]


class HandlerThreads:
    """Daemon threads that run handlers, kept for the next delivery once a handler returns.

    A handler runs apart from its delivery's thread (which renews the lease and enforces the timeout);
    starting a new OS thread for each delivery cost the worker about 2 % of its CPU. An idle thread
    takes the next handler; none idle, a new one starts, so a handler that ignores its timeout never
    holds others back. Daemon threads, as before: a stuck handler never keeps the process alive.
    """

    def __init__(self, idle_seconds: float = 60.0) -> None:
        self.idle_seconds = idle_seconds
        self._idle: list[queue.SimpleQueue[Callable[[], None] | None]] = []
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], None]) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is not None:
            inbox.put(fn)
            return
        inbox = queue.SimpleQueue()
        inbox.put(fn)
        threading.Thread(target=self._serve, args=(inbox,), name="jobrelay-handler", daemon=True).start()

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        while True:
            try:
                fn = inbox.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:
                        self._idle.remove(inbox)
                        return  # idle too long: end the thread
                fn = inbox.get()  # handed a handler just as the wait ended
            if fn is None:
                return
            fn()
            with self._lock:
                self._idle.append(inbox)


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
    handlers: HandlerThreads = field(default_factory=HandlerThreads)
    # What `ctx.spawn()` and `ctx.results` use (jobrelay.fanout, docs/pipelines.md).
    spawner: Spawner | None = None
    results: Callable[[str], ResultSource] | None = None

    def begin_shutdown(self) -> None:
        """Stop taking work; running jobs get `drain_seconds` before they are handed back."""
        self.stopping.set()

    def expire_at(self, env: str, at: datetime) -> datetime:
        """When a job of `env` that ends at `at` may be removed (its retention)."""
        return at + timedelta(days=self.infra.env(env).retention_days)

    # -- one delivery ------------------------------------------------------------------------

    def deliver(
        self, env: str, job_id: str, *, retries: int | None = None, dispatch: int | None = None, check: bool = False
    ) -> Answer:
        """Claim and run one delivery (dispatch number `dispatch`, when known) of `job_id` in `env`.

        `retries` is how often Cloud Tasks tried this task before (X-CloudTasks-TaskRetryCount); None
        for a transport whose messages are sent only after the document exists (the pool). `check`: a
        fan-in check of a waiting fan-out (jobrelay.fanin).
        """
        store = self.stores.get(env)
        if store is None:
            return Answer(False, Delivery.WRONG_ENV, job_id, detail=f"this worker does not serve env {env!r}")
        if check:
            return self._check(store, job_id)
        if self.stopping.is_set():
            return Answer(False, Delivery.DRAINING, job_id, retry_after=5, detail="worker is shutting down")
        claimed = self._claim(store, job_id, retries, dispatch)
        if isinstance(claimed, Answer):
            return claimed
        job, update_time = claimed
        with jlog.labels(env=env, job_id=job.id, type=job.type, **{"class": job.job_class}, attempt=job.attempt):
            log.info("job %s started (attempt %d of %d)", job.id, job.attempt, job.max_attempts)
            return self._run(store, env, job, update_time)

    def _claim(
        self, store: JobStore, job_id: str, retries: int | None = None, dispatch: int | None = None
    ) -> Answer | tuple[Job, datetime]:
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
        if found is None and retries is not None:
            # Its submit may be committing the document right now: one short wait, one more read.
            time.sleep(self.settings.missing_wait)
            found = store.read(job_id)
            if found is None and retries < self.settings.young_retries:
                log.warning(
                    "delivery for job %s in env %s found no document yet; asking for a retry", job_id, store.env
                )
                detail = "no such job yet; its submit may still be writing it"
                return Answer(False, Delivery.NOT_YET, job_id, retry_after=1, detail=detail)
        if found is None:
            log.error("delivery for unknown job %s in env %s dropped", job_id, store.env)
            return Answer(True, Delivery.MISSING, job_id, detail="no such job")
        job, update_time = found
        # The flow's gates decide first whether the job may run now (jobrelay.gates), then claim it.
        written = self.flow.admit(
            store, job, update_time, decide, at=at, expire_at=self.expire_at(store.env, at), dispatch=dispatch
        )
        d = written.outcome
        if d.outcome == Claim.PARKED:
            # Parked: Cloud Tasks stops (2xx), no attempt used; what holds it dispatches it again.
            return Answer(True, Delivery.PARKED, job_id, written.job.status.value, detail=why(written.job))
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
        if d.outcome == Claim.WAITING:
            self.flow.fan_in(store.env, written.job)
            return Answer(True, Delivery.FAN_IN, job_id, Status.WAITING.value, detail="waits for its children")
        if d.lost_error is not None:
            log.warning("job %s: previous worker lost its lease; running again", job_id)
        assert written.update_time is not None
        if written.job.pipeline_id:
            self.flow.started(store.env, written.job)
        return written.job, written.update_time

    def _check(self, store: JobStore, job_id: str) -> Answer:
        """A fan-in check: a waiting job ends once its children have. A job not (yet) waiting needs none:
        children that end before it waits are counted by the check made when it starts to wait."""
        job = store.get(job_id)
        if job is None or job.status != Status.WAITING:
            status = job.status.value if job else None
            return Answer(True, Delivery.FAN_IN, job_id, status, detail="not waiting for children")
        self.flow.fan_in(store.env, job)
        return Answer(True, Delivery.FAN_IN, job_id, Status.WAITING.value, detail="fan-in checked")

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
            spawner=self.spawner,
            results=self.results(env) if self.results is not None else None,
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

        started = time.monotonic()
        self.handlers.run(target)
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
        if exc is None and ctx.spawned:
            allow = ctx.allow_failed if ctx.allow_failed is not None else job.allow_failed_children
            return attempt.wait_for_children(box.get("result"), ctx.spawned, allow)
        if exc is None:
            return attempt.succeed(box.get("result"))
        if isinstance(exc, JobCancelled) or (cancel.is_set() and attempt.cancel_requested):
            return attempt.cancelled()
        return attempt.fail(exc)
