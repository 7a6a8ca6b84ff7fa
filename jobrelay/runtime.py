"""Running one delivery of a job: claim, run the handler under its timeout, finish.

The same `Runner` serves the Cloud Run worker (one Cloud Task = one delivery) and the Elastic Muscle
pool (one Pub/Sub message = one delivery). While the handler runs in its own thread, the delivery's
thread keeps the lease alive, writes throttled progress, notices a cancel request (any outside change
to the document makes our next guarded write fail, and the re-read shows `cancel_requested`), and
enforces the timeout. The answer tells the transport what to do: `ack` ends the delivery, `retry`
asks for redelivery with the queue's backoff.
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

from jobrelay import faults, lifecycle
from jobrelay import logging as jlog
from jobrelay.backoff import backoff_seconds
from jobrelay.errors import Fatal, JobCancelled, JobTimeout, Retry, TransitionRefused
from jobrelay.models import Job, Progress, Status, now
from jobrelay.registry import Registry
from jobrelay.settings import Infra
from jobrelay.store import JobStore

log = logging.getLogger("jobrelay.runtime")


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobContext:
    """What a handler gets besides its payload: who it is, progress, cancellation, secrets, a logger."""

    def __init__(
        self,
        *,
        env: str,
        project: str,
        job: Job,
        secrets: Mapping[str, str],
        cancel_event: threading.Event,
        platform: Any = None,
    ) -> None:
        self.env = env
        self.project = project
        self.job_id = job.id
        self.type = job.type
        self.job_class = job.job_class
        self.attempt = job.attempt
        self.labels = dict(job.labels)
        self.secrets: Mapping[str, str] = secrets
        # The hosting process's services, for jobrelay's own housekeeping jobs (jobrelay.builtin).
        self.platform: Any = platform
        self.logger = logging.LoggerAdapter(
            logging.getLogger(f"jobs.{job.type}"),
            {
                "labels": {
                    "env": env,
                    "job_id": job.id,
                    "type": job.type,
                    "class": job.job_class,
                    "attempt": job.attempt,
                }
            },
        )
        self._cancel = cancel_event
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._progress_dirty = False
        self._lines: list[str] = []

    def firestore(self) -> Any:
        """The Firestore client of this job's own env (server SDK: security rules do not apply)."""
        from jobrelay import clients

        return clients.firestore_client(self.project)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled (or timed out, or the worker is handing it back)."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job should stop now."""
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.job_id} was asked to stop")

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on cancel; True when cancelled."""
        return self._cancel.wait(seconds)

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; written to the job document at most about once a second."""
        with self._lock:
            self._progress = Progress(done=done, total=total, message=message)
            self._progress_dirty = True

    def log(self, line: str) -> None:
        """Append a line to the job's log tail (shown with the job) and to the logs."""
        self.logger.info(line)
        with self._lock:
            self._lines.append(line)

    def drain(self) -> tuple[Progress | None, list[str]]:
        """What changed since the last write (for the runner)."""
        with self._lock:
            progress = self._progress if self._progress_dirty else None
            lines, self._lines = self._lines, []
            self._progress_dirty = False
            return progress, lines

    def last_progress(self) -> Progress | None:
        with self._lock:
            return self._progress


@dataclass(frozen=True)
class Answer:
    """What the transport should do with the delivery."""

    ack: bool
    outcome: str
    job_id: str
    status: str | None = None
    retry_after: float | None = None
    detail: str = ""

    def body(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "job_id": self.job_id, "status": self.status, "detail": self.detail}


@dataclass
class RunnerSettings:
    lease_seconds: float = 60.0
    progress_interval: float = 1.0
    drain_seconds: float = 8.0


SecretsFor = Callable[[str], Mapping[str, str]]
DeadLetter = Callable[[str, Job], None]
Redispatch = Callable[[str, Job], None]
AfterFinish = Callable[[str, Job], None]


@dataclass(frozen=True)
class _Claim:
    answer: Answer
    lease: tuple[Job, datetime] | None = None


