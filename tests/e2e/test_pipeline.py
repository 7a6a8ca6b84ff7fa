"""The core pipeline on the local stack: submit over HTTP, deliver through Cloud Tasks, run, watch."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from jobrelay.local.stack import Stack
from tests.support import ApiUser, client_read, task_names, wait_for


def test_submitted_job_goes_queued_running_succeeded_with_progress(stack: Stack, alice: ApiUser) -> None:
    r = alice.submit({"type": "sleep", "payload": {"seconds": 2.5}, "labels": {"suite": "e2e"}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued"
    assert job["owner"] == "alice"
    assert r.headers["Location"].endswith(job["id"])
    seen: list[str] = []
    progress_seen = wait_for(
        lambda: (
            (p := alice.get(job["id"]).json())["status"] == "running"
            and p["progress"]
            and 0 < p["progress"]["done"] < p["progress"]["total"]
            and p
        ),
        timeout=30,
        what="running with partial progress",
    )
    assert progress_seen["attempt"] == 1 and progress_seen["started_at"]
    done = alice.wait(job["id"], seen=seen)
    assert done["status"] == "succeeded"
    assert done["result"] == {"slept": 2.5}
    assert done["progress"]["done"] == done["progress"]["total"] == 2.5
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    # The app sees the same document through the client SDK path, under the security rules.
    doc = client_read(stack, "dev", f"jobs/{job['id']}", alice.token())
    assert doc.status_code == 200, doc.text
    assert doc.json()["fields"]["status"]["stringValue"] == "succeeded"


def test_repeated_idempotency_key_returns_first_job_and_one_task(stack: Stack, alice: ApiUser) -> None:
    spec = {
        "type": "echo",
        "payload": {"message": "once"},
        "idempotency_key": f"key-{time.time_ns()}",
        "delay_seconds": 30,
    }
    first = alice.submit(spec)
    assert first.status_code == 202, first.text
    tasks_after_first = {t for t in task_names(stack, "dev") if first.json()["id"] in t}
    second = alice.submit(spec)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert {t for t in task_names(stack, "dev") if first.json()["id"] in t} == tasks_after_first
    assert len(tasks_after_first) == 1


def test_idempotency_key_reused_for_another_spec_is_refused(alice: ApiUser) -> None:
    key = f"key-{time.time_ns()}"
    assert alice.submit({"type": "echo", "payload": {"message": "a"}, "idempotency_key": key}).status_code == 202
    r = alice.submit({"type": "echo", "payload": {"message": "b"}, "idempotency_key": key})
    assert r.status_code == 409
    assert "idempotency key" in r.json()["error"]["message"]


def test_idempotency_keys_are_per_user(alice: ApiUser, bob: ApiUser) -> None:
    spec = {"type": "echo", "payload": {"message": "x"}, "idempotency_key": f"shared-{time.time_ns()}"}
    a, b = alice.submit(spec), bob.submit(spec)
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


def test_delayed_job_does_not_start_early(alice: ApiUser) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=3)
    r = alice.submit(
        {"type": "echo", "payload": {"message": "later"}, "run_at": run_at.isoformat().replace("+00:00", "Z")}
    )
    assert r.status_code == 202, r.text
    done = alice.wait(r.json()["id"], timeout=30)
    assert done["status"] == "succeeded"
    started = datetime.fromisoformat(done["started_at"].replace("Z", "+00:00"))
    assert started >= run_at


def test_batch_of_500_jobs_all_finish(alice: ApiUser) -> None:
    specs = [{"type": "echo", "payload": {"message": f"m{i}"}, "labels": {"batch": "b500"}} for i in range(500)]
    r = alice.batch(specs)
    assert r.status_code == 202, r.text[:500]
    jobs = r.json()["jobs"]
    assert len(jobs) == 500 and len({j["id"] for j in jobs}) == 500
    pending = {j["id"] for j in jobs}

    def all_done() -> bool:
        for job_id in list(pending):
            if alice.get(job_id).json()["status"] == "succeeded":
                pending.discard(job_id)
        return not pending

    wait_for(all_done, timeout=180, what="500 jobs succeeded")


def test_list_is_newest_first_and_paginated(alice: ApiUser, bob: ApiUser) -> None:
    ids = [
        alice.submit({"type": "echo", "payload": {"message": str(i)}, "labels": {"page": "p"}}).json()["id"]
        for i in range(5)
    ]
    bob.submit({"type": "echo", "payload": {"message": "bob's"}})
    seen: list[str] = []
    token = None
    while True:
        params = {"page_size": 2, "type": "echo"}
        if token:
            params["page_token"] = token
        page = alice.list(**params).json()
        assert all(j["owner"] == "alice" for j in page["jobs"])
        seen.extend(j["id"] for j in page["jobs"])
        token = page["next_page_token"]
        if not token:
            break
    newest_first = [i for i in seen if i in ids]
    assert newest_first == list(reversed(ids))
    assert len(seen) == len(set(seen))


def test_admin_sees_everyones_jobs_and_users_only_their_own(alice: ApiUser, bob: ApiUser, admin: ApiUser) -> None:
    job_id = bob.submit({"type": "echo", "payload": {"message": "mine"}}).json()["id"]
    assert admin.get(job_id).status_code == 200
    denied = alice.get(job_id)
    assert denied.status_code == 404  # as a missing job: another user's jobs are not there for alice
    assert denied.json()["error"]["message"] == f"job {job_id} not found in env dev"
    assert job_id in {j["id"] for j in admin.list(page_size=200).json()["jobs"]}


def test_cancel_of_queued_job_deletes_its_task(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "echo", "payload": {"message": "never"}, "delay_seconds": 60}).json()
    assert any(job["id"] in t for t in task_names(stack, "dev"))
    r = alice.cancel(job["id"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert not any(job["id"] in t for t in task_names(stack, "dev"))
    again = alice.cancel(job["id"])
    assert again.status_code == 409
    assert "cancelled" in again.json()["error"]["message"]


def test_cors_preflight_answers_listed_app_origins_only(stack: Stack) -> None:
    import requests

    url = f"{stack.url('api')}/v1/envs/dev/jobs"
    ok = requests.options(
        url, headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"}, timeout=10
    )
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "Authorization" in ok.headers["Access-Control-Allow-Headers"]
    other = requests.options(
        url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, timeout=10
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_healthz(stack: Stack) -> None:
    import requests

    r = requests.get(f"{stack.url('api')}/healthz", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
