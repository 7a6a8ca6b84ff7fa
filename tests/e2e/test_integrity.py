"""Integrity and authorization at submit and redrive (issue 14): refusals write nothing, roles hold.

Every refusal here is checked against the store: the job documents and tasks of the env, and the open
dead letters, are counted before and after.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from jobrelay import clients, deadletters
from jobrelay.local.stack import Stack
from tests.e2e.test_cli import run
from tests.support import ApiUser, count_jobs, task_names, wait_for


@contextmanager
def writes_nothing(stack: Stack, env: str = "dev") -> Iterator[None]:
    """The block may be refused as often as it likes: no job document and no task appears."""
    jobs, tasks = count_jobs(stack, env), task_names(stack, env)
    letters = open_letters(stack, env)
    yield
    assert count_jobs(stack, env) == jobs
    assert task_names(stack, env) <= tasks
    assert open_letters(stack, env) == letters


def open_letters(stack: Stack, env: str) -> int:
    return deadletters.count_open(clients.firestore_client(stack.infra.env(env).project))


def echo(message: str, **spec: Any) -> dict[str, Any]:
    return {"type": "echo", "payload": {"message": message}, **spec}


def key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def error(r: requests.Response) -> str:
    return str(r.json()["error"]["message"])


# -- 1. a batch is all valid or none written ----------------------------------------------------------


def test_batch_whose_key_is_taken_by_another_job_writes_none_of_its_specs(stack: Stack, alice: ApiUser) -> None:
    taken = key()
    first = alice.submit(echo("first", idempotency_key=taken, delay_seconds=600))
    assert first.status_code == 202
    with writes_nothing(stack):
        r = alice.batch(
            [echo("a", delay_seconds=600), echo("b", delay_seconds=600), echo("other", idempotency_key=taken)]
        )
        assert r.status_code == 409, r.text
        assert error(r).startswith("jobs[2]: ") and taken in error(r)
    assert alice.cancel(first.json()["id"]).status_code == 200


def test_batch_naming_one_key_twice_for_different_jobs_writes_nothing(stack: Stack, alice: ApiUser) -> None:
    twice = key()
    with writes_nothing(stack):
        r = alice.batch([echo("x"), echo("one", idempotency_key=twice), echo("two", idempotency_key=twice)])
        assert r.status_code == 409, r.text
        assert "jobs[2]" in error(r) and "jobs[1]" in error(r)


def test_batch_naming_one_key_twice_for_the_same_job_makes_one_job(stack: Stack, alice: ApiUser) -> None:
    same = key()
    before = count_jobs(stack, "dev")
    r = alice.batch([echo("same", idempotency_key=same), echo("same", idempotency_key=same)])
    assert r.status_code == 202, r.text
    a, b = r.json()["jobs"]
    assert a["id"] == b["id"]
    assert count_jobs(stack, "dev") == before + 1
    assert alice.wait(a["id"])["status"] == "succeeded"


def test_batch_with_dependencies_and_a_taken_key_writes_nothing(stack: Stack, alice: ApiUser) -> None:
    parent = alice.submit(echo("parent", delay_seconds=600)).json()
    taken = key()
    first = alice.submit(echo("first", idempotency_key=taken, delay_seconds=600)).json()
    with writes_nothing(stack):
        r = alice.batch([echo("child", depends_on=[parent["id"]]), echo("other", idempotency_key=taken)])
        assert r.status_code == 409, r.text
    assert alice.get(parent["id"]).json()["dependents"] == []
    for job in (parent, first):
        assert alice.cancel(job["id"]).status_code == 200


def test_batch_depending_on_another_users_job_writes_nothing(stack: Stack, alice: ApiUser, bob: ApiUser) -> None:
    bobs = bob.submit(echo("bob's", delay_seconds=600)).json()
    with writes_nothing(stack):
        r = alice.batch([echo("fine"), echo("child", depends_on=[bobs["id"]])])
        assert r.status_code == 422, r.text
        assert error(r) == f"jobs[1]: depends_on: job {bobs['id']} not found in env dev"
    assert bob.get(bobs["id"]).json()["dependents"] == []
    assert bob.cancel(bobs["id"]).status_code == 200


def keyed_id(user: ApiUser, idempotency_key: str) -> str:
    """The id a key maps to (jobrelay.service: deterministic, so a repeat finds the first job)."""
    return "k" + hashlib.sha256(f"{user.env}\0{user.uid}\0{idempotency_key}".encode()).hexdigest()[:23]


def test_batch_job_may_depend_on_an_earlier_job_of_the_same_batch(alice: ApiUser) -> None:
    parent_key, repeat_key = key(), key()
    first = alice.submit(echo("stored", idempotency_key=repeat_key)).json()
    alice.wait(first["id"])
    parent = keyed_id(alice, parent_key)
    r = alice.batch(
        [
            echo("parent", idempotency_key=parent_key, delay_seconds=1),
            echo("child", depends_on=[parent]),
            echo("stored", idempotency_key=repeat_key),
            echo("after the repeat", depends_on=[first["id"]]),
        ]
    )
    assert r.status_code == 202, r.text
    new_parent, child, repeat, after = r.json()["jobs"]
    assert new_parent["id"] == parent and new_parent["dependents"] == [child["id"]]
    assert child["status"] == "queued" and child["waiting_on"] == [parent]
    assert repeat["id"] == first["id"]
    assert after["status"] == "queued" and after["waiting_on"] == []
    assert alice.wait(child["id"], timeout=60)["status"] == "succeeded"
    assert alice.wait(after["id"])["status"] == "succeeded"


# -- 2. reports never land on jobrelay's own collections ----------------------------------------------


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"collection": "orders", "output": "jobs"}, "jobrelay owns"),
        ({"collection": "orders", "output": "dead_letters"}, "jobrelay owns"),
        ({"collection": "orders", "output": "job_results"}, "jobrelay owns"),
        ({"collection": "orders", "output": "schedules"}, "jobrelay owns"),
        ({"collection": "orders", "output": "pipelines"}, "jobrelay owns"),
        ({"collection": "orders", "output": "jobrelay_flaky_runs"}, "jobrelay owns"),
        ({"collection": "orders", "output": "jobs/x/reports"}, "jobrelay owns"),
        ({"collection": "orders", "output": "__reports__"}, "reserved"),
        ({"collection": "orders", "output": "elsewhere"}, "report_outputs"),
        ({"collection": "jobs", "group_by": "owner"}, "jobrelay owns"),
        ({"collection": "dead_letters"}, "jobrelay owns"),
    ],
)
def test_report_on_or_into_jobrelays_own_collections_is_refused(
    stack: Stack, alice: ApiUser, payload: dict[str, Any], says: str
) -> None:
    with writes_nothing(stack):
        r = alice.submit({"type": "report", "payload": payload})
        assert r.status_code == 422, r.text
        assert says in error(r)


def test_report_writes_to_an_allowed_output_and_its_job_ends(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "report", "payload": {"collection": "orders-h14", "output": "reports"}}).json()
    done = alice.wait(job["id"])
    assert done["status"] == "succeeded" and done["result"]["document"] == f"reports/{job['id']}"


# -- 3. scripts declare who may run them ---------------------------------------------------------------


def script(name: str, **args: str) -> dict[str, Any]:
    return {"type": "script", "payload": {"script": name, "args": args}, "delay_seconds": 600}


EXPORT = script("firestore-export", bucket="attacker-bucket", prefix="all")
BUILD = script("app-build", workspace="web")
TESTS = script("app-tests", workspace="web")


@pytest.mark.parametrize(
    ("env", "roles", "spec", "says"),
    [
        ("prod", (), EXPORT, "script 'firestore-export' in env prod: it needs an operator"),
        ("dev", ("reporter", "developer"), EXPORT, "it needs an operator"),
        ("stg", (), BUILD, "script 'app-build' in env stg: it needs an operator"),
        ("dev", ("reporter",), TESTS, "it needs one of the roles ['developer']"),
    ],
)
def test_scripts_refuse_callers_without_their_role(
    stack: Stack, env: str, roles: tuple[str, ...], spec: dict[str, Any], says: str
) -> None:
    user = ApiUser(stack, env, "script-user", roles=roles)
    with writes_nothing(stack, env):
        r = user.submit(spec)
        assert r.status_code == 403, r.text
        assert says in error(r)


@pytest.mark.parametrize(
    ("roles", "admin", "spec"),
    [(("developer",), False, TESTS), ((), True, EXPORT)],
    ids=["developer-runs-app-tests", "operator-runs-firestore-export"],
)
def test_scripts_run_for_their_role_or_an_operator(
    stack: Stack, roles: tuple[str, ...], admin: bool, spec: dict[str, Any]
) -> None:
    caller = ApiUser(stack, "dev", "script-runner", admin=admin, roles=roles)
    r = caller.submit(spec)
    assert r.status_code == 202, r.text
    assert caller.cancel(r.json()["id"]).status_code == 200


# -- 4. redrive selects every dead letter only when told `all: true` ---------------------------------


@pytest.fixture(scope="module")
def dead_job(stack: Stack) -> dict[str, Any]:
    """One open dead letter in dev, so that "select everything" would have something to redrive."""
    user = ApiUser(stack, "dev", "redrive-owner")
    job = user.submit({"type": "flaky", "payload": {"fail_times": 1, "fatal": True, "message": "h14 redrive"}})
    dead = user.wait(job.json()["id"])
    admin = ApiUser(stack, "dev", "root", admin=True)
    wait_for(
        lambda: requests.get(admin.url(f"/dead-letters/{dead['id']}"), headers=admin.headers, timeout=10).ok,
        what="dead letter recorded",
    )
    return dead


def redrive(admin: ApiUser, body: Any) -> requests.Response:
    return requests.post(admin.url("/dead-letters:redrive"), json=body, headers=admin.headers, timeout=30)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"fingerprint": ""}, 422, "fingerprint"),
        ({"fingerprint": "   "}, 422, "fingerprint"),
        ({"fingerprint": "x" * 10_000}, 422, "fingerprint"),
        ({"job_ids": []}, 422, "empty list"),
        ({"job_ids": ["../x"]}, 422, "not a job id"),
        ({"all": False}, 422, "exactly one"),
        ({"all": "yes"}, 422, "all"),
        ({}, 422, "exactly one"),
        ({"fingerprint": "0000000000000000"}, 404, "no open dead letter has fingerprint '0000000000000000'"),
    ],
)
def test_redrive_selects_nothing_it_was_not_told_to(
    stack: Stack, admin: ApiUser, dead_job: dict[str, Any], body: Any, status: int, says: str
) -> None:
    with writes_nothing(stack):
        r = redrive(admin, body)
        assert r.status_code == status, r.text
        assert says in error(r)
    assert admin.get(dead_job["id"]).json()["status"] == "dead_lettered"


def test_cli_redrive_of_a_fingerprint_with_no_dead_letter_exits_non_zero(stack: Stack) -> None:
    result = run(stack, "dlq", "redrive", "--fingerprint", "0000000000000000", "--yes", uid="root", admin=True)
    assert result.exit_code == 6, result.output
    assert "no open dead letter has fingerprint" in result.stderr
    blank = run(stack, "dlq", "redrive", "--fingerprint", " ", "--yes", uid="root", admin=True)
    assert blank.exit_code == 4 and "--fingerprint" in blank.stderr


# -- 12. another user's job reads exactly as a missing one --------------------------------------------


def test_another_users_job_answers_as_a_missing_one(stack: Stack, alice: ApiUser, bob: ApiUser) -> None:
    job = alice.submit(echo("private", delay_seconds=600)).json()
    missing = "0123456789abcdef01234567"
    with writes_nothing(stack):
        for call in (bob.get, bob.cancel):
            foreign, absent = call(job["id"]), call(missing)
            assert foreign.status_code == absent.status_code == 404
            same_shape = {**absent.json()["error"], "message": error(absent).replace(missing, job["id"])}
            assert foreign.json() == {"error": {**same_shape, "details": {"job_id": job["id"]}}}
        dep = bob.submit(echo("x", depends_on=[job["id"]]))
        nodep = bob.submit(echo("x", depends_on=[missing]))
        assert dep.status_code == nodep.status_code == 422
        assert error(dep) == error(nodep).replace(missing, job["id"])
        # Dead letters are for operators: a user learns nothing of which exist.
        for job_id in (job["id"], missing):
            r = requests.get(bob.url(f"/dead-letters/{job_id}"), headers=bob.headers, timeout=10)
            assert r.status_code == 403 and job_id not in r.text
    assert alice.cancel(job["id"]).status_code == 200


# -- 19. the unknown-type error offers what the caller may submit --------------------------------------


@pytest.mark.parametrize(
    ("env", "roles", "offered"),
    [
        ("dev", (), ["downstream", "echo", "fanout", "flaky", "gather", "script", "sleep"]),
        ("dev", ("reporter",), ["downstream", "echo", "fanout", "flaky", "gather", "report", "script", "sleep"]),
        ("prod", (), ["script"]),
    ],
)
def test_unknown_type_offers_only_types_the_caller_may_submit(
    stack: Stack, env: str, roles: tuple[str, ...], offered: list[str]
) -> None:
    user = ApiUser(stack, env, "curious", roles=roles)
    with writes_nothing(stack, env):
        r = user.submit({"type": "nope", "payload": {}})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["offered"] == offered
    assert error(r).endswith(f"offered: {', '.join(offered)}")


# -- cancel says plainly that a running job may still succeed ------------------------------------------


def test_cancel_answer_says_what_the_cancel_did(alice: ApiUser) -> None:
    waiting = alice.submit(echo("later", delay_seconds=600)).json()
    r = alice.cancel(waiting["id"])
    assert r.status_code == 200 and r.json()["cancel"]["outcome"] == "cancelled"
    running = alice.submit({"type": "sleep", "payload": {"seconds": 1.5}}).json()
    alice.wait(running["id"], statuses={"running"}, timeout=30)
    r = alice.cancel(running["id"])
    assert r.status_code == 202, r.text
    cancel = r.json()["cancel"]
    assert cancel["outcome"] == "requested" and "still ends succeeded" in cancel["message"]
    # Which it ends as is the handler's race: sleep checks for cancellation between its one-second steps.
    assert alice.wait(running["id"], timeout=30)["status"] in ("cancelled", "succeeded")
