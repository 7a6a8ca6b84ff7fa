"""One running attempt of a job: its lease and every guarded write it makes.

The runner's delivery thread owns an `Attempt` while the handler runs: it renews the lease with the
handler's throttled output, notices a cancel request in the document it re-reads on a conflict, and
ends the attempt (succeeded, cancelled, failed or handed back). A write refused because the job is no
longer ours (another worker reclaimed it) marks the attempt `lost`. Each end is handed to the flow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from jobrelay import faults, lifecycle
from jobrelay.answers import Answer, Delivery
from jobrelay.backoff import backoff_seconds
from jobrelay.context import Output
from jobrelay.errors import Fatal, Retry, TransitionRefused
from jobrelay.flow import Flow
from jobrelay.models import Job, Progress, Status, now
from jobrelay.settings import Infra
from jobrelay.store import Change, JobStore

log = logging.getLogger("jobrelay.runtime")


class Attempt:
    """The lease of one running attempt and every guarded write it makes."""

    def __init__(
        self,
        store: JobStore,
        job: Job,
        update_time: datetime,
        *,
        worker: str,
        lease_seconds: float,
        infra: Infra,
        flow: Flow,
        cancel: threading.Event,
        output: Output,
        secrets: Mapping[str, str],
    ) -> None:
        self.store = store
        self.worker, self.lease_seconds, self.infra, self.flow = worker, lease_seconds, infra, flow
        self.job, self.update_time = job, update_time
        self.cancel, self.output, self.secrets = cancel, output, secrets
        self.lost = False
        self.cancel_requested = job.cancel_requested

    @property
    def env(self) -> str:
        return self.store.env

    def _write(self, change: Callable[[Job], dict[str, Any]]) -> Job | None:
        """A guarded write of this attempt; None (and `lost`) when the job is no longer ours."""

        def decide(current: Job) -> Change[None]:
            if current.cancel_requested and not self.cancel_requested:
                self.cancel_requested = True
                self.cancel.set()
                log.info("job %s: cancel requested; asking the handler to stop", current.id)
            return Change(None, change(current))

        try:
            written = self.store.transition(self.job.id, decide, base=(self.update_time, self.job))
        except TransitionRefused as exc:
            self.lost = True
            log.warning("job %s: %s", self.job.id, exc)
            return None
        assert written.update_time is not None
        self.job, self.update_time = written.job, written.update_time
        return self.job

    def _expire_at(self) -> datetime:
        return now() + timedelta(days=self.infra.env(self.env).retention_days)

    def beat(self, progress: Progress | None, lines: list[str]) -> None:
        at = now()
        self._write(
            lambda j: lifecycle.heartbeat(
                j,
                worker_id=self.worker,
                attempt=self.job.attempt,
                lease_seconds=self.lease_seconds,
                at=at,
                progress=progress,
                log_lines=lines,
            )
        )

    def succeed(self, result: Any) -> Answer:
        at = now()
        value, ref = self.store.store_result(self.job.id, result)
        progress, lines = self.output.drain()
        attempt = self.job.attempt
        job = self._write(
            lambda j: lifecycle.succeed(
                j,
                worker_id=self.worker,
                attempt=attempt,
                at=at,
                result=value,
                result_ref=ref,
                progress=progress or self.output.last_progress(),
                log_lines=lines,
                expire_at=self._expire_at(),
            )
        )
        if job is None:
            detail = "finished, but another worker owns the job"
            return Answer(True, Delivery.LEASE_LOST, self.job.id, detail=detail)
        log.info(
            "job %s succeeded",
            job.id,
            extra={"duration_seconds": job.duration_seconds, "outcome": "succeeded", "status": "succeeded"},
        )
        self.flow.attempted(self.env, job, succeeded=True)
        self.flow.ended(self.env, job)
        return Answer(True, Delivery.SUCCEEDED, job.id, job.status.value)

    def wait_for_children(self, result: Any, spawned: int, allow_failed: int) -> Answer:
        """The handler spawned children and returned: the job waits for them (the fan-in ends it)."""
        at = now()
        value, ref = self.store.store_result(self.job.id, result)
        progress, lines = self.output.drain()
        attempt = self.job.attempt
        job = self._write(
            lambda j: lifecycle.wait_for_children(
                j,
                worker_id=self.worker,
                attempt=attempt,
                at=at,
                spawned=spawned,
                allow_failed=allow_failed,
                result=value,
                result_ref=ref,
                progress=progress or self.output.last_progress(),
                log_lines=lines,
            )
        )
        if job is None:
            return Answer(True, Delivery.LEASE_LOST, self.job.id, detail="spawned, but another worker owns the job")
        log.info("job %s waits for its %d children", job.id, spawned)
        self.flow.waiting(self.env, job)
        return Answer(True, Delivery.WAITING, job.id, job.status.value)

    def cancelled(self) -> Answer:
        at = now()
        _, lines = self.output.drain()
        attempt = self.job.attempt
        job = self._write(
            lambda j: lifecycle.cancelled_while_running(
                j,
                worker_id=self.worker,
                attempt=attempt,
                at=at,
                log_lines=lines,
                expire_at=self._expire_at(),
            )
        )
        if job is None:
            return Answer(True, Delivery.LEASE_LOST, self.job.id)
        log.info("job %s cancelled while running", job.id)
        self.flow.ended(self.env, job)
        return Answer(True, Delivery.CANCELLED, job.id, job.status.value)

    def fail(self, exc: BaseException) -> Answer:
        at = now()
        error = faults.describe(
            exc, job_type=self.job.type, attempt=self.job.attempt, at=at, secrets=self.secrets.values()
        )
        delay = exc.delay if isinstance(exc, Retry) else None
        retry_cfg = self.infra.job_class(self.job.job_class).retry
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
        progress, lines = self.output.drain()
        attempt = self.job.attempt
        retention = timedelta(days=self.infra.env(self.env).retention_days)

        def change(j: Job) -> dict[str, Any]:
            status, fields = lifecycle.fail(
                j,
                worker_id=self.worker,
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
                fields["expire_at"] = at + retention
            return fields

        job = self._write(change)
        if job is None:
            return Answer(True, Delivery.LEASE_LOST, self.job.id)
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
        self.flow.attempted(self.env, job, succeeded=False)
        if job.status == Status.FAILED:
            self.flow.ended(self.env, job)
            return Answer(True, Delivery.DEAD_LETTERED, job.id, job.status.value, detail=error.message)
        if delay is not None:
            self.flow.redispatch(self.env, job)
            detail = f"next attempt in {delay:g}s"
            return Answer(True, Delivery.RETRY_SCHEDULED, job.id, job.status.value, detail=detail)
        return Answer(False, Delivery.RETRY, job.id, job.status.value, retry_after=wait, detail=error.message)

    def hand_back(self) -> Answer:
        at = now()
        attempt = self.job.attempt
        job = self._write(lambda j: lifecycle.hand_back(j, worker_id=self.worker, attempt=attempt, at=at))
        log.warning("job %s handed back: worker shutting down", self.job.id)
        return Answer(
            False,
            Delivery.HANDED_BACK,
            self.job.id,
            job.status.value if job else None,
            retry_after=1,
            detail="worker shutting down",
        )
