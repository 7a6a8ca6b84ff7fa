"""The lifecycle's decisions as pure functions: given the job as it is now, what to write.

The store applies them as guarded writes (`JobStore.transition`), so each decision is taken on the
document's current state: a duplicate delivery, a late retry or a second worker sees a state that
refuses it and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from jobrelay.errors import TransitionRefused
from jobrelay.models import ErrorInfo, Job, Progress, Status, can_move

MAX_ERRORS_KEPT = 10
MAX_LOG_LINES = 30
MAX_LOG_LINE = 500

Fields = dict[str, Any]


def _require(job: Job, wanted: Status) -> None:
    if not can_move(job.status, wanted):
        raise TransitionRefused(job.id, job.status.value, wanted.value)


def _errors_with(job: Job, error: ErrorInfo) -> list[dict[str, Any]]:
    kept = [*job.errors, error][-MAX_ERRORS_KEPT:]
    return [e.model_dump(mode="python") for e in kept]


def tail(lines: list[str], more: list[str]) -> list[str]:
    """The last lines of a job's log, each cut to a readable length."""
    return [line[:MAX_LOG_LINE] for line in [*lines, *more]][-MAX_LOG_LINES:]


def _output(job: Job, progress: Progress | None, log_lines: list[str] | None) -> Fields:
    """The handler's throttled output to write along with a transition: progress and new log lines."""
    out: Fields = {}
    if progress is not None:
        out["progress"] = progress.model_dump()
    if log_lines:
        out["log_tail"] = tail(job.log_tail, log_lines)
    return out


class Claim(StrEnum):
    """What a delivery finds when it tries to claim its job."""

    CLAIMED = "claimed"  # it runs now
    NOT_RUNNABLE = "final"  # finished, cancelled while queued, or waiting on dependencies: drop the delivery
    BUSY = "busy"  # another worker holds a live lease
    CANCELLED = "cancelled"  # its worker was lost after a cancel was asked: it ends cancelled
    EXHAUSTED = "exhausted"  # its worker was lost on the last attempt: it fails for good
    WAITING = "waiting"  # it waits for the children it spawned: the delivery is a fan-in check
    PARKED = "parked"  # a gate holds it (key slots, paused type, open breaker): parked, no attempt used
    NOT_DUE = "not_due"  # its due time moved later (debounce): dispatched again for then


class Reclaim(StrEnum):
    """What becomes of a running job whose lease expired."""

    CANCELLED = "cancelled"
    FAILED = "failed"
    RETRYING = "retrying"


class Cancel(StrEnum):
    """What a cancel request did."""

    CANCELLED = "cancelled"  # it was waiting: cancelled now
    REQUESTED = "requested"  # it is running: asked to stop
    ALREADY = "already"  # it is running and was asked before


@dataclass(frozen=True)
class ClaimDecision:
    outcome: Claim
    fields: Fields | None = None
    retry_after: float = 0.0
    lost_error: ErrorInfo | None = None


def lost_attempt(job: Job, at: datetime) -> ErrorInfo:
    """The error recorded for an attempt whose worker stopped renewing its lease."""
    return ErrorInfo(
        type="WorkerLost",
        message=f"worker {job.worker_id} stopped renewing its lease (crashed or was killed); the attempt was lost",
        retryable=True,
        fingerprint="worker-lost",
        attempt=job.attempt,
        at=at,
    )


def reclaim(job: Job, *, at: datetime, expire_at: datetime) -> tuple[Reclaim, Fields]:
    """A running job whose lease expired: `cancelled` if that was asked, `failed` when no attempt is
    left, else `retrying`, with the lost attempt recorded. Used by a late delivery and the maintenance pass."""
    lost = lost_attempt(job, at)
    ended: Fields = {"finished_at": at, "lease_expires_at": None, "worker_id": None, "expire_at": expire_at}
    if job.cancel_requested:
        return Reclaim.CANCELLED, {"status": Status.CANCELLED.value, **ended}
    recorded: Fields = {"error": lost.model_dump(mode="python"), "errors": _errors_with(job, lost)}
    if job.attempt >= job.max_attempts:
        return Reclaim.FAILED, {"status": Status.FAILED.value, **recorded, **ended}
    return Reclaim.RETRYING, {
        "status": Status.RETRYING.value,
        **recorded,
        "lease_expires_at": None,
        "worker_id": None,
        "next_attempt_at": at,
    }


