"""No route leaves a job that nothing will deliver.

A pool job whose API died between writing the document and publishing is delivered by a repeat of
its submit or by the maintenance pass, each exactly once (a tap subscription on the env's pool topic
counts the messages). Lost tasks are found however many delayed jobs wait in front of them.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import pubsub_v1

from jobrelay import clients
from jobrelay.auth import Caller
from jobrelay.deployment import Deployment
from jobrelay.indexes import index_shard
from jobrelay.local.stack import Stack
from jobrelay.process_settings import RuntimeSettings
from jobrelay.registry import import_job_modules
from tests.e2e.test_maintenance import put_job, run_maintenance
from tests.support import ApiUser


class Crash(BaseException):
    """The API process dies here."""


class Tap:
    """A subscription of its own on an env's pool topic: counts every message published to it."""

    def __init__(self, stack: Stack, env: str) -> None:
        self.sub = pubsub_v1.SubscriberClient()
        e = stack.infra.env(env)
        self.name = self.sub.subscription_path(e.project, f"tap-{secrets.token_hex(4)}")
        self.sub.create_subscription(
            request={"name": self.name, "topic": f"projects/{e.project}/topics/{e.muscle_topic}"}
        )
        self.seen: Counter[str] = Counter()

    def count(self, job_id: str) -> int:
        empty = 0
        while empty < 3:  # the emulator may answer an empty pull while messages are on their way
            resp = self.sub.pull(request={"subscription": self.name, "max_messages": 100, "return_immediately": True})
            if not resp.received_messages:
                empty += 1
                continue
            self.seen.update(m.message.attributes["job_id"] for m in resp.received_messages)
            self.sub.acknowledge(
                request={"subscription": self.name, "ack_ids": [m.ack_id for m in resp.received_messages]}
            )
        return self.seen[job_id]

    def close(self) -> None:
        self.sub.delete_subscription(request={"subscription": self.name})


@pytest.fixture
def tap(stack: Stack) -> Iterator[Tap]:
    t = Tap(stack, "dev")
    try:
        yield t
    finally:
        t.close()


def submit_then_die(stack: Stack, uid: str, spec: dict[str, Any]) -> str:
    """Submit through the library as the API does, dying right after the document is written."""
    settings = RuntimeSettings(
        mode="local", envs="dev", infra_dir=stack.options.infra_dir, worker_url=stack.url("worker")
    )
    deployment = Deployment(
        settings=settings, infra=stack.infra, registry=import_job_modules(["jobrelay.builtin", "jobs"])
    )
    dispatcher = deployment.dispatchers["dev"]

    def die(*args: object, **kwargs: object) -> str:
        raise Crash

    dispatcher._publish = die  # type: ignore[method-assign]  # the exact point: about to publish
    written: list[str] = []
    create = deployment.stores["dev"].create

    def recording_create(data: dict[str, Any]) -> Any:
        written.append(data["id"])
        return create(data)

    deployment.stores["dev"].create = recording_create  # type: ignore[method-assign]
    with pytest.raises(Crash):
        deployment.service.submit("dev", Caller(uid=uid, kind="user"), spec)
    (job_id,) = written
    doc = db(stack).document(job_id).get().to_dict() or {}
    assert doc["status"] == "queued" and doc["route"] == "muscle" and doc.get("published_dispatch") is None
    return job_id


def db(stack: Stack) -> Any:
    return clients.firestore_client(stack.infra.env("dev").project).collection("jobs")


def test_a_repeat_submit_publishes_a_pool_job_whose_api_died_before_publishing(stack: Stack, tap: Tap) -> None:
    user = ApiUser(stack, "dev", f"crash-{secrets.token_hex(3)}")
    spec = {"type": "echo", "payload": {"message": "after the crash"}, "class": "D", "idempotency_key": "k1"}
    job_id = submit_then_die(stack, user.uid, spec)
    again = user.submit(spec)
    assert again.status_code == 200 and again.json()["id"] == job_id, again.text
    done = user.wait(job_id, timeout=60)
    assert done["status"] == "succeeded" and done["attempt"] == 1, done
    assert done["published_dispatch"] == 0
    assert user.submit(spec).status_code == 200  # a third submit: Pub/Sub holds it already, nothing sent
    assert tap.count(job_id) == 1


