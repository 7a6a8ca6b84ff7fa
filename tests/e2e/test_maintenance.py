"""The maintenance pass rescues jobs that would otherwise be lost, and the clean-up honours retention."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from jobrelay import clients
from jobrelay.indexes import index_shard
from jobrelay.local.stack import Stack
from tests.e2e.test_cron import minute, own_minutes, tick
from tests.support import ApiUser, wait_for

TICKS = own_minutes()  # this module's ticks name minutes no other module's tick names


def put_job(stack: Stack, **fields: object) -> str:
    """Write a job document directly, in a state a crash could have left it in."""
    job_id = secrets.token_hex(12)
    now = datetime.now(UTC)
    doc = {
        "id": job_id,
        "env": "dev",
        "type": "echo",
        "class": "A",
        "route": "tasks",
        "status": "queued",
        "owner": "alice",
        "payload": {"message": "rescued"},
        "attempt": 0,
        "max_attempts": 3,
        "timeout_seconds": 60,
        "created_at": now - timedelta(minutes=10),
        "dispatch_count": 0,
        "labels": {},
        "depends_on": [],
        "dependents": [],
        "waiting_on": [],
        "errors": [],
        "log_tail": [],
        "cancel_requested": False,
        **fields,
    }
    doc.setdefault("due_at", doc.get("run_at") or doc["created_at"])  # as JobService.prepare writes it
    doc.setdefault("ix", index_shard(job_id))  # as the store writes it (jobrelay.indexes)
    clients.firestore_client(stack.infra.env("dev").project).collection("jobs").document(job_id).set(doc)
    return job_id


def run_maintenance(stack: Stack, admin: ApiUser, offset: int) -> dict:
    r = tick(stack, "maintenance", minute(TICKS + offset))
    assert r.status_code in (200, 202), r.text
    return admin.wait(r.json()["id"])


def test_maintenance_dispatches_jobs_whose_task_was_never_created(stack: Stack, alice: ApiUser, admin: ApiUser) -> None:
    orphan = put_job(stack)
    report = run_maintenance(stack, admin, -20)
    assert report["status"] == "succeeded"
    assert orphan in report["result"]["redispatched"]["jobs"]
    done = alice.wait(orphan, timeout=30)
    assert done["status"] == "succeeded" and done["dispatch_count"] == 1


def test_maintenance_reclaims_an_expired_lease_and_dead_letters_when_no_attempt_is_left(
    stack: Stack, alice: ApiUser, admin: ApiUser
) -> None:
    expired = datetime.now(UTC) - timedelta(minutes=1)
    crashed = put_job(stack, status="running", attempt=1, worker_id="gone-1", lease_expires_at=expired)
    last = put_job(stack, status="running", attempt=3, worker_id="gone-2", lease_expires_at=expired)
    report = run_maintenance(stack, admin, -21)
    # This pass, or one still running from an earlier test's ticks (test_cron fires five), rescues them:
    # no task exists for either job, so only a maintenance pass can end them as asserted below.
    assert report["status"] == "succeeded"
    done = alice.wait(crashed, timeout=30)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert done["errors"][0]["type"] == "WorkerLost"
    dead = alice.wait(last, timeout=30)
    assert dead["status"] == "dead_lettered" and dead["error"]["type"] == "WorkerLost"


def test_maintenance_publishes_a_dead_letter_its_worker_never_sent(
    stack: Stack, alice: ApiUser, admin: ApiUser
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    error = {
        "type": "RuntimeError",
        "message": "boom",
        "stack": "",
        "retryable": True,
        "fingerprint": "abc",
        "attempt": 3,
        "at": at,
    }
    failed = put_job(stack, status="failed", attempt=3, finished_at=at, error=error, errors=[error])
    run_maintenance(stack, admin, -22)
    assert alice.wait(failed, timeout=30)["status"] == "dead_lettered"
    wait_for(lambda: admin_get_ok(admin, failed), what="dead letter recorded")


def admin_get_ok(admin: ApiUser, job_id: str) -> bool:
    import requests

    return requests.get(admin.url(f"/dead-letters/{job_id}"), headers=admin.headers, timeout=30).status_code == 200


def test_cleanup_removes_finished_jobs_past_retention_only(stack: Stack, alice: ApiUser, admin: ApiUser) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    old = put_job(stack, status="succeeded", finished_at=past, expire_at=past)
    waiting = put_job(stack, status="queued", expire_at=past, run_at=datetime.now(UTC) + timedelta(days=1))
    fresh = put_job(stack, status="succeeded", expire_at=datetime.now(UTC) + timedelta(days=6))
    r = tick(stack, "cleanup", minute(TICKS - 23))
    assert r.status_code in (200, 202), r.text
    assert admin.wait(r.json()["id"])["status"] == "succeeded"
    assert alice.get(old).status_code == 404
    assert alice.get(waiting).status_code == 200
    assert alice.get(fresh).status_code == 200