def decide_claim(job: Job, *, worker_id: str, lease_seconds: float, at: datetime, expire_at: datetime) -> ClaimDecision:
    """Whether a delivery of `job` may run now, and the write that claims it."""
    if job.status == Status.WAITING:
        return ClaimDecision(Claim.WAITING)
    if job.status.final or job.status in (Status.FAILED,):
        return ClaimDecision(Claim.NOT_RUNNABLE)
    if job.status == Status.QUEUED and job.cancel_requested:
        return ClaimDecision(Claim.NOT_RUNNABLE)
    if job.status == Status.QUEUED and job.waiting_on_deps:
        return ClaimDecision(Claim.NOT_RUNNABLE)  # its dependencies dispatch it when they finish
    recorded: Fields = {}
    lost: ErrorInfo | None = None
    if job.status == Status.RUNNING:
        if job.lease_expires_at is not None and job.lease_expires_at > at:
            return ClaimDecision(Claim.BUSY, retry_after=(job.lease_expires_at - at).total_seconds())
        outcome, fields = reclaim(job, at=at, expire_at=expire_at)
        lost = lost_attempt(job, at)
        if outcome == Reclaim.CANCELLED:
            return ClaimDecision(Claim.CANCELLED, fields, lost_error=lost)
        if outcome == Reclaim.FAILED:
            return ClaimDecision(Claim.EXHAUSTED, fields, lost_error=lost)
        recorded = {"error": fields["error"], "errors": fields["errors"]}
    claim: Fields = {
        "status": Status.RUNNING.value,
        "attempt": job.attempt + 1,
        "worker_id": worker_id,
        "lease_expires_at": at + timedelta(seconds=lease_seconds),
        "started_at": job.started_at or at,
        "attempt_started_at": at,
        **recorded,
    }
    return ClaimDecision(Claim.CLAIMED, claim, lost_error=lost)


def duration(job: Job, at: datetime) -> float | None:
    """Seconds the current attempt has run (what stats and the p95 alert measure)."""
    if job.attempt_started_at is None:
        return None
    return round((at - job.attempt_started_at).total_seconds(), 3)


def owned(job: Job, worker_id: str, attempt: int) -> bool:
    return job.status == Status.RUNNING and job.worker_id == worker_id and job.attempt == attempt


def heartbeat(
    job: Job,
    *,
    worker_id: str,
    attempt: int,
    lease_seconds: float,
    at: datetime,
    progress: Progress | None = None,
    log_lines: list[str] | None = None,
) -> Fields:
    """Extend the lease (and write throttled progress) while this worker still owns the job."""
    if not owned(job, worker_id, attempt):
        raise TransitionRefused(job.id, job.status.value, "running (lease renewal)")
    fields: Fields = {"lease_expires_at": at + timedelta(seconds=lease_seconds)}
    fields.update(_output(job, progress, log_lines))
    return fields


def succeed(
    job: Job,
    *,
    worker_id: str,
    attempt: int,
    at: datetime,
    result: Any,
    result_ref: str | None,
    progress: Progress | None,
    log_lines: list[str],
    expire_at: datetime,
) -> Fields:
    if not owned(job, worker_id, attempt):
        raise TransitionRefused(job.id, job.status.value, Status.SUCCEEDED.value)
    fields: Fields = {
        "status": Status.SUCCEEDED.value,
        "result": result,
        "result_ref": result_ref,
        "finished_at": at,
        "duration_seconds": duration(job, at),
        "lease_expires_at": None,
        "expire_at": expire_at,
    }
    fields.update(_output(job, progress, log_lines))
    return fields


