"""Fan-out and fan-in on in-memory fakes: the fan-in decision, its check, the bucketed check requests,
the runner's `waiting`, and the spawner's children (ids, checks, no duplicates). The same behaviours
run on the local stack in tests/e2e/test_pipelines.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from pydantic import BaseModel, ConfigDict

from jobrelay import fanin
from jobrelay.answers import Delivery
from jobrelay.context import JobContext
from jobrelay.errors import Fatal
from jobrelay.fanin import ChildEnded, Children
from jobrelay.fanout import MAX_CHILDREN, Spawner, child_id
from jobrelay.infra_files import load_infra
from jobrelay.models import Job, Status
from jobrelay.registry import Registry
from jobrelay.runtime import Runner, RunnerSettings
from tests.fakes import FakeJobStore, RecordingFlow, fake_deployment, job_doc

INFRA = load_infra()
AT = datetime(2026, 1, 1, tzinfo=UTC)
LATER = AT + timedelta(days=7)


def waiting(**fields: Any) -> Job:
    return Job.model_validate(
        job_doc("parent-0001", status="waiting", spawned=10, attempt=1, returned={"spawned": 10}, **fields)
    )


@pytest.mark.parametrize(
    ("children", "allowed", "status"),
    [
        (Children(total=10, unfinished=0, succeeded=10), 0, "succeeded"),
        (Children(total=10, unfinished=0, succeeded=8), 2, "succeeded"),
        (Children(total=10, unfinished=0, succeeded=8), 1, "failed"),
        (Children(total=10, unfinished=0, succeeded=0), 0, "failed"),
        (Children(total=0, unfinished=0, succeeded=0), 0, "succeeded"),  # spawned nothing after all
    ],
)
def test_once_no_child_is_left_the_fan_out_ends_by_its_allowance(children: Children, allowed: int, status: str) -> None:
    fields = fanin.decide(waiting(allow_failed_children=allowed), children, at=AT, expire_at=LATER)
    assert fields is not None and fields["status"] == status
    assert fields["result"] == {
        "returned": {"spawned": 10},
        "children": {
            "parent_id": "parent-0001",
            "total": children.total,
            "succeeded": children.succeeded,
            "failed": children.failed,
        },
    }
    if status == "failed":
        assert fields["error"]["type"] == "ChildrenFailed" and not fields["error"]["retryable"]
        assert f"{children.failed} of {children.total} children did not succeed" in fields["error"]["message"]


def test_nothing_is_decided_while_a_child_runs_or_once_the_job_no_longer_waits() -> None:
    assert fanin.decide(waiting(), Children(10, 1, 9), at=AT, expire_at=LATER) is None
    ended = Job.model_validate(job_doc("parent-0001", status="succeeded", spawned=10))
    assert fanin.decide(ended, Children(10, 0, 10), at=AT, expire_at=LATER) is None


def add_children(store: FakeJobStore, parent: str, statuses: list[str]) -> None:
    for i, status in enumerate(statuses):
        store.create(job_doc(child_id(parent, i), status=status, parent_id=parent, child_index=i))


def test_results_walk_a_fan_outs_children_by_id_in_index_order_skipping_the_gone() -> None:
    store = FakeJobStore("dev")
    store.create(job_doc("parent-0001", status="succeeded", spawned=fanin.CHILDREN_PAGE + 5))
    statuses = ["succeeded", "failed", "cancelled"] * (fanin.CHILDREN_PAGE // 3 + 2)
    add_children(store, "parent-0001", statuses[: fanin.CHILDREN_PAGE + 5])
    del store.docs[child_id("parent-0001", 7)]  # past retention
    walked = list(fanin.JobResults(store).children("parent-0001"))  # type: ignore[arg-type]
    expected = [i for i in range(fanin.CHILDREN_PAGE + 5) if i != 7]
    assert [job_id for job_id, _, _ in walked] == [child_id("parent-0001", i) for i in expected]
    assert [status for _, status, _ in walked] == [statuses[i] for i in expected]
    with pytest.raises(KeyError, match="no longer exists"):
        next(fanin.JobResults(store).children("gone-00001"))  # type: ignore[arg-type]


def test_a_check_counts_children_and_ends_the_parent_once() -> None:
    store = FakeJobStore("dev")
    store.create(job_doc("parent-0001", status="waiting", spawned=3, attempt=1))
    add_children(store, "parent-0001", ["succeeded", "running", "succeeded"])
    parent = store.get("parent-0001")
    assert parent is not None
    written = fanin.check(store, parent, 7)
    assert written is not None and not written.wrote and store.counts == 1  # one count while a child runs
    store.update(child_id("parent-0001", 1), {"status": "dead_lettered"})
    writes = store.writes
    written = fanin.check(store, parent, 7)
    assert written is not None and written.wrote and written.job.status == Status.FAILED
    assert store.writes == writes + 1  # one guarded write ends it
    again = fanin.check(store, written.job, 7)
    assert again is None  # it no longer waits: a late check changes nothing


def test_a_check_of_a_parent_that_is_not_waiting_reads_nothing() -> None:
    store = FakeJobStore("dev")
    store.create(job_doc("parent-0001", status="running", spawned=None))
    parent = store.get("parent-0001")
    assert parent is not None and fanin.check(store, parent, 7) is None and store.counts == 0


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_children_ending_in_one_bucket_ask_for_one_check_scheduled_after_it() -> None:
    asked: list[tuple[str, str, int, datetime]] = []
    clock = Clock()
    hook = ChildEnded(lambda env, parent, bucket, when: asked.append((env, parent, bucket, when)), clock)
    child = Job.model_validate(job_doc("child-0001", status="succeeded", parent_id="parent-0001"))
    for _ in range(1000):
        hook("dev", child)
        clock.t += 0.0009  # 1,000 ends within 0.9 s
    assert len(asked) == 1
    env, parent, bucket, when = asked[0]
    assert (env, parent, bucket) == ("dev", "parent-0001", 1000)
    assert when.timestamp() == pytest.approx(1001 + fanin.CHECK_DELAY)  # after every end of its bucket
    clock.t = 1001.5
    hook("dev", child)
    other = Job.model_validate(job_doc("child-0002", status="succeeded", parent_id="parent-0002"))
    hook("dev", other)
    assert [(p, b) for _, p, b, _ in asked] == [("parent-0001", 1000), ("parent-0001", 1001), ("parent-0002", 1001)]
    hook("dev", Job.model_validate(job_doc("plain-0001", status="succeeded")))  # not a child: nothing
    assert len(asked) == 3


def test_a_check_request_that_failed_is_asked_again_by_the_next_child_end() -> None:
    calls: list[int] = []

    def schedule(env: str, parent: str, bucket: int, when: datetime) -> None:
        calls.append(bucket)
        if len(calls) == 1:
            raise gexc.ServiceUnavailable("tasks down")

    hook = ChildEnded(schedule, Clock())
    child = Job.model_validate(job_doc("child-0001", status="succeeded", parent_id="parent-0001"))
    hook("dev", child)
    hook("dev", child)
    hook("dev", child)
    assert calls == [1000, 1000]


class Fan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int


def fan_handler(payload: Fan, ctx: JobContext) -> dict[str, int]:
    ids = ctx.spawn([{"type": "echo", "payload": {"message": "c"}}] * payload.count, allow_failed=1)
    return {"spawned": len(ids)}


REGISTRY = Registry()
REGISTRY.job_type("fan", payload=Fan)(fan_handler)


def test_a_handler_that_spawned_leaves_the_job_waiting_and_the_flow_checks_it_at_once() -> None:
    store, flow = FakeJobStore("dev"), RecordingFlow()
    spawned: list[tuple[str, int, int]] = []

    def spawner(parent: Job, specs: Any, start: int, cancelled: Any = None) -> list[str]:
        spawned.append((parent.id, len(specs), start))
        return [child_id(parent.id, start + i) for i in range(len(specs))]

    runner = Runner(
        infra=INFRA,
        registry=REGISTRY,
        stores={"dev": store},
        flow=flow,  # type: ignore[arg-type]
        settings=RunnerSettings(lease_seconds=3.0, progress_interval=0.01),
        worker="w-1",
        spawner=spawner,
    )
    store.create(job_doc("fan-000001", type="fan", payload={"count": 4}))
    answer = runner.deliver("dev", "fan-000001")
    assert (answer.ack, answer.outcome) == (True, Delivery.WAITING)
    job = store.get("fan-000001")
    assert job is not None and job.status == Status.WAITING and job.spawned == 4 and job.allow_failed_children == 1
    assert job.returned == {"spawned": 4} and job.lease_expires_at is None
    assert spawned == [("fan-000001", 4, 0)]
    assert [what for what, _, _ in flow.moved] == ["waiting"] and flow.ended_jobs == []
    assert store.writes == 3  # create, claim, waiting: the same as a plain job's create, claim, finish
    again = runner.deliver("dev", "fan-000001")  # a late delivery of its own task: a fan-in check
    assert again.outcome == Delivery.FAN_IN and [w for w, _, _ in flow.moved] == ["waiting", "fan_in"]
    check = runner.deliver("dev", "fan-000001", check=True)
    assert check.outcome == Delivery.FAN_IN and [w for w, _, _ in flow.moved][-1] == "fan_in"
    store.create(job_doc("plain-00001", status="running"))
    not_waiting = runner.deliver("dev", "plain-00001", check=True)  # its children are counted when it waits
    assert not_waiting.ack and not_waiting.outcome == Delivery.FAN_IN and len(flow.moved) == 3


@pytest.fixture
def deployment() -> Any:
    return fake_deployment()


def parent_job(deployment: Any, **authority: Any) -> Job:
    doc = job_doc("parent-0001", status="running", attempt=1, trace_id="t" * 32, authority=authority or None)
    deployment.stores["dev"].create(doc)
    return Job.model_validate(doc)


def test_spawned_children_are_ordinary_jobs_of_the_owner_dispatched_once_even_when_spawned_again(
    deployment: Any,
) -> None:
    parent = parent_job(deployment)
    spawn = Spawner(lambda: deployment.service)
    specs = [{"type": "echo", "payload": {"message": str(i)}} for i in range(3)]
    ids = spawn(parent, specs, 0)
    assert ids == [child_id("parent-0001", i) for i in range(3)] and len(set(ids)) == 3
    store, dispatcher = deployment.stores["dev"], deployment.dispatchers["dev"]
    children = [store.get(i) for i in ids]
    assert all(c is not None and c.owner == "alice" and c.parent_id == "parent-0001" for c in children)
    assert [c.child_index for c in children if c] == [0, 1, 2] and all(c and c.trace_id == "t" * 32 for c in children)
    assert sorted(j for j, _, _ in dispatcher.dispatched) == sorted(ids)
    writes = store.writes
    assert spawn(parent, specs, 0) == ids  # the next attempt spawns them again: found, not made twice
    assert store.writes == writes and len(store.docs) == 4
    more = spawn(parent, specs[:1], 3)
    assert more == [child_id("parent-0001", 3)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "echo", "payload": {}}, "children[1]: invalid payload for echo: children[1].payload.message"),
        ({"type": "nope"}, "children[1]: unknown job type 'nope'"),
        ({"type": "report", "payload": {"collection": "users"}}, "children[1]: user alice may not submit 'report'"),
        ({"type": "echo", "payload": {"message": "x"}, "depends_on": ["abcdef123456"]}, "children[1].depends_on"),
        ({"type": "echo", "payload": {"message": "x"}, "idempotency_key": "k"}, "children[1].idempotency_key"),
    ],
)
def test_a_child_the_owner_could_not_submit_stops_the_spawn_for_good_and_writes_nothing(
    deployment: Any, spec: dict[str, Any], message: str
) -> None:
    parent = parent_job(deployment)
    with pytest.raises(Fatal, match=message.replace("[", r"\[").replace("]", r"\]")):
        Spawner(lambda: deployment.service)(parent, [{"type": "echo", "payload": {"message": "ok"}}, spec], 0)
    assert len(deployment.stores["dev"].docs) == 1


def test_children_are_checked_with_the_claims_the_parent_was_submitted_with(deployment: Any) -> None:
    parent = parent_job(deployment, admin=False, roles=["reporter"])
    ids = Spawner(lambda: deployment.service)(parent, [{"type": "report", "payload": {"collection": "users"}}], 0)
    assert len(ids) == 1


def test_no_job_spawns_more_than_the_documented_number_of_children(deployment: Any) -> None:
    parent = parent_job(deployment)
    with pytest.raises(Fatal, match=f"at most {MAX_CHILDREN} children"):
        Spawner(lambda: deployment.service)(
            parent, [{"type": "echo", "payload": {"message": "x"}}] * 2, MAX_CHILDREN - 1
        )


def test_a_fake_context_records_spawns_and_gives_the_results_of_the_steps_it_comes_after() -> None:
    from jobrelay.testing import FakeContext, run_handler

    ctx = FakeContext(results={"export": {"tenants": ["a", "b"]}})
    assert run_handler(fan_handler, Fan(count=2), ctx=ctx) == {"spawned": 2}
    assert ctx.spawned_specs == [{"type": "echo", "payload": {"message": "c"}}] * 2 and ctx.allow_failed == 1
    assert ctx.results["export"] == {"tenants": ["a", "b"]} and list(ctx.results) == ["export"]
    with pytest.raises(KeyError, match="this step comes after export"):
        ctx.results["mail"]
    with pytest.raises(KeyError, match="comes after none"):
        FakeContext().results["export"]


def test_checks_of_one_parent_never_overlap_and_one_asked_for_meanwhile_runs_after() -> None:
    import threading

    flight = fanin.SingleFlight()
    entered, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow() -> bool:
        runs.append("run")
        if len(runs) == 1:
            entered.set()
            release.wait(5)
        return False  # not ended: a later check may still end it

    first = threading.Thread(target=flight.run, args=("p", slow))
    first.start()
    entered.wait(5)
    flight.run("p", slow)  # arrives while the first runs: returns at once, asks for one more run
    flight.run("p", slow)  # asking twice is still one more run
    assert runs == ["run"]
    release.set()
    first.join(5)
    assert runs == ["run", "run"]
    flight.run("p", lambda: runs.append("later") is None)  # nothing running: runs now, and ends
    assert runs[-1] == "later"
