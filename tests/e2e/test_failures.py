"""Failures handled like a production system: retries, dead letters, leases, cancellation."""

from __future__ import annotations

import concurrent.futures
import json
import time
from datetime import UTC, datetime

import requests

from jobrelay import clients
from jobrelay.local.oidc import LocalSigner
from jobrelay.local.stack import Stack
from tests.support import ApiUser, wait_for


def flaky_runs(stack: Stack, job_id: str) -> int:
    db = clients.firestore_client(stack.infra.env("dev").project)
    return int((db.collection("jobrelay_flaky_runs").document(job_id).get().to_dict() or {}).get("runs", 0))


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_job_that_fails_twice_then_succeeds_keeps_both_errors(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "flaky", "payload": {"fail_times": 2, "message": "database busy"}}).json()
    seen: list[str] = []
    done = alice.wait(job["id"], seen=seen, timeout=60)
    assert done["status"] == "succeeded" and done["attempt"] == 3
    assert [e["attempt"] for e in done["errors"]] == [1, 2]
    assert all("database busy" in e["message"] and e["retryable"] for e in done["errors"])
    assert done["errors"][0]["fingerprint"] == done["errors"][1]["fingerprint"]
    assert "retrying" in seen
    assert flaky_runs(stack, job["id"]) == 3


def test_fatal_error_dead_letters_after_one_attempt(stack: Stack, alice: ApiUser, admin: ApiUser) -> None:
    job = alice.submit({"type": "flaky", "payload": {"fail_times": 3, "fatal": True}}).json()
    done = alice.wait(job["id"])
    assert done["status"] == "dead_lettered" and done["attempt"] == 1
    assert done["error"]["type"] == "Fatal" and done["error"]["retryable"] is False
    letter = wait_for(
        lambda: (r := admin_get(admin, f"/dead-letters/{job['id']}")).status_code == 200 and r.json(),
        what="dead letter recorded",
    )
    assert letter["fingerprint"] == done["error"]["fingerprint"]
    assert letter["job"]["status"] == "dead_lettered"


def admin_get(admin: ApiUser, path: str) -> requests.Response:
    return requests.get(admin.url(path), headers=admin.headers, timeout=30)


def admin_post(admin: ApiUser, path: str, body: dict) -> requests.Response:
    return requests.post(admin.url(path), json=body, headers=admin.headers, timeout=30)


def test_exhausted_retries_dead_letter_and_redrive_runs_the_job_again(
    stack: Stack, alice: ApiUser, admin: ApiUser
) -> None:
    message = f"quota exceeded {time.time_ns()}"
    job = alice.submit({"type": "flaky", "payload": {"fail_times": 2, "message": message}, "max_attempts": 2}).json()
    done = alice.wait(job["id"], timeout=60)
    assert done["status"] == "dead_lettered" and done["attempt"] == 2 and len(done["errors"]) == 2
    fingerprint = done["error"]["fingerprint"]

    def listed() -> dict | None:
        body = admin_get(admin, "/dead-letters").json()
        return body if job["id"] in {d["job_id"] for d in body["dead_letters"]} else None

    listing = wait_for(listed, what="dead letter listed")
    group = next(g for g in listing["groups"] if g["fingerprint"] == fingerprint)
    assert job["id"] in group["job_ids"] and group["count"] >= 1 and group["type"] == "flaky"

    dry = admin_post(admin, "/dead-letters:redrive", {"fingerprint": fingerprint, "dry_run": True}).json()
    assert dry["dry_run"] is True and dry["redriven"] == 0
    assert {"job_id": job["id"], "outcome": "would_redrive"}.items() <= next(
        r for r in dry["results"] if r["job_id"] == job["id"]
    ).items()
    assert alice.get(job["id"]).json()["status"] == "dead_lettered"

    real = admin_post(admin, "/dead-letters:redrive", {"job_ids": [job["id"]]}).json()
    assert real["redriven"] == 1
    again = alice.wait(job["id"], timeout=60)
    assert again["status"] == "succeeded" and again["attempt"] == 3 and again["id"] == job["id"]
    assert flaky_runs(stack, job["id"]) == 3
    assert job["id"] not in {d["job_id"] for d in admin_get(admin, "/dead-letters").json()["dead_letters"]}


def test_dead_letters_are_for_operators_only(alice: ApiUser) -> None:
    r = admin_get(alice, "/dead-letters")
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]


def test_redrive_needs_exactly_one_selector(admin: ApiUser) -> None:
    r = admin_post(admin, "/dead-letters:redrive", {"all": True, "fingerprint": "x"})
    assert r.status_code == 422 and "exactly one" in r.json()["error"]["message"]