def fail(
    job: Job,
    *,
    worker_id: str,
    attempt: int,
    at: datetime,
    error: ErrorInfo,
    next_attempt_at: datetime | None,
    progress: Progress | None,
    log_lines: list[str],
) -> tuple[Status, Fields]:
    """A failed attempt: `retrying` when it may try again, else `failed` (to be dead-lettered)."""
    if not owned(job, worker_id, attempt):
        raise TransitionRefused(job.id, job.status.value, "retrying/failed")
    again = error.retryable and job.attempt < job.max_attempts and not job.cancel_requested
    status = Status.RETRYING if again else Status.FAILED
    fields: Fields = {
        "status": status.value,
        "error": error.model_dump(mode="python"),
        "errors": _errors_with(job, error),
        "lease_expires_at": None,
        "worker_id": None,
        "next_attempt_at": next_attempt_at if again else None,
        "duration_seconds": duration(job, at),
    }
    if not again:
        fields["finished_at"] = at
    fields.update(_output(job, progress, log_lines))
    return status, fields


def cancelled_while_running(
    job: Job, *, worker_id: str, attempt: int, at: datetime, log_lines: list[str], expire_at: datetime
) -> Fields:
    if not owned(job, worker_id, attempt):
        raise TransitionRefused(job.id, job.status.value, Status.CANCELLED.value)
    fields: Fields = {
        "status": Status.CANCELLED.value,
        "finished_at": at,
        "duration_seconds": duration(job, at),
        "lease_expires_at": None,
        "expire_at": expire_at,
    }
    fields.update(_output(job, None, log_lines))
    return fields


def hand_back(job: Job, *, worker_id: str, attempt: int, at: datetime) -> Fields:
    """A draining worker gives a running job back: it goes back in line without using an attempt."""
    if not owned(job, worker_id, attempt):
        raise TransitionRefused(job.id, job.status.value, "retrying (hand back)")
    return {
        "status": Status.RETRYING.value,
        "attempt": job.attempt - 1,
        "lease_expires_at": None,
        "worker_id": None,
        "next_attempt_at": at,
    }


@dataclass(frozen=True)
class CancelDecision:
    outcome: Cancel
    fields: Fields = field(default_factory=dict)


def decide_cancel(job: Job, *, at: datetime, by: str, expire_at: datetime) -> CancelDecision:
    """Cancel a waiting job (or a fan-out waiting for its children) at once; ask a running one to stop;
    refuse a finished one."""
    if job.status.pending or job.status == Status.WAITING:
        return CancelDecision(
            Cancel.CANCELLED,
            {
                "status": Status.CANCELLED.value,
                "finished_at": at,
                "cancel_requested": True,
                "cancelled_by": by,
                "expire_at": expire_at,
                "waiting_for": None,  # it no longer waits behind a key or a pause
            },
        )
    if job.status == Status.RUNNING:
        if job.cancel_requested:
            return CancelDecision(Cancel.ALREADY)
        return CancelDecision(Cancel.REQUESTED, {"cancel_requested": True, "cancelled_by": by})
    raise TransitionRefused(job.id, job.status.value, Status.CANCELLED.value)


def dead_lettered(job: Job, *, at: datetime, expire_at: datetime) -> Fields:
    _require(job, Status.DEAD_LETTERED)
    return {"status": Status.DEAD_LETTERED.value, "dead_lettered_at": at, "expire_at": expire_at}


def failed_for_children(job: Job) -> bool:
    """A fan-out that failed because too many of its children failed (not its own handler)."""
    return job.spawned is not None and job.error is not None and job.error.type == CHILDREN_FAILED