def test_the_maintenance_pass_publishes_a_pool_job_whose_api_died_before_publishing(
    stack: Stack, tap: Tap, admin: ApiUser
) -> None:
    user = ApiUser(stack, "dev", f"crash-{secrets.token_hex(3)}")
    job_id = submit_then_die(stack, user.uid, {"type": "echo", "payload": {"message": "swept"}, "class": "D"})
    ago = datetime.now(UTC) - timedelta(minutes=10)
    db(stack).document(job_id).update({"created_at": ago, "due_at": ago})  # the crash was ten minutes ago
    report = run_maintenance(stack, admin, -60)
    assert job_id in report["result"]["redispatched"]["jobs"], report["result"]
    done = user.wait(job_id, timeout=60)
    assert done["status"] == "succeeded" and done["attempt"] == 1 and done["dispatch_count"] == 1, done
    assert job_id not in run_maintenance(stack, admin, -61)["result"]["redispatched"]["jobs"]
    assert tap.count(job_id) == 1


def test_published_pool_jobs_waiting_in_a_backlog_are_not_published_again(
    stack: Stack, tap: Tap, admin: ApiUser
) -> None:
    ago = datetime.now(UTC) - timedelta(minutes=10)
    # Pub/Sub holds its message (the pool is busy): recorded, so the pass leaves it to Pub/Sub.
    held = put_job(stack, route="muscle", **{"class": "D"}, created_at=ago, due_at=None, published_dispatch=0)
    report = run_maintenance(stack, admin, -62)
    assert held not in report["result"]["redispatched"]["jobs"]
    assert tap.count(held) == 0
    db(stack).document(held).delete()


def test_lost_tasks_behind_hundreds_of_delayed_jobs_are_all_dispatched_in_one_pass(
    stack: Stack, alice: ApiUser, admin: ApiUser
) -> None:
    now = datetime.now(UTC)
    jobs = db(stack)
    delayed: list[str] = []
    lost: list[str] = []
    batch = jobs._client.batch()
    for i in range(460):
        job_id = secrets.token_hex(12)
        if i < 250:  # submitted earlier, due in an hour: they sort first by creation time
            fields = {"created_at": now - timedelta(minutes=20), "run_at": now + timedelta(hours=1)}
            delayed.append(job_id)
        else:  # due ten minutes ago, and their task never created: more than a page of them
            fields = {"created_at": now - timedelta(minutes=10)}
            lost.append(job_id)
        created = fields["created_at"]
        batch.set(
            jobs.document(job_id),
            {
                "id": job_id, "env": "dev", "type": "echo", "class": "A", "route": "tasks", "status": "queued",
                "owner": "alice", "payload": {"message": "lost"}, "attempt": 0, "max_attempts": 3,
                "timeout_seconds": 60, "dispatch_count": 0, "labels": {}, "depends_on": [], "dependents": [],
                "waiting_on": [], "errors": [], "log_tail": [], "cancel_requested": False,
                "due_at": fields.get("run_at") or created, "ix": index_shard(job_id), **fields,
            },
        )  # fmt: skip
        if i % 400 == 399:
            batch.commit()
            batch = jobs._client.batch()
    batch.commit()
    try:
        report = run_maintenance(stack, admin, -63)["result"]["redispatched"]
        assert report["count"] >= len(lost), report["count"]
        for job_id in lost:
            assert alice.wait(job_id, timeout=90)["status"] == "succeeded"
        assert all(alice.get(j).json()["status"] == "queued" for j in delayed[:5])
    finally:
        batch = jobs._client.batch()
        for job_id in delayed:
            batch.delete(jobs.document(job_id))
        batch.commit()