def test_timeout_counts_as_a_failed_attempt(alice: ApiUser) -> None:
    job = alice.submit({"type": "sleep", "payload": {"seconds": 20}, "timeout_seconds": 1, "max_attempts": 1}).json()
    done = alice.wait(job["id"], timeout=30)
    assert done["status"] == "dead_lettered"
    assert done["error"]["type"] == "JobTimeout" and "timeout of 1s" in done["error"]["message"]


def test_retry_with_delay_waits_before_the_next_attempt(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "flaky", "payload": {"fail_times": 1, "retry_delay": 3}}).json()
    done = alice.wait(job["id"], timeout=60)
    assert done["status"] == "succeeded" and done["attempt"] == 2 and done["dispatch_count"] == 1
    first_failure = when(done["errors"][0]["at"])
    assert (when(done["attempt_started_at"]) - first_failure).total_seconds() >= 3


def test_worker_killed_mid_job_finishes_on_a_later_attempt_once(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "sleep", "payload": {"seconds": 3}, "class": "A"}).json()
    alice.wait(job["id"], statuses={"running"}, timeout=30)
    old = stack.kill("worker")
    stack.wait_restarted("worker", old)
    done = alice.wait(job["id"], timeout=90)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert [e["type"] for e in done["errors"]] == ["WorkerLost"]
    log = (stack.logs / "worker.log").read_text()
    assert log.count(f"job {job['id']} succeeded") == 1


def test_same_task_delivered_twice_runs_the_handler_once(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "flaky", "payload": {"fail_times": 0}, "delay_seconds": 600}).json()
    env = stack.infra.env("dev")
    token = LocalSigner(stack.key_file).mint(stack.url("worker"), env.service_accounts.tasks_invoker)
    body = {"env": "dev", "job_id": job["id"], "dispatch": 0}

    def deliver() -> requests.Response:
        return requests.post(
            f"{stack.url('worker')}/v1/run",
            json=body,
            timeout=60,
            headers={"Authorization": f"Bearer {token}", "X-CloudTasks-TaskName": "dup"},
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: deliver(), range(4)))
    alice.wait(job["id"], timeout=30)
    late = deliver()
    assert late.status_code == 200 and late.json()["outcome"] == "duplicate"
    assert all(a.status_code in (200, 503) for a in answers)
    assert flaky_runs(stack, job["id"]) == 1
    assert alice.get(job["id"]).json()["attempt"] == 1


def test_delivery_without_a_valid_task_token_is_refused(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "flaky", "payload": {"fail_times": 0}, "delay_seconds": 600}).json()
    body = {"env": "dev", "job_id": job["id"]}
    wrong_sa = LocalSigner(stack.key_file).mint(stack.url("worker"), "someone@example.iam.gserviceaccount.com")
    for headers in (
        {},
        {"Authorization": f"Bearer {alice.token()}"},
        {"Authorization": f"Bearer {wrong_sa}"},
    ):
        r = requests.post(f"{stack.url('worker')}/v1/run", json=body, headers=headers, timeout=30)
        assert r.status_code in (401, 403), r.text
    assert alice.get(job["id"]).json()["status"] == "queued"
    assert flaky_runs(stack, job["id"]) == 0


def test_cancelled_running_sleep_stops_within_two_seconds(alice: ApiUser) -> None:
    job = alice.submit({"type": "sleep", "payload": {"seconds": 60}}).json()
    alice.wait(job["id"], statuses={"running"}, timeout=30)
    time.sleep(1.5)
    r = alice.cancel(job["id"])
    asked = datetime.now(UTC)
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    done = alice.wait(job["id"], timeout=10)
    assert done["status"] == "cancelled"
    assert (when(done["finished_at"]) - asked).total_seconds() <= 2.0


def test_garbage_push_is_acknowledged_and_logged(stack: Stack) -> None:
    for body in (b"garbage", b'{"message": {"data": "!!!"}}', b'{"message": {"data": "e30="}}'):
        r = requests.post(f"{stack.url('deadletter')}/v1/push", data=body, timeout=30)
        assert r.status_code == 200 and r.json()["outcome"] == "malformed"
    log = (stack.logs / "deadletter.log").read_text()
    assert "acknowledged an unusable push" in log


def test_secret_values_never_reach_the_job_document(stack: Stack, alice: ApiUser) -> None:
    secret = json.loads((stack.state_dir / "secrets" / "dev.json").read_text())["JOBRELAY_LOCAL_SECRET"]
    job = alice.submit(
        {"type": "flaky", "payload": {"fail_times": 1, "fatal": True, "message": f"could not log in with {secret}"}}
    ).json()
    done = alice.wait(job["id"])
    assert done["status"] == "dead_lettered"
    # (the payload is the caller's own text; what the platform writes must not repeat the secret)
    assert secret not in json.dumps([done["error"], done["errors"], done["log_tail"]])
    assert "could not log in with ***" in done["error"]["message"]