@dataclass
class Runner:
    """Runs deliveries of jobs for the envs whose stores it holds."""

    infra: Infra
    registry: Registry
    stores: Mapping[str, JobStore]
    dead_letter: DeadLetter
    redispatch: Redispatch
    after_finish: AfterFinish
    secrets_for: SecretsFor = field(default=lambda env: {})
    platform: Any = None
    settings: RunnerSettings = field(default_factory=RunnerSettings)
    worker: str = field(default_factory=worker_id)
    stopping: threading.Event = field(default_factory=threading.Event)

    def begin_shutdown(self) -> None:
        """Stop taking work; running jobs get `drain_seconds` before they are handed back."""
        self.stopping.set()

    # -- one delivery ------------------------------------------------------------------------

    def deliver(self, env: str, job_id: str) -> Answer:
        """Claim and run one delivery of `job_id` in `env`."""
        store = self.stores.get(env)
        if store is None:
            return Answer(False, "wrong_env", job_id, detail=f"this worker does not serve env {env!r}")
        if self.stopping.is_set():
            return Answer(False, "draining", job_id, retry_after=5, detail="worker is shutting down")
        claim = self._claim(store, job_id)
        if claim.lease is None:
            return claim.answer
        job, update_time = claim.lease
        with jlog.labels(env=env, job_id=job.id, type=job.type, **{"class": job.job_class}, attempt=job.attempt):
            log.info("job %s started (attempt %d of %d)", job.id, job.attempt, job.max_attempts)
            return self._run(store, env, job, update_time)

    def _claim(self, store: JobStore, job_id: str) -> _Claim:
        at = now()
        decided: list[lifecycle.ClaimDecision] = []

        def change(job: Job) -> dict[str, Any] | None:
            decided[:] = [
                lifecycle.decide_claim(
                    job,
                    worker_id=self.worker,
                    lease_seconds=self.settings.lease_seconds,
                    at=at,
                    expire_at=at + timedelta(days=self.infra.env(store.env).retention_days),
                )
            ]
            return decided[0].fields

        snap = store.jobs.document(job_id).get()
        if not snap.exists:
            log.error("delivery for unknown job %s in env %s dropped", job_id, store.env)
            return _Claim(Answer(True, "missing", job_id, detail="no such job"))
        job = Job.model_validate(snap.to_dict() or {})
        written = store.transition(job_id, change, base=(snap.update_time, job))
        d = decided[0]
        if d.outcome == "final":
            current = written[0] if written else job
            return _Claim(
                Answer(
                    True,
                    "duplicate",
                    job_id,
                    current.status.value,
                    detail="job already finished or not runnable; not run again",
                )
            )
        if d.outcome == "busy":
            return _Claim(
                Answer(
                    False,
                    "busy",
                    job_id,
                    Status.RUNNING.value,
                    retry_after=max(1.0, d.retry_after),
                    detail="another worker holds the job's lease",
                )
            )
        assert written is not None
        if d.outcome == "cancelled":
            self.after_finish(store.env, written[0])
            return _Claim(Answer(True, "cancelled", job_id, Status.CANCELLED.value))
        if d.outcome == "exhausted":
            log.error("job %s: worker lost on its last attempt; dead-lettering", job_id)
            self.dead_letter(store.env, written[0])
            return _Claim(
                Answer(
                    True,
                    "dead_lettered",
                    job_id,
                    Status.FAILED.value,
                    detail="worker lost on the last attempt",
                )
            )
        if d.lost_error is not None:
            log.warning("job %s: previous worker lost its lease; running again", job_id)
        return _Claim(Answer(True, "claimed", job_id), lease=written)

    def _run(self, store: JobStore, env: str, job: Job, update_time: datetime) -> Answer:
        env_settings = self.infra.env(env)
        jt = self.registry.get(job.type)
        cancel = threading.Event()
        secrets = self.secrets_for(env) if jt is not None else {}
        ctx = JobContext(
            env=env,
            project=env_settings.project,
            job=job,
            secrets=secrets,
            cancel_event=cancel,
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
        holder = _Holder(store, self, job, update_time, ctx)
        deadline = started + job.timeout_seconds
        next_beat = started + self.settings.lease_seconds / 3
        drain_deadline: float | None = None
        timed_out = False
        while not done.wait(self.settings.progress_interval):
            t = time.monotonic()
            if holder.lost:
                cancel.set()
                log.warning("job %s: lease lost to another worker; abandoning this attempt", job.id)
                return Answer(True, "lease_lost", job.id, detail="another worker took the job over")
            progress, lines = ctx.drain()
            if progress is not None or lines or t >= next_beat:
                holder.beat(progress, lines)
                next_beat = t + self.settings.lease_seconds / 3
            if t >= deadline:
                timed_out = True
                cancel.set()
                break
            if self.stopping.is_set():
                drain_deadline = drain_deadline or t + self.settings.drain_seconds
                if t >= drain_deadline:
                    cancel.set()
                    return holder.hand_back()
        if timed_out:
            exc: BaseException | None = JobTimeout(f"handler ran past its timeout of {job.timeout_seconds}s")
        else:
            exc = box.get("error")
        if holder.lost:
            return Answer(True, "lease_lost", job.id, detail="another worker took the job over")
        if exc is None:
            return holder.succeed(box.get("result"))
        if isinstance(exc, JobCancelled) or (cancel.is_set() and holder.cancel_requested):
            return holder.cancelled()
        return holder.fail(exc)


class _Holder:
    """The lease of one running attempt and every guarded write it makes."""

    def __init__(self, store: JobStore, runner: Runner, job: Job, update_time: datetime, ctx: JobContext):
        self.store, self.runner, self.ctx = store, runner, ctx
        self.job, self.update_time = job, update_time
        self.lost = False
        self.cancel_requested = job.cancel_requested

    def _write(self, change: Callable[[Job], dict[str, Any] | None]) -> Job | None:
        def guarded(current: Job) -> dict[str, Any] | None:
            if current.cancel_requested and not self.cancel_requested:
                self.cancel_requested = True
                self.ctx._cancel.set()
                log.info("job %s: cancel requested; asking the handler to stop", current.id)
            return change(current)

        try:
            written = self.store.transition(self.job.id, guarded, base=(self.update_time, self.job))
        except TransitionRefused as exc:
            self.lost = True
            log.warning("job %s: %s", self.job.id, exc)
            return None
        if written is not None:
            self.job, self.update_time = written
        return self.job

    def _expire_at(self) -> datetime:
        return now() + timedelta(days=self.runner.infra.env(self.store.env).retention_days)

    def beat(self, progress: Progress | None, lines: list[str]) -> None:
        at = now()
        self._write(
            lambda j: lifecycle.heartbeat(
                j,
                worker_id=self.runner.worker,
                attempt=self.job.attempt,
                lease_seconds=self.runner.settings.lease_seconds,
                at=at,
                progress=progress,
                log_lines=lines,
            )
        )

    def succeed(self, result: Any) -> Answer:
        at = now()
        value, ref = self.store.store_result(self.job.id, result)
        progress, lines = self.ctx.drain()
        attempt = self.job.attempt
        job = self._write(
            lambda j: lifecycle.succeed(
                j,
                worker_id=self.runner.worker,
                attempt=attempt,
                at=at,
                result=value,
                result_ref=ref,
                progress=progress or self.ctx.last_progress(),
                log_lines=lines,
                expire_at=self._expire_at(),
            )
        )
        if job is None:
            return Answer(True, "lease_lost", self.job.id, detail="finished, but another worker owns the job")
        log.info(
            "job %s succeeded",
            job.id,
            extra={"duration_seconds": job.duration_seconds, "outcome": "succeeded", "status": "succeeded"},
        )
        self.runner.after_finish(self.store.env, job)
        return Answer(True, "succeeded", job.id, job.status.value)

    def cancelled(self) -> Answer:
        at = now()
        _, lines = self.ctx.drain()
        attempt = self.job.attempt
        job = self._write(
            lambda j: lifecycle.cancelled_while_running(
                j,
                worker_id=self.runner.worker,
                attempt=attempt,
                at=at,
                log_lines=lines,
                expire_at=self._expire_at(),
            )
        )
        if job is None:
            return Answer(True, "lease_lost", self.job.id)
        log.info("job %s cancelled while running", job.id)
        self.runner.after_finish(self.store.env, job)
        return Answer(True, "cancelled", job.id, job.status.value)

    def fail(self, exc: BaseException) -> Answer:
        at = now()
        env = self.runner.infra.env(self.store.env)
        error = faults.describe(
            exc, job_type=self.job.type, attempt=self.job.attempt, at=at, secrets=self.ctx.secrets.values()
        )
        delay = exc.delay if isinstance(exc, Retry) else None
        retry_cfg = self.runner.infra.job_class(self.job.job_class).retry
        wait = (
            delay
            if delay is not None
            else backoff_seconds(
                self.job.attempt,
                min_backoff=retry_cfg.min_backoff_seconds,
                max_backoff=retry_cfg.max_backoff_seconds,
                max_doublings=retry_cfg.max_doublings,
            )
        )
        progress, lines = self.ctx.drain()
        attempt = self.job.attempt
        outcome: list[Status] = []

        def change(j: Job) -> dict[str, Any]:
            status, fields = lifecycle.fail(
                j,
                worker_id=self.runner.worker,
                attempt=attempt,
                at=at,
                error=error,
                next_attempt_at=at + timedelta(seconds=wait),
                progress=progress,
                log_lines=lines,
            )
            if status == Status.RETRYING and delay is not None:
                fields["dispatch_count"] = j.dispatch_count + 1
            if status == Status.FAILED:
                fields["expire_at"] = at + timedelta(days=env.retention_days)
            outcome[:] = [status]
            return fields

        job = self._write(change)
        if job is None:
            return Answer(True, "lease_lost", self.job.id)
        log.warning(
            "job %s attempt %d failed (%s: %s); now %s",
            job.id,
            attempt,
            error.type,
            error.message,
            job.status.value,
            exc_info=not isinstance(exc, Retry | Fatal),
            extra={"duration_seconds": job.duration_seconds, "outcome": "failed", "status": job.status.value},
        )
        if outcome[0] == Status.FAILED:
            self.runner.dead_letter(self.store.env, job)
            return Answer(True, "dead_lettered", job.id, job.status.value, detail=error.message)
        if delay is not None:
            self.runner.redispatch(self.store.env, job)
            return Answer(True, "retry_scheduled", job.id, job.status.value, detail=f"next attempt in {delay:g}s")
        return Answer(False, "retry", job.id, job.status.value, retry_after=wait, detail=error.message)

    def hand_back(self) -> Answer:
        at = now()
        attempt = self.job.attempt
        job = self._write(lambda j: lifecycle.hand_back(j, worker_id=self.runner.worker, attempt=attempt, at=at))
        log.warning("job %s handed back: worker shutting down", self.job.id)
        return Answer(
            False,
            "handed_back",
            self.job.id,
            job.status.value if job else None,
            retry_after=1,
            detail="worker shutting down",
        )