def redrive(job: Job, *, at: datetime, extra_attempts: int = 1) -> Fields:
    """A dead job goes back in line for at least one more attempt of the same job.

    A fan-out that failed for its children goes back to `waiting` instead: its handler is not run
    again; its failed children are (`jobrelay.fanin.reopen`), and the fan-in decides again.
    """
    if failed_for_children(job):
        _require(job, Status.WAITING)
        return {
            "status": Status.WAITING.value,
            "finished_at": None,
            "expire_at": None,
            "waiting_since": at,
            "redriven_at": at,
            "redrive_count": job.redrive_count + 1,
            "cancel_requested": False,
        }
    _require(job, Status.RETRYING)
    return {
        "status": Status.RETRYING.value,
        "max_attempts": max(job.max_attempts, job.attempt + extra_attempts),
        "finished_at": None,
        "expire_at": None,
        "next_attempt_at": at,
        "redriven_at": at,
        "redrive_count": job.redrive_count + 1,
        "cancel_requested": False,
        "holds_slot": False,  # its concurrency slot was freed at its end: the next claim takes one again
        "waiting_for": None,
    }


def requeued(job: Job, *, waiting_on: list[str], at: datetime) -> Fields:
    """A skipped pipeline step comes back (the steps it waits for run again): queued, waiting on them."""
    _require(job, Status.QUEUED)
    return {
        "status": Status.QUEUED.value,
        "finished_at": None,
        "skip_reason": None,
        "expire_at": None,
        "waiting_on": waiting_on,
        # Nothing is due while it waits; due now (for the maintenance pass) when it waits on nothing.
        "due_at": None if waiting_on else at,
    }


CHILDREN_FAILED = "ChildrenFailed"


def wait_for_children(
    job: Job,
    *,
    worker_id: str,
    attempt: int,
    at: datetime,
    spawned: int,
    allow_failed: int,
    result: Any,
    result_ref: str | None,
    progress: Progress | None,
    log_lines: list[str],
) -> Fields:
    """The handler spawned children and returned: the job waits for them, holding no lease or request."""
    if not owned(job, worker_id, attempt):
        raise TransitionRefused(job.id, job.status.value, Status.WAITING.value)
    fields: Fields = {
        "status": Status.WAITING.value,
        "spawned": spawned,
        "allow_failed_children": allow_failed,
        "waiting_since": at,
        "returned": result,
        "result_ref": result_ref,
        "duration_seconds": duration(job, at),
        "lease_expires_at": None,
        "worker_id": None,
    }
    fields.update(_output(job, progress, log_lines))
    return fields


def skipped(job: Job, *, at: datetime, dep: str, expire_at: datetime) -> Fields:
    _require(job, Status.SKIPPED)
    return {
        "status": Status.SKIPPED.value,
        "finished_at": at,
        "skip_reason": f"dependency {dep} did not succeed",
        "waiting_on": [],
        "expire_at": expire_at,
    }


def park(job: Job, waiting_for: Fields, *, at: datetime, expire_at: datetime) -> Fields:
    """A job a gate holds (jobrelay.gates): it waits with nothing due, so nothing delivers it again
    until what holds it releases it. A running job whose lease expired is first taken back as a lost
    attempt (`retrying`)."""
    fields: Fields = {"waiting_for": waiting_for, "due_at": None, "next_attempt_at": None}
    if job.status == Status.RUNNING:
        outcome, recorded = reclaim(job, at=at, expire_at=expire_at)
        if outcome != Reclaim.RETRYING:
            raise TransitionRefused(job.id, job.status.value, "waiting (lease expired)")
        fields = {**recorded, **fields}
    return fields


def unpark(job: Job, *, at: datetime) -> Fields:
    """What held a parked job let it go: due at once, under its next dispatch number."""
    fields: Fields = {"waiting_for": None, "dispatch_count": job.dispatch_count + 1}
    fields["next_attempt_at" if job.status == Status.RETRYING else "due_at"] = at
    return fields
