"""Flow control's decisions on in-memory fakes: the gates at the claim, slots, breakers, debounce, specs.

The same behaviours run again through the whole local stack in tests/e2e/test_flow_control.py;
these pin the decisions in milliseconds (FakeJobStore honours the store's guarded writes and
multi-document transactions).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobrelay import bulk, lifecycle, slots, typestates
from jobrelay.answers import Delivery
from jobrelay.api import Api
from jobrelay.breaker_settings import load_breakers
from jobrelay.breakers import Breakers
from jobrelay.errors import SettingsError, Unprocessable
from jobrelay.infra_files import _read_yaml, load_infra
from jobrelay.models import Job, Status, now
from jobrelay.namespace import CONCURRENCY_KEYS, TYPE_STATES
from jobrelay.runtime import Runner, RunnerSettings
from jobrelay.typestates import Breaker, TypeState, Verdict
from jobrelay.wsgi import Request, Response
from tests.fakes import FakeJobStore, RecordingFlow, StaticStates, fake_deployment, job_doc
from tests.unit.test_runner import REGISTRY

INFRA = load_infra()
KEY = {"key": "tenant:a", "limit": 2, "id": slots.key_id("dev", "tenant:a")}
KEYDOC = {"key": "tenant:a", "env": "dev", "limit": 2}


@pytest.fixture
def store() -> FakeJobStore:
    return FakeJobStore("dev")


@pytest.fixture
def flow() -> RecordingFlow:
    return RecordingFlow()


@pytest.fixture
def runner(store: FakeJobStore, flow: RecordingFlow) -> Iterator[Runner]:
    r = Runner(
        infra=INFRA,
        registry=REGISTRY,
        stores={"dev": store},
        flow=flow,  # type: ignore[arg-type]
        settings=RunnerSettings(lease_seconds=3.0, progress_interval=0.01),
        worker="w-1",
    )
    yield r
    r.stopping.set()


def put(store: FakeJobStore, job_id: str = "job-000001", **fields: Any) -> str:
    store.create(job_doc(job_id, type="steps", payload={"mode": "ok"}, **fields))
    return job_id


def paused(source: str = "operator", **breaker: Any) -> TypeState:
    return TypeState(
        type="steps", paused=True, source=source, reason="incident 7", paused_by="ops", breaker=Breaker(**breaker)
    )  # type: ignore[arg-type]


# -- the type gate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "job_id", "verdict", "kind"),
    [
        (None, "j1", Verdict.GO, ""),
        ({}, "j1", Verdict.GO, ""),
        ({"source": "operator"}, "j1", Verdict.WAIT, "paused"),
        ({"source": "breaker", "state": "open", "cool_down": 300}, "j1", Verdict.WAIT, "breaker"),
        ({"source": "breaker", "state": "open", "cool_down": -1}, "j1", Verdict.PROBE, ""),
        ({"source": "breaker", "state": "half_open", "probe_job": "j1"}, "j1", Verdict.GO, ""),
        ({"source": "breaker", "state": "half_open", "probe_job": "j2"}, "j1", Verdict.WAIT, "breaker"),
    ],
)
def test_the_type_gate_decides_from_the_types_state(state: Any, job_id: str, verdict: Verdict, kind: str) -> None:
    at = now()
    if state is None:
        built = None
    elif not state:
        built = TypeState(type="steps")
    else:
        state = dict(state)
        cool = state.pop("cool_down", None)
        source = state.pop("source")
        built = paused(source, **state, **({"cool_down_until": at + timedelta(seconds=cool)} if cool else {}))
    d = typestates.decide(built, job_id, at)
    assert (d.verdict, d.kind) == (verdict, kind)


def test_a_paused_type_parks_the_delivery_without_using_an_attempt(
    runner: Runner, store: FakeJobStore, flow: RecordingFlow
):
    job_id = put(store)
    state = paused()
    flow.states.states[("dev", "steps")] = state
    store.others[TYPE_STATES] = {"steps": state.model_dump()}
    answer = runner.deliver("dev", job_id)
    assert (answer.ack, answer.outcome) == (True, Delivery.PARKED)
    job = store.get(job_id)
    assert job is not None and job.status == Status.QUEUED and job.attempt == 0
    assert job.waiting_for is not None and (job.waiting_for.kind, job.waiting_for.on) == ("paused", "type:steps")
    assert job.waiting_for.reason == "incident 7" and job.due_at is None
    assert flow.attempts == [] and flow.ended_jobs == []
    again = runner.deliver("dev", job_id)  # a stale delivery of a parked job writes nothing
    assert again.outcome == Delivery.PARKED and store.get(job_id) == job


def test_a_stale_copy_that_says_paused_is_checked_on_the_document(
    runner: Runner, store: FakeJobStore, flow: RecordingFlow
):
    job_id = put(store)
    flow.states.states[("dev", "steps")] = paused()  # the document says nothing: resumed meanwhile
    assert runner.deliver("dev", job_id).outcome == Delivery.SUCCEEDED


def test_a_breaker_past_its_cool_down_lets_one_probe_through(runner: Runner, store: FakeJobStore, flow: RecordingFlow):
    state = paused("breaker", state="open", cool_down_until=now() - timedelta(seconds=1))
    flow.states.states[("dev", "steps")] = state
    store.others[TYPE_STATES] = {"steps": state.model_dump()}
    first, second = put(store, "job-000001"), put(store, "job-000002")
    assert runner.deliver("dev", first).outcome == Delivery.SUCCEEDED
    doc = store.others[TYPE_STATES]["steps"]
    assert doc["breaker"]["state"] == "half_open" and doc["breaker"]["probe_job"] == first
    flow.states.states[("dev", "steps")] = TypeState.model_validate(doc)
    assert runner.deliver("dev", second).outcome == Delivery.PARKED  # one probe only


# -- concurrency keys --------------------------------------------------------------------------------


def test_a_keyed_delivery_takes_a_free_slot_with_its_claim(runner: Runner, store: FakeJobStore):
    job_id = put(store, concurrency=KEY)
    assert runner.deliver("dev", job_id).outcome == Delivery.SUCCEEDED
    job = store.get(job_id)
    assert job is not None and job.holds_slot
    assert job_id in store.others[CONCURRENCY_KEYS][KEY["id"]]["holders"]


def test_a_keyed_delivery_waits_when_every_slot_is_taken(runner: Runner, store: FakeJobStore, flow: RecordingFlow):
    store.others[CONCURRENCY_KEYS] = {
        KEY["id"]: {"key": "tenant:a", "env": "dev", "limit": 2, "holders": {"a-00001": now(), "b-00001": now()}}
    }
    job_id = put(store, concurrency=KEY)
    answer = runner.deliver("dev", job_id)
    assert (answer.ack, answer.outcome) == (True, Delivery.PARKED)
    job = store.get(job_id)
    assert job is not None and job.attempt == 0 and not job.holds_slot
    assert job.waiting_for is not None and job.waiting_for.kind == "concurrency" and job.waiting_for.key == "tenant:a"
    assert flow.attempts == []


def test_a_freed_slot_goes_to_the_oldest_waiting_job(store: FakeJobStore):
    t0 = now()
    holders = {"done-0001": t0}
    store.others[CONCURRENCY_KEYS] = {KEY["id"]: {**KEYDOC, "limit": 1, "holders": holders, "waiting": 2, "parks": 2}}
    waiting = slots.wait_fields(KEY, t0)
    put(store, "late-0001", concurrency=KEY, created_at=t0 + timedelta(seconds=2), **waiting)
    put(store, "early-001", concurrency=KEY, created_at=t0 + timedelta(seconds=1), **waiting)
    ended = Job.model_validate(job_doc("done-0001", status="succeeded", concurrency=KEY, holds_slot=True))
    [released] = slots.release(store, ended, now())  # type: ignore[arg-type]
    assert released.id == "early-001" and released.holds_slot and released.dispatch_count == 1
    key_doc = store.others[CONCURRENCY_KEYS][KEY["id"]]
    assert key_doc["holders"].keys() == {"early-001"} and key_doc["waiting"] == 1
    late = store.get("late-0001")
    assert late is not None and late.waiting_for is not None


def test_a_waiting_count_left_by_cancelled_jobs_is_reset_when_nobody_waits(store: FakeJobStore):
    store.others[CONCURRENCY_KEYS] = {KEY["id"]: {**KEYDOC, "holders": {"done-0001": now()}, "waiting": 3, "parks": 3}}
    ended = Job.model_validate(job_doc("done-0001", status="succeeded", concurrency=KEY, holds_slot=True))
    assert slots.release(store, ended, now()) == []  # type: ignore[arg-type]
    assert KEY["id"] not in store.others[CONCURRENCY_KEYS]  # no holder, nobody waiting: gone


def test_the_last_holder_leaving_with_nobody_waiting_deletes_the_keys_document(store: FakeJobStore):
    store.others[CONCURRENCY_KEYS] = {
        KEY["id"]: {"key": "tenant:a", "env": "dev", "limit": 2, "holders": {"done-0001": now()}}
    }
    ended = Job.model_validate(job_doc("done-0001", status="succeeded", concurrency=KEY, holds_slot=True))
    assert slots.release(store, ended, now()) == []  # type: ignore[arg-type]
    assert KEY["id"] not in store.others[CONCURRENCY_KEYS]


def call(api: Api, path: str, body: Any, token: str = "alice") -> Response:
    headers = {"authorization": f"Bearer {token}"}
    return api.handle(Request(method="POST", path=path, headers=headers, body=json.dumps(body).encode()))


def test_keyed_submits_past_the_limit_wait_without_a_task():
    d = fake_deployment()
    api = Api(d)
    spec = {"type": "echo", "payload": {"message": "hi"}, "concurrency": {"key": "tenant:z", "limit": 2}}
    answers = [call(api, "/v1/envs/dev/jobs", spec) for _ in range(3)]
    assert [a.status for a in answers] == [202, 202, 202]
    first, second, third = (a.body for a in answers)
    assert first["holds_slot"] and second["holds_slot"] and not third["holds_slot"]
    assert third["waiting_for"]["kind"] == "concurrency" and third["waiting_for"]["key"] == "tenant:z"
    assert [j for j, _, _ in d.dispatchers["dev"].dispatched] == [first["id"], second["id"]]


def test_a_batch_takes_slots_in_order_in_one_transaction():
    d = fake_deployment()
    spec = {"type": "echo", "payload": {"message": "hi"}, "concurrency": {"key": "tenant:b", "limit": 1}}
    resp = call(
        Api(d), "/v1/envs/dev/jobs:batch", {"jobs": [spec, spec, {"type": "echo", "payload": {"message": "x"}}]}
    )
    assert resp.status == 202, resp.body
    holds = [j["holds_slot"] for j in resp.body["jobs"]]
    assert holds == [True, False, False] and resp.body["jobs"][2]["concurrency"] is None
    assert len(d.dispatchers["dev"].dispatched) == 2  # the keyed one that waits has no task


# -- debounce ------------------------------------------------------------------------------------


def test_submits_with_one_debounce_key_fold_into_one_job_with_the_last_payload():
    d = fake_deployment()
    api = Api(d)
    answers = [
        call(
            api,
            "/v1/envs/dev/jobs",
            {"type": "echo", "payload": {"message": str(i)}, "debounce": {"key": "doc-1", "seconds": 5}},
        )
        for i in range(4)
    ]
    assert [a.status for a in answers] == [202, 200, 200, 200]
    assert len({a.body["id"] for a in answers}) == 1
    job = d.stores["dev"].get(answers[0].body["id"])
    assert job.payload == {"message": "3"} and job.debounce.submits == 4
    assert len(d.dispatchers["dev"].dispatched) == 1  # one task, scheduled for the first due time
    other = call(
        api,
        "/v1/envs/dev/jobs",
        {"type": "echo", "payload": {"message": "b"}, "debounce": {"key": "doc-1", "seconds": 5}},
        "bob",
    )
    assert other.status == 202 and other.body["id"] != job.id  # another owner's submits never fold in


def test_an_early_delivery_of_a_debounced_job_is_dispatched_again_for_its_due_time(
    runner: Runner, store: FakeJobStore, flow: RecordingFlow
):
    due = now() + timedelta(seconds=30)
    window = {"key": "k", "seconds": 5, "id": "x" * 32, "first_at": now(), "max_at": due, "submits": 3}
    job_id = put(store, debounce=window, run_at=due, due_at=due)
    assert runner.deliver("dev", job_id, dispatch=1).outcome == Delivery.NOT_DUE  # an older dispatch: nothing
    assert flow.redispatched == []
    answer = runner.deliver("dev", job_id, dispatch=0)
    assert (answer.ack, answer.outcome) == (True, Delivery.NOT_DUE)
    [(_, job)] = flow.redispatched
    assert job.dispatch_count == 1 and job.run_at == due and job.attempt == 0


# -- circuit breakers ------------------------------------------------------------------------------


def test_a_breaker_opens_on_its_window_and_pauses_the_type(store: FakeJobStore):
    infra = INFRA.model_copy(
        update={"breakers": {"dev": {"steps": load_breakers_one(window=4, min_attempts=3, failure_rate=0.7)}}}
    )
    released: list[tuple[str, str, str]] = []
    b = Breakers(infra, {"dev": store}, StaticStates(), lambda *a: released.append(a))  # type: ignore[dict-item]
    job = Job.model_validate(job_doc(type="steps"))
    for ok in (True, False, False):
        b.record("dev", job, ok)
    assert TYPE_STATES not in store.others  # 2 of 3 failed: under 70 %
    b.record("dev", job, False)  # 3 of 4
    doc = store.others[TYPE_STATES]["steps"]
    assert doc["paused"] and doc["source"] == "breaker" and doc["breaker"]["state"] == "open"
    assert doc["breaker"]["failures"] == 3 and doc["breaker"]["attempts"] == 4


@pytest.mark.parametrize("copy", ["half_open", "open"])  # "open": this process's copy lags behind
def test_a_probe_that_succeeds_closes_the_breaker_and_releases_the_waiting(store: FakeJobStore, copy: str):
    infra = INFRA.model_copy(update={"breakers": {"dev": {"steps": load_breakers_one()}}})
    state = paused("breaker", state="half_open", probe_job="job-000001")
    store.others[TYPE_STATES] = {"steps": state.model_dump()}
    released: list[tuple[str, str, str]] = []
    states = StaticStates({("dev", "steps"): paused("breaker", state=copy)})
    b = Breakers(infra, {"dev": store}, states, lambda *a: released.append(a))  # type: ignore[dict-item]
    b.record("dev", Job.model_validate(job_doc(type="steps")), True)
    doc = store.others[TYPE_STATES]["steps"]
    assert not doc["paused"] and doc["breaker"]["state"] == "closed" and released == [("dev", "steps", "breaker")]


def test_a_probe_that_fails_opens_the_breaker_again(store: FakeJobStore):
    infra = INFRA.model_copy(update={"breakers": {"dev": {"steps": load_breakers_one()}}})
    state = paused("breaker", state="half_open", probe_job="job-000001", trips=1)
    store.others[TYPE_STATES] = {"steps": state.model_dump()}
    b = Breakers(infra, {"dev": store}, StaticStates({("dev", "steps"): state}), lambda *a: None)  # type: ignore[dict-item]
    b.record("dev", Job.model_validate(job_doc(type="steps")), False)
    doc = store.others[TYPE_STATES]["steps"]
    assert doc["paused"] and doc["breaker"]["state"] == "open" and doc["breaker"]["trips"] == 2
    assert doc["breaker"]["probe_job"] is None


def load_breakers_one(**cfg: Any) -> Any:
    from jobrelay.breaker_settings import BreakerConfig

    return BreakerConfig(**cfg)


def test_breaker_settings_merge_defaults_env_and_type_and_name_a_bad_key(tmp_path: Path):
    path = tmp_path / "breakers.yaml"
    path.write_text(
        "defaults: {window: 10, min_attempts: 5}\n"
        "types: {report: {failure_rate: 0.9}}\n"
        "envs: {dev: {defaults: {cool_down_seconds: 10}, types: {report: {enabled: false}, echo: {}}}}\n"
    )
    out = load_breakers(path, ["prod", "dev"], _read_yaml)
    assert out["prod"]["report"].failure_rate == 0.9 and out["prod"]["report"].window == 10
    assert "report" not in out["dev"] and out["dev"]["echo"].cool_down_seconds == 10
    path.write_text("types: {report: {min_attempts: 30, window: 20}}\n")
    with pytest.raises(SettingsError, match=r"types\.report"):
        load_breakers(path, ["dev"], _read_yaml)
    path.write_text("types: {jobrelay.maintenance: {}}\n")
    with pytest.raises(SettingsError, match="own job types"):
        load_breakers(path, ["dev"], _read_yaml)


# -- what specs and filters may ask -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"debounce": {"key": "k", "seconds": 5}, "idempotency_key": "i"}, "debounce"),
        ({"debounce": {"key": "k", "seconds": 5}, "delay_seconds": 3}, "debounce"),
        ({"debounce": {"key": "k", "seconds": 5, "max_wait": 2}}, "debounce"),
        ({"debounce": {"key": "k", "seconds": 0}}, "debounce.seconds"),
        ({"concurrency": {"key": " ", "limit": 1}}, "concurrency.key"),
        ({"concurrency": {"key": "k", "limit": 0}}, "concurrency.limit"),
    ],
)
def test_flow_fields_that_do_not_go_together_are_refused_naming_the_field(spec: dict[str, Any], field: str):
    d = fake_deployment()
    resp = call(Api(d), "/v1/envs/dev/jobs", {"type": "echo", "payload": {"message": "hi"}, **spec})
    assert resp.status == 422, resp.body
    assert resp.body["error"]["details"][0]["field"].startswith(field)
    assert d.stores["dev"].docs == {} and d.stores["dev"].others == {}


def test_a_type_that_declares_its_key_refuses_a_callers_key_and_makes_its_own():
    from pydantic import BaseModel

    from jobrelay.flowspec import concurrency_of
    from jobrelay.models import JobSpec
    from jobrelay.registry import JobType

    class P(BaseModel):
        tenant_id: str

    jt = JobType("export", handler=lambda p, c: None, payload=P, concurrency=("tenant:{tenant_id}", 2))
    made = concurrency_of(JobSpec(type="export"), jt, {"tenant_id": "acme"}, "")
    assert made is not None and (made.key, made.limit) == ("tenant:acme", 2)
    with pytest.raises(Unprocessable) as refused:
        concurrency_of(JobSpec(type="export", concurrency={"key": "mine", "limit": 9}), jt, {"tenant_id": "a"}, "")
    assert refused.value.details[0]["field"] == "concurrency"


def test_a_key_template_must_name_payload_fields_only():
    from pydantic import BaseModel

    from jobrelay.registry import Registry

    class P(BaseModel):
        tenant_id: str

    with pytest.raises(ValueError, match="no field"):
        Registry().job_type("t", payload=P, concurrency=("x:{other}", 1))
    with pytest.raises(ValueError, match="only"):
        Registry().job_type("t", payload=P, concurrency=("x:{tenant_id.__class__}", 1))
    with pytest.raises(ValueError, match="1-100"):
        Registry().job_type("t", payload=P, concurrency=("x:{tenant_id}", 0))


INDEXES = INFRA.directory / "firestore.indexes.json"


@pytest.mark.parametrize(
    ("filter_", "problem"),
    [
        ({}, "empty"),
        ({"labels": {}}, "empty"),
        ({"type": "jobrelay.maintenance"}, "internal type"),
        ({"labels": {"team": "web"}, "created_before": "2026-01-01T00:00:00Z"}, "no index for this combination"),
    ],
)
def test_bulk_filters_that_select_everything_or_no_index_serves_are_refused(filter_: dict[str, Any], problem: str):
    with pytest.raises(Unprocessable) as refused:
        bulk.check(bulk.CancelFilter.model_validate(filter_), INDEXES)
    assert refused.value.details[0]["problem"] == problem


@pytest.mark.parametrize(
    "filter_",
    [
        {"status": "queued"},
        {"type": "echo", "created_before": "2026-01-01T00:00:00Z"},
        {"owner": "alice", "type": "echo", "status": ["queued", "running"], "created_before": "2026-01-01T00:00:00Z"},
        {"labels": {"team": "web"}, "owner": "alice"},
    ],
)
def test_bulk_filters_that_an_index_serves_pass(filter_: dict[str, Any]):
    bulk.check(bulk.CancelFilter.model_validate(filter_), INDEXES)


def test_a_cancel_clears_why_a_job_waited_and_a_redrive_its_old_slot():
    at = now()
    waiting = Job.model_validate(job_doc(**slots.wait_fields(KEY, at), concurrency=KEY))
    d = lifecycle.decide_cancel(waiting, at=at, by="alice", expire_at=at)
    assert d.fields["waiting_for"] is None
    dead = Job.model_validate(job_doc(status="dead_lettered", concurrency=KEY, holds_slot=True))
    assert lifecycle.redrive(dead, at=at)["holds_slot"] is False
