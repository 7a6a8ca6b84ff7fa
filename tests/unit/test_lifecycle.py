"""The lifecycle's pure decisions: no double success, no step backwards, whatever arrives when."""

from datetime import UTC, datetime, timedelta

import pytest

from jobrelay import lifecycle
from jobrelay.errors import TransitionRefused
from jobrelay.models import FINAL, ErrorInfo, Job, Status, can_move

AT = datetime(2026, 1, 1, tzinfo=UTC)
LATER = AT + timedelta(days=7)


def job(**kw: object) -> Job:
    base = {
        "id": "job123456",
        "env": "dev",
        "type": "echo",
        "class": "A",
        "status": "queued",
        "owner": "u",
        "max_attempts": 3,
        "timeout_seconds": 60,
        "created_at": AT,
    }
    return Job.model_validate({**base, **kw})


def err(retryable: bool = True) -> ErrorInfo:
    return ErrorInfo(type="E", message="boom", retryable=retryable, fingerprint="f", attempt=1, at=AT)


@pytest.mark.parametrize("final", sorted(FINAL))
def test_nothing_leaves_a_final_state_but_a_redrive(final: Status) -> None:
    for wanted in Status:
        allowed = can_move(final, wanted)
        assert allowed == (final == Status.DEAD_LETTERED and wanted == Status.RETRYING)


@pytest.mark.parametrize("status", ["succeeded", "cancelled", "skipped", "dead_lettered", "failed"])
def test_delivery_of_a_finished_job_is_not_run(status: str) -> None:
    d = lifecycle.decide_claim(job(status=status), worker_id="w", lease_seconds=30, at=AT, expire_at=LATER)
    assert d.outcome == "final" and d.fields is None


def test_claim_takes_a_lease_and_counts_the_attempt() -> None:
    d = lifecycle.decide_claim(job(), worker_id="w1", lease_seconds=30, at=AT, expire_at=LATER)
    assert d.outcome == "claimed"
    assert d.fields is not None
    assert d.fields["attempt"] == 1 and d.fields["worker_id"] == "w1"
    assert d.fields["lease_expires_at"] == AT + timedelta(seconds=30)


def test_second_delivery_while_the_lease_holds_is_told_to_come_back() -> None:
    running = job(status="running", attempt=1, worker_id="w1", lease_expires_at=AT + timedelta(seconds=20))
    d = lifecycle.decide_claim(running, worker_id="w2", lease_seconds=30, at=AT, expire_at=LATER)
    assert d.outcome == "busy" and d.retry_after == 20


def test_expired_lease_is_taken_over_with_the_lost_attempt_recorded() -> None:
    running = job(status="running", attempt=1, worker_id="w1", lease_expires_at=AT - timedelta(seconds=1))
    d = lifecycle.decide_claim(running, worker_id="w2", lease_seconds=30, at=AT, expire_at=LATER)
    assert d.outcome == "claimed"
    assert d.fields is not None and d.fields["attempt"] == 2
    assert d.fields["errors"][-1]["type"] == "WorkerLost"


def test_expired_lease_on_the_last_attempt_fails_the_job() -> None:
    running = job(status="running", attempt=3, worker_id="w1", lease_expires_at=AT - timedelta(seconds=1))
    d = lifecycle.decide_claim(running, worker_id="w2", lease_seconds=30, at=AT, expire_at=LATER)
    assert d.outcome == "exhausted" and d.fields is not None and d.fields["status"] == "failed"


def test_only_the_lease_holder_may_finish() -> None:
    running = job(status="running", attempt=1, worker_id="w1")
    with pytest.raises(TransitionRefused):
        lifecycle.succeed(
            running,
            worker_id="w2",
            attempt=1,
            at=AT,
            result=1,
            result_ref=None,
            progress=None,
            log_lines=[],
            expire_at=LATER,
        )
    with pytest.raises(TransitionRefused):
        lifecycle.succeed(
            running,
            worker_id="w1",
            attempt=0,
            at=AT,
            result=1,
            result_ref=None,
            progress=None,
            log_lines=[],
            expire_at=LATER,
        )
    fields = lifecycle.succeed(
        running,
        worker_id="w1",
        attempt=1,
        at=AT,
        result=1,
        result_ref=None,
        progress=None,
        log_lines=[],
        expire_at=LATER,
    )
    assert fields["status"] == "succeeded"


