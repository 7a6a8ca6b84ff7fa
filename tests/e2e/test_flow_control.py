"""Flow control on the local stack (issue 17's "Done when"): concurrency keys, a slot freed through a
lost lease, pause and resume, bulk cancel, debounce, circuit breakers, bad input, and the rules.

Every test shares the session stack (4 s leases, no scheduler: the maintenance pass is ticked here
when a test needs it) and marks its jobs with its own label or key, so it reads only its own.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.cloud import firestore

from jobrelay import bulk, clients, namespace
from jobrelay.indexes import SHARDS
from jobrelay.local.stack import Stack
from jobrelay.models import MAX_DELAY_SECONDS, rfc3339
from jobrelay.store import JobStore
from tests.e2e.test_maintenance import run_maintenance
from tests.e2e.test_rules import rest_write
from tests.fakes import job_doc
from tests.support import FINAL, ApiUser, client_read, count_jobs, id_token, wait_for


def db(stack: Stack) -> firestore.Client:
    return clients.firestore_client(stack.infra.env("dev").project)


def tag() -> str:
    return secrets.token_hex(4)


def post(user: ApiUser, path: str, body: Any) -> requests.Response:
    return requests.post(user.url(path), json=body, headers=user.headers, timeout=60)


def labelled(stack: Stack, label: str, value: str, status: str | None = None) -> int:
    q: Any = db(stack).collection("jobs").where(filter=firestore.FieldFilter(f"labels.{label}", "==", value))
    if status is not None:
        q = q.where(filter=firestore.FieldFilter("status", "==", status))
    return int(q.count().get()[0][0].value)


def wait_all(user: ApiUser, ids: list[str], timeout: float = 90) -> list[dict[str, Any]]:
    return [user.wait(job_id, timeout=timeout) for job_id in ids]


def overlap(jobs: list[dict[str, Any]]) -> int:
    """The most jobs running at one moment, from their own start and finish times."""
    events = []
    for job in jobs:
        events.append((datetime.fromisoformat(job["attempt_started_at"]), 1))
        events.append((datetime.fromisoformat(job["finished_at"]), -1))
    most = running = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        most = max(most, running)
    return most


# -- concurrency keys ------------------------------------------------------------------------------


def test_ten_jobs_of_one_key_never_run_more_than_its_limit_while_another_key_runs_alongside(alice: ApiUser) -> None:
    key, other = f"tenant:{tag()}", f"tenant:{tag()}"
    sleep = {"type": "sleep", "payload": {"seconds": 0.8}}
    answers = [alice.submit({**sleep, "concurrency": {"key": key, "limit": 2}}).json() for _ in range(10)]
    others = [alice.submit({**sleep, "concurrency": {"key": other, "limit": 2}}).json()["id"] for _ in range(4)]
    ids = [a["id"] for a in answers]
    assert answers[0]["holds_slot"] and answers[1]["holds_slot"]
    third = answers[2]  # found both slots taken: it waits, and says why
    assert third["waiting_for"]["kind"] == "concurrency" and third["waiting_for"]["key"] == key
    done, done_other = wait_all(alice, ids), wait_all(alice, others)
    assert {j["status"] for j in done + done_other} == {"succeeded"}
    assert all(j["attempt"] == 1 and not j["errors"] for j in done), "waiting used no attempt"
    assert overlap(done) == 2
    assert overlap(done_other) <= 2 and overlap(done + done_other) > 2  # the other key ran alongside
    key_doc = db(alice.stack).collection(namespace.CONCURRENCY_KEYS).document(done[0]["concurrency"]["id"])
    wait_for(lambda: not key_doc.get().exists, timeout=10, what="the key's document gone with its last holder")


def test_a_worker_killed_while_holding_a_slot_frees_it_through_the_lease(stack: Stack, alice: ApiUser) -> None:
    key = {"key": f"migration:{tag()}", "limit": 1}
    holder = alice.submit({"type": "sleep", "payload": {"seconds": 60}, "concurrency": key, "max_attempts": 1}).json()
    waiting = alice.submit({"type": "echo", "payload": {"message": "next"}, "concurrency": key}).json()
    assert holder["holds_slot"] and waiting["waiting_for"]["kind"] == "concurrency"
    alice.wait(holder["id"], {"running"}, timeout=30)
    killed_at = datetime.now(UTC)
    old = stack.kill("worker")
    stack.wait_restarted("worker", old)
    # Cloud Tasks redelivers the holder's task; its claim finds the lease expired on the last attempt,
    # ends the job (dead-lettered) and hands the slot on. The maintenance pass would do the same.
    lost = alice.wait(holder["id"], timeout=60)
    assert lost["status"] == "dead_lettered" and lost["error"]["type"] == "WorkerLost"
    nxt = alice.wait(waiting["id"], timeout=60)
    assert nxt["status"] == "succeeded" and nxt["result"] == {"message": "next"}
    assert datetime.fromisoformat(nxt["started_at"]) > killed_at and nxt["waiting_for"] is None


# -- pause and resume ------------------------------------------------------------------------------


@pytest.fixture
def paused_flaky(admin: ApiUser) -> Iterator[ApiUser]:
    """`flaky` paused for the test (only these tests run it while it is paused), resumed afterwards."""
    r = post(admin, "/types/flaky:pause", {"reason": "incident 17: the flaky API is down"})
    assert r.status_code == 200, r.text
    try:
        yield admin
    finally:
        post(admin, "/types/flaky:resume", {})


def test_a_paused_type_accepts_submits_runs_none_and_runs_them_all_once_resumed(
    alice: ApiUser, paused_flaky: ApiUser
) -> None:
    admin, label = paused_flaky, tag()
    # Due a moment after the pause, so every worker's copy of the type states has it by then.
    spec = {"type": "flaky", "payload": {"fail_times": 0}, "delay_seconds": 2, "labels": {"pause": label}}
    ids = [alice.submit(spec).json()["id"] for _ in range(5)]
    wait_for(
        lambda: all((alice.get(i).json().get("waiting_for") or {}).get("kind") == "paused" for i in ids),
        timeout=30,
        what="every delivery parked behind the pause",
    )
    jobs = [alice.get(i).json() for i in ids]
    assert {(j["status"], j["attempt"]) for j in jobs} == {("queued", 0)}
    assert jobs[0]["waiting_for"]["reason"] == "incident 17: the flaky API is down"
    assert jobs[0]["waiting_for"]["by"] == admin.uid
    [flaky] = [
        t
        for t in requests.get(admin.url("/types"), headers=admin.headers, timeout=30).json()["types"]
        if t["type"] == "flaky"
    ]
    assert flaky["paused"] and flaky["paused_by"] == admin.uid and flaky["paused_at"] and flaky["waiting"] >= 5
    stats = requests.get(admin.url("/stats"), headers=admin.headers, timeout=30).json()
    assert "flaky" in {p["type"] for p in stats["paused"]}
    assert "flaky" in {
        p["type"] for p in requests.get(admin.url("/queues"), headers=admin.headers, timeout=30).json()["paused"]
    }
    resumed = post(admin, "/types/flaky:resume", {})
    assert resumed.status_code == 200 and resumed.json()["changed"] and resumed.json()["operation"]["kind"] == "release"
    done = wait_all(alice, ids)
    assert {(j["status"], j["attempt"]) for j in done} == {("succeeded", 1)}  # the wait used no attempt


# -- bulk cancel -----------------------------------------------------------------------------------


def test_a_bulk_cancel_of_two_thousand_queued_jobs_counts_them_first_and_leaves_none(
    stack: Stack, admin: ApiUser
) -> None:
    label = tag()
    spec = {"type": "echo", "payload": {"message": "later"}, "delay_seconds": 3600, "labels": {"bulk": label}}
    for i in range(4):  # four users (a user may submit 600 a minute)
        r = ApiUser(stack, "dev", f"bulk-{i}").batch([spec] * 500)
        assert r.status_code == 202, r.text[:300]
    flt = {"labels": {"bulk": label}, "status": "queued"}
    dry = post(admin, "/jobs:cancel", {"filter": flt, "dry_run": True})
    assert dry.status_code == 200 and dry.json()["count"] == 2000 and len(dry.json()["sample"]) == 10
    assert labelled(stack, "bulk", label, "queued") == 2000  # the dry run changed nothing
    started = post(admin, "/jobs:cancel", {"filter": flt})
    assert started.status_code == 202, started.text
    op = started.json()["operation"]
    assert op["matched"] == 2000 and op["by"] == admin.uid
    deadline = time.monotonic() + 240
    while op["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        op = requests.get(admin.url(f"/operations/{op['id']}"), headers=admin.headers, timeout=30).json()
    assert op["status"] == "succeeded" and op["cancelled"] == 2000, op
    assert labelled(stack, "bulk", label, "cancelled") == 2000
    assert labelled(stack, "bulk", label, "queued") == labelled(stack, "bulk", label, "running") == 0


def test_an_operators_created_before_selection_reads_every_shard_oldest_first_and_resumes_after_its_cursor(
    stack: Stack,
) -> None:
    # No owner: created_at is a range over everyone's jobs, so one query per index shard, merged.
    client = db(stack)
    store = JobStore(client, "dev")
    kind = f"bulk-shards-{tag()}"  # a type of this test's own: nobody else's jobs match
    base = datetime.now(UTC) - timedelta(hours=1)
    docs = [
        job_doc(secrets.token_hex(12), type=kind, created_at=base + timedelta(milliseconds=i // 2)) for i in range(450)
    ]
    store.create_all([*docs, job_doc(secrets.token_hex(12), type=kind)], lambda doc, job: None)  # one too new
    f = bulk.CancelFilter.model_validate({"type": kind, "created_before": rfc3339(base + timedelta(minutes=5))})
    oldest_first = [d["id"] for d in sorted(docs, key=lambda d: (d["created_at"], d["id"]))]  # pairs share a time
    assert len(bulk.queries(client, f)) == SHARDS
    assert bulk.count(client, f) == 450 and bulk.sample(client, f) == oldest_first[:10]
    assert [j.id for page in bulk.pages(store, bulk.queries(client, f), None) for j, _ in page] == oldest_first
    resumed = bulk.pages(store, bulk.queries(client, f), oldest_first[249])  # its cursor: one shard's job
    assert [j.id for page in resumed for j, _ in page] == oldest_first[250:]
    batch = client.batch()
    for snap in client.collection("jobs").where(filter=firestore.FieldFilter("type", "==", kind)).stream():
        batch.delete(snap.reference)  # jobs of no registered type: gone before any other test looks
    batch.commit()


def test_another_user_cannot_read_or_widen_a_bulk_cancel(alice: ApiUser, bob: ApiUser) -> None:
    r = post(bob, "/jobs:cancel", {"filter": {"owner": alice.uid, "type": "echo"}, "dry_run": True})
    assert r.status_code == 403
    mine = post(bob, "/jobs:cancel", {"filter": {"type": "echo", "labels": {"bulk": "nobody"}}, "dry_run": True})
    assert mine.status_code == 200 and mine.json()["filter"]["owner"] == bob.uid


# -- debounce --------------------------------------------------------------------------------------


def test_twenty_debounced_submits_inside_the_window_run_once_with_the_last_payload(alice: ApiUser) -> None:
    window = {"key": f"doc:{tag()}", "seconds": 2, "max_wait": 60}
    answers = [
        alice.submit({"type": "echo", "payload": {"message": f"edit {i}"}, "debounce": window}) for i in range(20)
    ]
    assert [a.status_code for a in answers] == [202] + [200] * 19
    assert len({a.json()["id"] for a in answers}) == 1
    done = alice.wait(answers[0].json()["id"], timeout=60)
    assert done["status"] == "succeeded" and done["result"] == {"message": "edit 19"}
    assert done["attempt"] == 1 and done["debounce"]["submits"] == 20
    same = (
        db(alice.stack)
        .collection("jobs")
        .where(filter=firestore.FieldFilter("debounce.id", "==", done["debounce"]["id"]))
    )
    assert int(same.count().get()[0][0].value) == 1


# -- circuit breakers ------------------------------------------------------------------------------


def test_a_type_failing_every_time_opens_its_breaker_stops_and_closes_after_one_good_probe(
    stack: Stack, alice: ApiUser, admin: ApiUser
) -> None:
    service = f"svc-{tag()}"
    switch = db(stack).collection("jobrelay_downstreams").document(service)
    switch.set({"up": False})
    ids = [alice.submit({"type": "downstream", "payload": {"service": service}}).json()["id"] for _ in range(6)]
    state_doc = db(stack).collection(namespace.TYPE_STATES).document("downstream")
    wait_for(lambda: (state_doc.get().to_dict() or {}).get("paused"), timeout=60, what="the breaker opened")
    state = state_doc.get().to_dict() or {}
    assert state["source"] == "breaker" and state["breaker"]["state"] in ("open", "half_open")

    def parked() -> list[dict[str, Any]] | None:
        jobs = [alice.get(i).json() for i in ids]
        return jobs if all((j.get("waiting_for") or {}).get("kind") == "breaker" for j in jobs) else None

    jobs = wait_for(parked, timeout=60, what="every job waiting behind the breaker")
    attempts = sum(j["attempt"] for j in jobs)
    assert attempts == sum(len(j["errors"]) for j in jobs) < 2 * len(ids)  # each attempt failed; few ran
    assert not any(j["status"] in FINAL for j in jobs)
    time.sleep(2)  # nothing runs while it is open (timing only to show nothing moves)
    assert sum(alice.get(i).json()["attempt"] for i in ids) == attempts
    switch.set({"up": True})
    cooled = (state_doc.get().to_dict() or {})["breaker"]["cool_down_until"]
    wait_for(lambda: datetime.now(UTC) > cooled, timeout=30, what="the cool-down")
    run_maintenance(stack, admin, -170)  # nobody delivers a parked job: the pass sends the probe
    done = wait_all(alice, ids, timeout=90)
    assert {j["status"] for j in done} == {"succeeded"}
    closed = state_doc.get().to_dict() or {}
    assert not closed["paused"] and closed["breaker"]["state"] == "closed" and closed["resumed_by"] == "breaker"
    assert sum(len(j["errors"]) for j in done) == attempts  # no job failed again after the probe
    key_doc = db(stack).collection(namespace.CONCURRENCY_KEYS).document(done[0]["concurrency"]["id"])
    wait_for(lambda: not key_doc.get().exists, timeout=10, what="the type's key freed by its last job")


# -- bad input -------------------------------------------------------------------------------------


def flow_docs(stack: Stack) -> tuple[int, ...]:
    counts = [count_jobs(stack, "dev")]
    for name in namespace.FLOW:
        counts.append(int(db(stack).collection(name).count().get()[0][0].value))
    return tuple(counts)


ECHO = {"type": "echo", "payload": {"message": "x"}}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/jobs", {**ECHO, "concurrency": {"key": "", "limit": 1}}, "concurrency.key"),
        ("/jobs", {**ECHO, "concurrency": {"key": "k" * 201, "limit": 1}}, "concurrency.key"),
        ("/jobs", {**ECHO, "concurrency": {"key": "k", "limit": 0}}, "concurrency.limit"),
        ("/jobs", {**ECHO, "concurrency": {"key": "k", "limit": 101}}, "concurrency.limit"),
        ("/jobs", {**ECHO, "debounce": {"key": "k", "seconds": 0}}, "debounce.seconds"),
        ("/jobs", {**ECHO, "debounce": {"key": "k", "seconds": MAX_DELAY_SECONDS + 1}}, "debounce.seconds"),
        ("/jobs", {**ECHO, "debounce": {"key": "k", "seconds": 10, "max_wait": 5}}, "debounce"),
        ("/jobs", {**ECHO, "debounce": {"key": "", "seconds": 10}}, "debounce.key"),
        ("/jobs", {**ECHO, "debounce": {"key": "d" * 201, "seconds": 10}}, "debounce.key"),
        ("/jobs", {"type": "downstream", "payload": {}, "concurrency": {"key": "mine", "limit": 50}}, "concurrency"),
        ("/jobs:batch", {"jobs": [{**ECHO, "debounce": {"key": "k", "seconds": 5}}]}, "jobs.0.debounce"),
        ("/jobs:cancel", {"filter": {}}, "filter"),
        ("/jobs:cancel", {"filter": {"labels": {}}, "dry_run": True}, "filter"),
        ("/jobs:cancel", {"filter": {"status": "succeeded"}}, "filter.status"),
        ("/types/nope:pause", {"reason": "why"}, "job_type"),
        ("/types/jobrelay.maintenance:pause", {"reason": "why"}, "job_type"),
        ("/types/echo:pause", {"reason": ""}, "reason"),
    ],
)
def test_bad_flow_input_is_refused_naming_the_field_and_writes_nothing(
    stack: Stack, admin: ApiUser, path: str, body: Any, field: str
) -> None:
    before = flow_docs(stack)
    r = post(admin, path, body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"].startswith(field), r.text
    assert flow_docs(stack) == before


# -- rules: operators read flow control's documents, nobody writes them ---------------------------------


@pytest.mark.parametrize("collection", namespace.FLOW)
def test_operators_read_flow_documents_and_no_client_writes_them(stack: Stack, collection: str) -> None:
    doc_id = f"rules-{tag()}"
    db(stack).collection(collection).document(doc_id).set({"probe": True})
    admin_token, user_token = id_token(stack, "dev", "root", admin=True), id_token(stack, "dev", "alice")
    path = f"{collection}/{doc_id}"
    assert client_read(stack, "dev", path, admin_token).status_code == 200
    assert client_read(stack, "dev", path, user_token).status_code == 403
    for token in (admin_token, user_token):
        assert rest_write(stack, path, token).status_code == 403
        assert rest_write(stack, path, token, method="DELETE").status_code == 403
    db(stack).collection(collection).document(doc_id).delete()
