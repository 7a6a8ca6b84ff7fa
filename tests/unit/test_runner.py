"""The runner on in-memory fakes: claims, ends, timeout, drain, lost leases and cancels, in milliseconds.

The same behaviours run again through the whole local stack in tests/e2e (test_failures, test_pool,
test_maintenance); these pin the runner's own decisions without an emulator or a wall-clock wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import BaseModel, ConfigDict

from jobrelay.answers import Delivery
from jobrelay.context import JobContext
from jobrelay.errors import Fatal, Retry
from jobrelay.infra_files import load_infra
from jobrelay.models import Status, now
from jobrelay.registry import Registry
from jobrelay.runtime import Runner, RunnerSettings
from tests.fakes import FakeJobStore, RecordingFlow, job_doc

INFRA = load_infra()


class Steps(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str = "ok"
    seconds: float = 0.0


started = threading.Event()


def handler(payload: Steps, ctx: JobContext) -> dict[str, object]:
    started.set()
    if payload.mode == "fatal":
        raise Fatal("broken for good")
    if payload.mode == "retry_later":
        raise Retry("later", delay=30)
    if payload.mode == "boom":
        raise RuntimeError("transient")
    if payload.mode == "sleep":
        ctx.progress(1, 2, "half way")
        ctx.log("sleeping")
        ctx.wait(payload.seconds)
        ctx.check_cancelled()
    if payload.mode == "ignore_cancel":
        time.sleep(payload.seconds)
    return {"mode": payload.mode}


REGISTRY = Registry()
REGISTRY.job_type("steps", payload=Steps)(handler)


@pytest.fixture
def store() -> FakeJobStore:
    return FakeJobStore("dev")


@pytest.fixture
def flow() -> RecordingFlow:
    return RecordingFlow()


@pytest.fixture
def runner(store: FakeJobStore, flow: RecordingFlow) -> Iterator[Runner]:
    started.clear()
    r = Runner(
        infra=INFRA,
        registry=REGISTRY,
        stores={"dev": store},
        flow=flow,  # type: ignore[arg-type]
        settings=RunnerSettings(lease_seconds=3.0, progress_interval=0.01, drain_seconds=0.05),
        worker="w-1",
    )
    yield r
    r.stopping.set()


def submit(store: FakeJobStore, mode: str = "ok", seconds: float = 0.0, **fields: object) -> str:
    doc = job_doc(type="steps", payload={"mode": mode, "seconds": seconds}, **fields)
    store.create(doc)
    return str(doc["id"])


def test_a_success_is_written_once_and_handed_to_the_flow(runner: Runner, store: FakeJobStore, flow: RecordingFlow):
    job_id = submit(store)
    answer = runner.deliver("dev", job_id)
    assert (answer.ack, answer.outcome) == (True, Delivery.SUCCEEDED)
    job = store.get(job_id)
    assert job is not None and job.status == Status.SUCCEEDED and job.result == {"mode": "ok"} and job.attempt == 1
    assert flow.statuses() == [Status.SUCCEEDED]
    assert store.writes == 3  # create, claim, finish: the per-job budget


def test_a_second_delivery_of_a_finished_job_runs_nothing(runner: Runner, store: FakeJobStore, flow: RecordingFlow):
    job_id = submit(store)
    runner.deliver("dev", job_id)
    writes = store.writes
    answer = runner.deliver("dev", job_id)
    assert (answer.ack, answer.outcome, answer.status) == (True, Delivery.DUPLICATE, "succeeded")
    assert store.writes == writes and len(flow.ended_jobs) == 1


def test_a_retryable_error_asks_for_redelivery_with_the_class_backoff(runner: Runner, store: FakeJobStore):
    job_id = submit(store, "boom")
    answer = runner.deliver("dev", job_id)
    assert (answer.ack, answer.outcome) == (False, Delivery.RETRY)
    assert answer.retry_after == INFRA.job_class("A").retry.min_backoff_seconds
    job = store.get(job_id)
    assert job is not None and job.status == Status.RETRYING and job.error is not None
    assert job.error.type == "RuntimeError" and job.error.retryable


def test_fatal_fails_for_good_and_the_flow_dead_letters(runner: Runner, store: FakeJobStore, flow: RecordingFlow):
    job_id = submit(store, "fatal")
    answer = runner.deliver("dev", job_id)
    assert (answer.ack, answer.outcome) == (True, Delivery.DEAD_LETTERED)
    assert flow.statuses() == [Status.FAILED]
    job = store.get(job_id)
    assert job is not None and job.status == Status.FAILED and job.expire_at is not None


def test_the_last_attempt_fails_for_good(runner: Runner, store: FakeJobStore, flow: RecordingFlow):
    job_id = submit(store, "boom", max_attempts=1)
    assert runner.deliver("dev", job_id).outcome == Delivery.DEAD_LETTERED
    assert flow.statuses() == [Status.FAILED]


def test_retry_with_a_delay_is_redispatched_under_a_new_number(
    runner: Runner, store: FakeJobStore, flow: RecordingFlow
):
    job_id = submit(store, "retry_later")
    answer = runner.deliver("dev", job_id)
    assert (answer.ack, answer.outcome) == (True, Delivery.RETRY_SCHEDULED)
    [(env, job)] = flow.redispatched
    assert env == "dev" and job.status == Status.RETRYING and job.dispatch_count == 1
    assert job.next_attempt_at is not None and job.next_attempt_at > now() + timedelta(seconds=25)


def test_a_handler_past_its_timeout_fails_the_attempt(runner: Runner, store: FakeJobStore):
    job_id = submit(store, "ignore_cancel", seconds=1.5, timeout_seconds=1)
    answer = runner.deliver("dev", job_id)
    assert (answer.ack, answer.outcome) == (False, Delivery.RETRY)
    job = store.get(job_id)
    assert job is not None and job.error is not None and job.error.type == "JobTimeout"


def test_progress_and_log_lines_reach_the_document_with_the_end(runner: Runner, store: FakeJobStore):
    job_id = submit(store, "sleep", seconds=0.05)
    runner.deliver("dev", job_id)
    job = store.get(job_id)
    assert job is not None and job.progress is not None and job.progress.message == "half way"
    assert job.log_tail == ["sleeping"]


def test_a_cancel_asked_while_running_stops_the_handler(runner: Runner, store: FakeJobStore, flow: RecordingFlow):
    job_id = submit(store, "sleep", seconds=5)
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.setdefault("answer", runner.deliver("dev", job_id)))
    t.start()
    assert started.wait(2)
    store.update(job_id, {"cancel_requested": True})
    t.join(5)
    answer = box["answer"]
    assert getattr(answer, "outcome", None) == Delivery.CANCELLED
    assert flow.statuses() == [Status.CANCELLED]


def test_a_draining_worker_hands_the_job_back_without_using_an_attempt(runner: Runner, store: FakeJobStore):
    job_id = submit(store, "ignore_cancel", seconds=1.0)
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.setdefault("answer", runner.deliver("dev", job_id)))
    t.start()
    assert started.wait(2)
    runner.begin_shutdown()
    t.join(5)
    answer = box["answer"]
    assert getattr(answer, "outcome", None) == Delivery.HANDED_BACK and getattr(answer, "ack", True) is False
    job = store.get(job_id)
    assert job is not None and job.status == Status.RETRYING and job.attempt == 0
    assert runner.deliver("dev", job_id).outcome == Delivery.DRAINING


def test_a_worker_that_lost_its_lease_abandons_the_attempt(runner: Runner, store: FakeJobStore, flow: RecordingFlow):
    job_id = submit(store, "sleep", seconds=5)
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.setdefault("answer", runner.deliver("dev", job_id)))
    t.start()
    assert started.wait(2)
    store.update(job_id, {"worker_id": "w-2", "attempt": 2})  # another worker reclaimed it
    t.join(5)
    assert getattr(box["answer"], "outcome", None) == Delivery.LEASE_LOST
    assert flow.ended_jobs == []


def test_a_live_lease_of_another_worker_answers_busy(runner: Runner, store: FakeJobStore):
    job_id = submit(store, status="running", attempt=1, worker_id="w-2", lease_expires_at=now() + timedelta(seconds=20))
    answer = runner.deliver("dev", job_id)
    assert (answer.ack, answer.outcome) == (False, Delivery.BUSY) and answer.outcome.come_back_later
    assert answer.retry_after is not None and 15 < answer.retry_after <= 20


def test_an_expired_lease_is_run_again_with_the_lost_attempt_recorded(runner: Runner, store: FakeJobStore):
    job_id = submit(
        store, status="running", attempt=1, worker_id="w-dead", lease_expires_at=now() - timedelta(seconds=1)
    )
    assert runner.deliver("dev", job_id).outcome == Delivery.SUCCEEDED
    job = store.get(job_id)
    assert job is not None and job.attempt == 2 and [e.type for e in job.errors] == ["WorkerLost"]


def test_an_expired_lease_on_the_last_attempt_fails_for_good(runner: Runner, store: FakeJobStore, flow: RecordingFlow):
    job_id = submit(
        store,
        status="running",
        attempt=3,
        max_attempts=3,
        worker_id="w-dead",
        lease_expires_at=now() - timedelta(seconds=1),
    )
    assert runner.deliver("dev", job_id).outcome == Delivery.DEAD_LETTERED
    assert flow.statuses() == [Status.FAILED]


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({"status": "cancelled"}, Delivery.DUPLICATE),
        ({"cancel_requested": True}, Delivery.DUPLICATE),
        ({"waiting_on": ["job-000009"]}, Delivery.DUPLICATE),
    ],
)
def test_jobs_that_may_not_run_are_not_run(runner: Runner, store: FakeJobStore, fields: dict[str, object], outcome):
    job_id = submit(store, **fields)
    writes = store.writes
    assert runner.deliver("dev", job_id).outcome == outcome
    assert store.writes == writes and not started.is_set()


def test_deliveries_for_unknown_jobs_and_envs(runner: Runner):
    assert runner.deliver("dev", "job-404404").outcome == Delivery.MISSING
    assert runner.deliver("prod", "job-404404").outcome == Delivery.WRONG_ENV


def test_a_young_task_that_finds_no_document_asks_to_come_back_and_an_old_one_is_dropped(
    runner: Runner, store: FakeJobStore
):
    young = runner.deliver("dev", "job-404404", retries=0)
    assert (young.ack, young.outcome, young.outcome.come_back_later) == (False, Delivery.NOT_YET, True)
    old = runner.deliver("dev", "job-404404", retries=runner.settings.young_retries)
    assert (old.ack, old.outcome) == (True, Delivery.MISSING)
    assert store.writes == 0


def test_a_task_that_overtook_its_document_runs_once_the_document_is_there(runner: Runner, store: FakeJobStore):
    doc = job_doc(type="steps", payload={"mode": "ok"})
    reads = 0
    real_read = store.read

    def read(job_id: str):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        if reads == 1:  # the submit commits the document between the worker's two reads
            store.create(doc)
            return None
        return real_read(job_id)

    store.read = read  # type: ignore[method-assign]
    answer = runner.deliver("dev", str(doc["id"]), retries=0)
    assert (answer.ack, answer.outcome) == (True, Delivery.SUCCEEDED) and reads == 2


def test_handler_threads_are_reused_and_a_stuck_handler_holds_no_other_back() -> None:
    from jobrelay.runtime import HandlerThreads

    pool = HandlerThreads(idle_seconds=5)
    ran: list[str] = []
    done = threading.Event()

    def one() -> None:
        ran.append(threading.current_thread().name + str(threading.get_ident()))
        done.set()

    for _ in range(3):  # one after another: the same thread each time
        done.clear()
        pool.run(one)
        assert done.wait(5)
        time.sleep(0.01)  # let it go back to idle
    assert len(set(ran)) == 1
    release = threading.Event()
    pool.run(release.wait)  # stuck until released
    done.clear()
    pool.run(one)  # still runs, on a new thread
    assert done.wait(5) and len(set(ran)) == 2
    release.set()