@pytest.mark.parametrize(
    ("attempt", "retryable", "expected"),
    [(1, True, Status.RETRYING), (3, True, Status.FAILED), (1, False, Status.FAILED)],
)
def test_failure_retries_while_attempts_are_left(attempt: int, retryable: bool, expected: Status) -> None:
    running = job(status="running", attempt=attempt, worker_id="w")
    status, fields = lifecycle.fail(
        running,
        worker_id="w",
        attempt=attempt,
        at=AT,
        error=err(retryable),
        next_attempt_at=AT,
        progress=None,
        log_lines=[],
    )
    assert status == expected and fields["status"] == expected.value
    assert fields["errors"][-1]["message"] == "boom"


def test_errors_of_every_attempt_are_kept() -> None:
    j = job(status="running", attempt=2, worker_id="w", errors=[err().model_dump()])
    _, fields = lifecycle.fail(
        j, worker_id="w", attempt=2, at=AT, error=err(), next_attempt_at=AT, progress=None, log_lines=[]
    )
    assert len(fields["errors"]) == 2


@pytest.mark.parametrize(
    ("status", "outcome"), [("queued", "cancelled"), ("retrying", "cancelled"), ("running", "requested")]
)
def test_cancel_stops_waiting_jobs_now_and_asks_running_ones(status: str, outcome: str) -> None:
    d = lifecycle.decide_cancel(job(status=status), at=AT, by="u", expire_at=LATER)
    assert d.outcome == outcome


@pytest.mark.parametrize("status", ["succeeded", "dead_lettered", "skipped", "cancelled"])
def test_finished_jobs_cannot_be_cancelled(status: str) -> None:
    with pytest.raises(TransitionRefused):
        lifecycle.decide_cancel(job(status=status), at=AT, by="u", expire_at=LATER)


def test_redrive_gives_a_dead_job_another_attempt() -> None:
    dead = job(status="dead_lettered", attempt=3, max_attempts=3)
    fields = lifecycle.redrive(dead, at=AT)
    assert fields["status"] == "retrying" and fields["max_attempts"] == 4 and fields["redrive_count"] == 1
    with pytest.raises(TransitionRefused):
        lifecycle.redrive(job(status="succeeded"), at=AT)


def test_hand_back_returns_the_attempt() -> None:
    running = job(status="running", attempt=2, worker_id="w")
    fields = lifecycle.hand_back(running, worker_id="w", attempt=2, at=AT)
    assert fields["status"] == "retrying" and fields["attempt"] == 1


def test_log_tail_keeps_the_last_lines_cut_short() -> None:
    lines = lifecycle.tail([f"old {i}" for i in range(30)], ["x" * 1000])
    assert len(lines) == lifecycle.MAX_LOG_LINES and lines[-1] == "x" * lifecycle.MAX_LOG_LINE


@pytest.mark.parametrize(
    ("fields", "outcome", "status"),
    [
        ({"cancel_requested": True}, "cancelled", "cancelled"),
        ({"attempt": 3}, "failed", "failed"),
        ({}, "retrying", "retrying"),
    ],
)
def test_reclaiming_an_expired_lease(fields: dict, outcome: str, status: str) -> None:
    running = job(**{"status": "running", "attempt": 1, "worker_id": "gone", **fields})
    decided, written = lifecycle.reclaim(running, at=AT, expire_at=LATER)
    assert decided == outcome and written["status"] == status
    assert written["lease_expires_at"] is None and written["worker_id"] is None
    if outcome != "retrying":
        assert written["expire_at"] == LATER and written["finished_at"] == AT  # clean-up will find it
    if outcome != "cancelled":
        assert written["errors"][-1]["type"] == "WorkerLost"
