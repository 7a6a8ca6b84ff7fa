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


# The only ways out of a final state: a redrive (a dead job runs again, or a fan-out that failed for
# its children waits for them again) and a pipeline's retry (a skipped step comes back).
WAYS_BACK = {
    (Status.DEAD_LETTERED, Status.RETRYING),
    (Status.DEAD_LETTERED, Status.WAITING),
    (Status.SKIPPED, Status.QUEUED),
}


@pytest.mark.parametrize("final", sorted(FINAL))
def test_nothing_leaves_a_final_state_but_a_redrive_or_a_pipeline_retry(final: Status) -> None:
    for wanted in Status:
        assert can_move(final, wanted) == ((final, wanted) in WAYS_BACK)


def test_a_waiting_fan_out_ends_succeeded_failed_or_cancelled_and_only_a_running_job_starts_to_wait() -> None:
    assert {s for s in Status if can_move(Status.WAITING, s)} == {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}
    assert {s for s in Status if can_move(s, Status.WAITING)} == {Status.RUNNING, Status.DEAD_LETTERED}
    assert not Status.WAITING.final and not Status.WAITING.pending  # it waits for children, not for a delivery


def test_a_delivery_of_a_waiting_fan_out_is_a_fan_in_check_not_a_run() -> None:
    d = lifecycle.decide_claim(
        job(status="waiting", spawned=3), worker_id="w", lease_seconds=30, at=AT, expire_at=LATER
    )
    assert d.outcome == lifecycle.Claim.WAITING and d.fields is None


def test_a_handler_that_spawned_waits_holding_no_lease_and_keeps_what_it_returned() -> None:
    running = job(status="running", attempt=1, worker_id="w1", lease_expires_at=AT + timedelta(seconds=30))
    fields = lifecycle.wait_for_children(
        running,
        worker_id="w1",
        attempt=1,
        at=AT,
        spawned=10,
        allow_failed=2,
        result={"spawned": 10},
        result_ref=None,
        progress=None,
        log_lines=[],
    )
    assert fields["status"] == "waiting" and fields["spawned"] == 10 and fields["allow_failed_children"] == 2
    assert fields["returned"] == {"spawned": 10} and fields["lease_expires_at"] is None and fields["worker_id"] is None
    assert fields["waiting_since"] == AT
    with pytest.raises(TransitionRefused):  # only the lease holder's attempt may
        lifecycle.wait_for_children(
            running,
            worker_id="w2",
            attempt=1,
            at=AT,
            spawned=1,
            allow_failed=0,
            result=None,
            result_ref=None,
            progress=None,
            log_lines=[],
        )


def test_cancelling_a_waiting_fan_out_cancels_it_at_once() -> None:
    d = lifecycle.decide_cancel(job(status="waiting", spawned=3), at=AT, by="alice", expire_at=LATER)
    assert d.outcome == lifecycle.Cancel.CANCELLED and d.fields["status"] == "cancelled"


def test_redriving_a_fan_out_that_failed_for_its_children_waits_again_instead_of_running_its_handler() -> None:
    children_failed = ErrorInfo(
        type=lifecycle.CHILDREN_FAILED, message="2 of 7", retryable=False, fingerprint="f", attempt=1, at=AT
    )
    dead = job(status="dead_lettered", attempt=1, spawned=7, error=children_failed.model_dump())
    fields = lifecycle.redrive(dead, at=AT)
    assert fields["status"] == "waiting" and fields["finished_at"] is None and "max_attempts" not in fields
    assert fields["redrive_count"] == 1
    own_failure = job(status="dead_lettered", attempt=1, spawned=7, error=err(False).model_dump())
    assert lifecycle.redrive(own_failure, at=AT)["status"] == "retrying"  # its handler failed: it runs again


def test_a_skipped_step_comes_back_queued_waiting_on_its_unfinished_dependencies() -> None:
    skipped = job(status="skipped", finished_at=AT, skip_reason="dependency x did not succeed", expire_at=LATER)
    fields = lifecycle.requeued(skipped, waiting_on=["dep123456"], at=AT)
    assert fields["status"] == "queued" and fields["waiting_on"] == ["dep123456"] and fields["due_at"] is None
    assert fields["finished_at"] is None and fields["skip_reason"] is None and fields["expire_at"] is None
    assert lifecycle.requeued(skipped, waiting_on=[], at=AT)["due_at"] == AT
    with pytest.raises(TransitionRefused):
        lifecycle.requeued(job(status="cancelled"), waiting_on=[], at=AT)


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
