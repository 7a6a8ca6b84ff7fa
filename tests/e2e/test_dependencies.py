"""`depends_on`: a job waits for its dependencies, runs after they succeed, is skipped if one does not."""

from __future__ import annotations

from datetime import datetime

from tests.support import ApiUser


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_job_runs_only_after_all_its_dependencies_succeed(alice: ApiUser) -> None:
    first = alice.submit({"type": "sleep", "payload": {"seconds": 2}}).json()
    second = alice.submit({"type": "echo", "payload": {"message": "one"}}).json()
    after = alice.submit({"type": "echo", "payload": {"message": "after"}, "depends_on": [first["id"], second["id"]]})
    assert after.status_code == 202, after.text
    job = after.json()
    assert job["status"] == "queued" and set(job["waiting_on"]) <= {first["id"], second["id"]}
    done = alice.wait(job["id"], timeout=60)
    assert done["status"] == "succeeded" and done["waiting_on"] == []
    finished_first = alice.get(first["id"]).json()
    assert at(done["started_at"]) >= at(finished_first["finished_at"])


def test_job_whose_dependency_fails_is_skipped_and_so_are_its_dependents(alice: ApiUser) -> None:
    failing = alice.submit({"type": "flaky", "payload": {"fail_times": 1, "fatal": True}, "delay_seconds": 1}).json()
    child = alice.submit({"type": "echo", "payload": {"message": "x"}, "depends_on": [failing["id"]]}).json()
    grandchild = alice.submit({"type": "echo", "payload": {"message": "y"}, "depends_on": [child["id"]]}).json()
    assert alice.wait(failing["id"])["status"] == "dead_lettered"
    skipped = alice.wait(child["id"], timeout=30)
    assert skipped["status"] == "skipped" and failing["id"] in skipped["skip_reason"]
    assert alice.wait(grandchild["id"], timeout=30)["status"] == "skipped"


def test_depending_on_a_finished_failure_is_skipped_at_once(alice: ApiUser) -> None:
    failing = alice.submit({"type": "flaky", "payload": {"fail_times": 1, "fatal": True}}).json()
    alice.wait(failing["id"])
    late = alice.submit({"type": "echo", "payload": {"message": "late"}, "depends_on": [failing["id"]]})
    assert late.status_code == 202 and late.json()["status"] == "skipped"


def test_unknown_or_foreign_dependencies_are_refused_alike(alice: ApiUser, bob: ApiUser) -> None:
    r = alice.submit({"type": "echo", "payload": {"message": "x"}, "depends_on": ["0123456789abcdef01234567"]})
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "depends_on: job 0123456789abcdef01234567 not found in env dev"
    bobs = bob.submit({"type": "echo", "payload": {"message": "bob"}}).json()
    r = alice.submit({"type": "echo", "payload": {"message": "x"}, "depends_on": [bobs["id"]]})
    assert r.status_code == 422  # another user's job reads as one that does not exist
    assert r.json()["error"]["message"] == f"depends_on: job {bobs['id']} not found in env dev"


def test_cancelling_a_dependency_skips_the_waiting_job(alice: ApiUser) -> None:
    parent = alice.submit({"type": "echo", "payload": {"message": "p"}, "delay_seconds": 60}).json()
    child = alice.submit({"type": "echo", "payload": {"message": "c"}, "depends_on": [parent["id"]]}).json()
    assert alice.cancel(parent["id"]).status_code == 200
    assert alice.wait(child["id"], timeout=30)["status"] == "skipped"
