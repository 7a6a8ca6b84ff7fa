"""Pipelines on the local stack (issue 16): order, failure and retry, cancel, fan-out and fan-in, a
worker killed during a fan-out, and every bad input refused with nothing written."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
import requests

from jobrelay import clients
from jobrelay.fanout import child_id
from jobrelay.local.stack import Stack
from tests.support import ApiUser, client_read, count_jobs, id_token, wait_for

PIPELINE_FINAL = {"succeeded", "failed", "cancelled"}


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Pipelines:
    """A user's calls to the pipeline routes."""

    def __init__(self, user: ApiUser) -> None:
        self.user = user

    def submit(self, body: Any) -> requests.Response:
        return requests.post(self.user.url("/pipelines"), json=body, headers=self.user.headers, timeout=60)

    def get(self, pipeline_id: str) -> requests.Response:
        return requests.get(self.user.url(f"/pipelines/{pipeline_id}"), headers=self.user.headers, timeout=30)

    def post(self, pipeline_id: str, action: str) -> requests.Response:
        return requests.post(
            self.user.url(f"/pipelines/{pipeline_id}:{action}"), headers=self.user.headers, timeout=120
        )

    def list(self, **params: Any) -> requests.Response:
        return requests.get(self.user.url("/pipelines"), params=params, headers=self.user.headers, timeout=30)

    def wait(self, pipeline_id: str, statuses: set[str] = PIPELINE_FINAL, timeout: float = 90) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            r = self.get(pipeline_id)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body if body["status"] in statuses else None

        found: dict[str, Any] = wait_for(done, timeout=timeout, what=f"pipeline {pipeline_id} in {statuses}")
        return found

    def jobs(self, pipeline: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {name: self.user.get(step["job_id"]).json() for name, step in pipeline["steps"].items()}


@pytest.fixture
def pipes(alice: ApiUser) -> Pipelines:
    return Pipelines(alice)


def echo(message: str, **more: Any) -> dict[str, Any]:
    return {"type": "echo", "payload": {"message": message}, **more}


def test_a_diamond_runs_in_order_and_the_last_step_reads_the_others_results(pipes: Pipelines) -> None:
    r = pipes.submit(
        {
            "name": "diamond",
            "labels": {"suite": "e2e"},
            "steps": {
                "a": echo("a"),
                "b": {"type": "sleep", "payload": {"seconds": 0.5}, "after": ["a"]},
                "c": echo("c", after=["a"]),
                "d": {"type": "gather", "payload": {}, "after": ["b", "c"]},
            },
        }
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "running" and body["owner"] == "alice" and list(body["steps"]) == ["a", "b", "c", "d"]
    assert r.headers["Location"].endswith(body["id"])
    done = pipes.wait(body["id"])
    assert done["status"] == "succeeded" and done["finished_at"]
    assert done["counts"]["succeeded"] == 4 and done["counts"]["total"] == 4
    jobs = pipes.jobs(done)
    assert {n: j["status"] for n, j in jobs.items()} == dict.fromkeys("abcd", "succeeded")
    assert all(j["pipeline_id"] == body["id"] and j["step"] == n for n, j in jobs.items())
    for later, earlier in (("b", "a"), ("c", "a"), ("d", "b"), ("d", "c")):
        assert at(jobs[later]["started_at"]) >= at(jobs[earlier]["finished_at"]), (later, earlier)
    assert jobs["d"]["result"]["results"] == {"b": {"slept": 0.5}, "c": {"message": "c"}}


def test_a_step_that_fails_skips_exactly_its_dependents_and_retry_runs_them(pipes: Pipelines) -> None:
    r = pipes.submit(
        {
            "name": "half-failed",
            "steps": {
                "a": echo("a"),
                "b": {"type": "flaky", "payload": {"fail_times": 1, "fatal": True}, "after": ["a"]},
                "c": echo("c", after=["b"]),
                "e": echo("e", after=["c"]),
                "d": echo("d", after=["a"]),
            },
        }
    )
    assert r.status_code == 202, r.text
    failed = pipes.wait(r.json()["id"])
    assert failed["status"] == "failed"
    first = pipes.jobs(failed)
    assert {n: j["status"] for n, j in first.items()} == {
        "a": "succeeded",
        "b": "dead_lettered",
        "c": "skipped",
        "e": "skipped",
        "d": "succeeded",
    }
    retried = pipes.post(failed["id"], "retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "running" and retried.json()["retry_count"] == 1
    done = pipes.wait(failed["id"])
    assert done["status"] == "succeeded"
    again = pipes.jobs(done)
    assert again["b"]["attempt"] == 2 and again["b"]["status"] == "succeeded"
    for name in ("a", "d"):  # succeeded steps are not run again
        assert again[name]["attempt"] == 1 and again[name]["finished_at"] == first[name]["finished_at"]
    assert at(again["c"]["started_at"]) >= at(again["b"]["finished_at"])
    assert at(again["e"]["started_at"]) >= at(again["c"]["finished_at"])
    assert pipes.post(failed["id"], "retry").status_code == 409  # only a failed pipeline is retried


def test_cancel_stops_a_running_pipeline(pipes: Pipelines) -> None:
    r = pipes.submit(
        {
            "name": "to-cancel",
            "steps": {"slow": {"type": "sleep", "payload": {"seconds": 30}}, "next": echo("never", after=["slow"])},
        }
    )
    pipeline = r.json()
    pipes.user.wait(pipeline["steps"]["slow"]["job_id"], statuses={"running"}, timeout=30)
    cancelled = pipes.post(pipeline["id"], "cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    done = pipes.wait(pipeline["id"], timeout=30)
    assert done["status"] == "cancelled" and done["cancel_requested"]
    assert {n: j["status"] for n, j in pipes.jobs(done).items()} == {"slow": "cancelled", "next": "cancelled"}
    assert pipes.post(pipeline["id"], "cancel").status_code == 409


def test_a_fan_out_of_1000_children_ends_before_the_next_step_starts(stack: Stack, pipes: Pipelines) -> None:
    r = pipes.submit(
        {
            "name": "fan-1000",
            "steps": {
                "fan": {"type": "fanout", "payload": {"count": 1000, "child": echo("child")}},
                "after": {"type": "gather", "payload": {"children_of": "fan"}, "after": ["fan"]},
            },
        }
    )
    assert r.status_code == 202, r.text
    done = pipes.wait(r.json()["id"], timeout=240)
    assert done["status"] == "succeeded", done
    assert done["steps"]["fan"]["children"] == 1000
    jobs = pipes.jobs(done)
    fan = jobs["fan"]
    assert fan["result"]["children"] == {"parent_id": fan["id"], "total": 1000, "succeeded": 1000, "failed": 0}
    assert fan["result"]["returned"] == {"spawned": 1000}
    assert jobs["after"]["result"]["children_succeeded"] == 1000
    # ctx.results.children walks them in index order (read by id: no query over the shards)
    assert jobs["after"]["result"]["first_children"] == [child_id(fan["id"], i) for i in range(20)]
    children = children_of(stack, fan["id"])
    assert len(children) == 1000 and {c["status"] for c in children} == {"succeeded"}
    assert {c["owner"] for c in children} == {"alice"} and sorted(c["child_index"] for c in children) == list(
        range(1000)
    )
    last_child = max(c["finished_at"] for c in children)
    assert at(jobs["after"]["started_at"]) >= last_child
    assert at(fan["finished_at"]) >= last_child


def children_of(stack: Stack, parent_id: str) -> list[dict[str, Any]]:
    from google.cloud import firestore

    db = clients.firestore_client(stack.infra.env("dev").project)
    q = db.collection("jobs").where(filter=firestore.FieldFilter("parent_id", "==", parent_id))
    return [s.to_dict() or {} for s in q.stream()]


def test_a_worker_killed_during_a_fan_out_loses_nothing(stack: Stack, pipes: Pipelines) -> None:
    r = pipes.submit(
        {
            "name": "fan-kill",
            "steps": {
                "fan": {
                    "type": "fanout",
                    "payload": {"count": 200, "child": {"type": "sleep", "payload": {"seconds": 0.3}, "class": "A"}},
                },
                "after": echo("after", after=["fan"]),
            },
        }
    )
    pipeline = r.json()
    fan_id = pipeline["steps"]["fan"]["job_id"]
    db = clients.firestore_client(stack.infra.env("dev").project)
    wait_for(
        lambda: sum(1 for c in children_of(stack, fan_id) if c["status"] == "succeeded") >= 20,
        timeout=60,
        what="some children done",
    )
    old = stack.kill("worker")
    stack.wait_restarted("worker", old)
    done = pipes.wait(pipeline["id"], timeout=180)
    assert done["status"] == "succeeded", done
    children = children_of(stack, fan_id)
    assert len(children) == 200 and {c["status"] for c in children} == {"succeeded"}
    assert db.collection("jobs").document(fan_id).get().to_dict()["result"]["children"]["succeeded"] == 200
    lost = [c for c in children if any(e["type"] == "WorkerLost" for e in c.get("errors", []))]
    assert lost, "the kill hit no running child: the test did not test a lost attempt"
    log = (stack.logs / "worker.log").read_text()
    assert all(log.count(f"job {c['id']} succeeded") <= 1 for c in children)  # none ran twice to success


def test_children_failing_beyond_the_allowance_fail_the_step_and_retry_runs_only_them(pipes: Pipelines) -> None:
    failing = {"type": "flaky", "payload": {"fail_times": 1, "fatal": True}}
    r = pipes.submit(
        {
            "name": "fan-failing",
            "steps": {
                "fan": {"type": "fanout", "payload": {"count": 5, "child": echo("ok"), "extra": [failing, failing]}},
                "tolerant": {
                    "type": "fanout",
                    "payload": {"count": 3, "child": echo("ok"), "extra": [failing]},
                    "allow_failed_children": 1,
                },
                "next": echo("next", after=["fan"]),
            },
        }
    )
    pipeline = pipes.wait(r.json()["id"], timeout=90)
    assert pipeline["status"] == "failed"
    jobs = pipes.jobs(pipeline)
    assert jobs["fan"]["status"] == "dead_lettered" and jobs["fan"]["error"]["type"] == "ChildrenFailed"
    assert jobs["fan"]["result"]["children"]["failed"] == 2
    assert jobs["tolerant"]["status"] == "succeeded" and jobs["tolerant"]["result"]["children"]["failed"] == 1
    assert jobs["next"]["status"] == "skipped"
    assert pipes.post(pipeline["id"], "retry").status_code == 200
    done = pipes.wait(pipeline["id"], timeout=90)
    assert done["status"] == "succeeded", done
    again = pipes.jobs(done)
    assert again["fan"]["attempt"] == 1  # its handler did not run again: its two failed children did
    assert again["fan"]["result"]["children"] == {**jobs["fan"]["result"]["children"], "succeeded": 7, "failed": 0}
    assert again["tolerant"]["finished_at"] == jobs["tolerant"]["finished_at"]


def test_another_users_pipeline_answers_as_a_missing_one(stack: Stack, pipes: Pipelines, bob: ApiUser) -> None:
    pipeline = pipes.submit({"name": "mine", "steps": {"a": echo("a", delay_seconds=60)}}).json()
    theirs = Pipelines(bob)
    missing = theirs.get("p" + "0" * 23)
    other = theirs.get(pipeline["id"])
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["message"] == f"pipeline {pipeline['id']!r} not found in env dev"
    assert theirs.post(pipeline["id"], "cancel").status_code == 404
    assert pipeline["id"] not in {p["id"] for p in theirs.list().json()["pipelines"]}
    assert pipeline["id"] in {p["id"] for p in pipes.list(status="running").json()["pipelines"]}
    # the document itself: its owner may watch it, nobody else, and no client may write it
    path = f"pipelines/{pipeline['id']}"
    assert client_read(stack, "dev", path, pipes.user.token()).status_code == 200
    assert client_read(stack, "dev", path, bob.token()).status_code == 403
    assert client_read(stack, "dev", path, id_token(stack, "dev", "root", admin=True)).status_code == 200
    url = f"http://127.0.0.1:{stack.ports['firestore']}/v1/projects/singular-dream-dev/databases/(default)/documents/{path}"
    body = {"fields": {"status": {"stringValue": "succeeded"}}}
    for token in (pipes.user.token(), id_token(stack, "dev", "root", admin=True)):
        assert (
            requests.patch(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 403
        )
    assert pipes.post(pipeline["id"], "cancel").status_code == 200


def test_a_repeated_key_returns_the_first_pipeline_and_another_pipeline_with_it_is_refused(pipes: Pipelines) -> None:
    body = {"name": "keyed", "idempotency_key": "nightly-1", "steps": {"a": echo("a", delay_seconds=60)}}
    first = pipes.submit(body)
    again = pipes.submit(body)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = pipes.submit({**body, "steps": {"a": echo("b", delay_seconds=60)}})
    assert other.status_code == 409 and first.json()["id"] in other.text
    pipes.post(first.json()["id"], "cancel")


def test_a_step_name_given_twice_is_refused_not_silently_dropped(stack: Stack, pipes: Pipelines) -> None:
    body = (
        b'{"name": "x", "steps": {"a": {"type": "echo", "payload": {"message": "1"}},'
        b' "a": {"type": "echo", "payload": {"message": "2"}}}}'
    )
    before = count_jobs(stack, "dev"), count_pipelines(stack)
    headers = {**pipes.user.headers, "Content-Type": "application/json"}
    r = requests.post(pipes.user.url("/pipelines"), data=body, headers=headers, timeout=30)
    assert r.status_code == 422 and "step 'a' is given twice" in r.json()["error"]["message"], r.text
    assert (count_jobs(stack, "dev"), count_pipelines(stack)) == before


def count_pipelines(stack: Stack) -> int:
    db = clients.firestore_client(stack.infra.env("dev").project)
    return int(db.collection("pipelines").count().get()[0][0].value)


BAD: list[tuple[str, Any, int, str]] = [
    ("not an object", [1, 2], 422, "a pipeline is"),
    ("no steps", {"name": "x", "steps": {}}, 422, "steps"),
    ("unknown field", {"name": "x", "steps": {"a": echo("a")}, "stages": 1}, 422, "stages"),
    (
        "cycle",
        {"name": "x", "steps": {"a": echo("a", after=["c"]), "b": echo("b", after=["a"]), "c": echo("c", after=["b"])}},
        422,
        "cycle: a -> c -> b -> a",
    ),
    (
        "self",
        {"name": "x", "steps": {"a": echo("a", after=["a"])}},
        422,
        "steps.a.after: step 'a' cannot come after itself",
    ),
    ("unknown after", {"name": "x", "steps": {"a": echo("a", after=["nope"])}}, 422, "steps.a.after: no step 'nope'"),
    (
        "after twice",
        {"name": "x", "steps": {"a": echo("a"), "b": echo("b", after=["a", "a"])}},
        422,
        "names a step twice",
    ),
    ("invalid name", {"name": "x", "steps": {"Bad Name": echo("a")}}, 422, "'Bad Name' is not a valid step name"),
    ("too many", {"name": "x", "steps": {f"s{i}": echo("a") for i in range(101)}}, 413, "at most 100 steps"),
    (
        "bad payload",
        {"name": "x", "steps": {"a": echo("a"), "b": {"type": "echo", "payload": {}}}},
        422,
        "steps.b: invalid payload for echo: steps.b.payload.message",
    ),
    ("unknown type", {"name": "x", "steps": {"a": {"type": "nope"}}}, 422, "steps.a: unknown job type 'nope'"),
    (
        "not allowed",
        {"name": "x", "steps": {"a": echo("a"), "r": {"type": "report", "payload": {"collection": "users"}}}},
        422,
        "steps.r: user bob may not submit 'report'",
    ),
    (
        "depends_on",
        {"name": "x", "steps": {"a": echo("a", depends_on=["0123456789abcdef01234567"])}},
        422,
        "steps.a.depends_on",
    ),
    ("step key", {"name": "x", "steps": {"a": echo("a", idempotency_key="k")}}, 422, "steps.a.idempotency_key"),
    ("bad class", {"name": "x", "steps": {"a": echo("a", **{"class": "Z"})}}, 422, "steps.a: unknown class 'Z'"),
    (
        "allowance",
        {"name": "x", "steps": {"a": echo("a", allow_failed_children=-1)}},
        422,
        "steps.a.allow_failed_children",
    ),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_pipelines_are_refused_naming_the_step_and_nothing_is_written(
    stack: Stack, bob: ApiUser, case: str, body: Any, status: int, message: str
) -> None:
    jobs, pipelines = count_jobs(stack, "dev"), count_pipelines(stack)
    r = Pipelines(bob).submit(body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"], r.json()
    assert (count_jobs(stack, "dev"), count_pipelines(stack)) == (jobs, pipelines)


def test_the_cli_submits_a_yaml_pipeline_watches_it_and_cancels_and_retries(stack: Stack, tmp_path: Any) -> None:
    from tests.e2e.test_cli import ok, run

    spec = tmp_path / "pipeline.yaml"
    spec.write_text(
        "name: from-cli\n"
        "steps:\n"
        "  first: {type: echo, payload: {message: one}}\n"
        "  second: {type: flaky, payload: {fail_times: 1, fatal: true}, after: [first]}\n"
        "  third: {type: echo, payload: {message: three}, after: [second]}\n"
    )
    out = ok(run(stack, "pipeline", "submit", str(spec), "--watch", "--watch-timeout", "90"), 1)
    pipeline_id = out.splitlines()[0]
    assert "failed" in out
    status = json.loads(ok(run(stack, "pipeline", "status", pipeline_id, "--json")))
    assert {n: s["status"] for n, s in status["steps"].items()} == {
        "first": "succeeded",
        "second": "dead_lettered",
        "third": "skipped",
    }
    table = ok(run(stack, "pipeline", "status", pipeline_id))
    assert "second" in table and "dead_lettered" in table and "first" in table
    assert pipeline_id in ok(run(stack, "pipeline", "list", "--status", "failed"))
    assert "retry 1" in ok(run(stack, "pipeline", "retry", pipeline_id))
    assert ok(run(stack, "pipeline", "watch", pipeline_id, "--timeout", "90")) is not None
    assert ok(run(stack, "pipeline", "cancel", pipeline_id), 6) == ""  # it ended: the API refuses (409)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: {a: {type: echo, payload: {message: a}, after: [b]}}\n")
    refused = run(stack, "pipeline", "submit", str(bad))
    assert refused.exit_code == 6 and "steps.a.after: no step 'b'" in refused.output
    assert run(stack, "pipeline", "submit", str(tmp_path / "missing.yaml")).exit_code == 4


def test_pipeline_answers_match_the_openapi_document(pipes: Pipelines, bob: ApiUser) -> None:
    from tests.e2e.test_openapi import check

    base, one = "/v1/envs/{env}/pipelines", "/v1/envs/{env}/pipelines/{pipeline_id}"
    r = pipes.submit({"name": "doc", "steps": {"a": echo("a", delay_seconds=60), "b": echo("b", after=["a"])}})
    check(r, base, "POST")
    check(pipes.submit({"name": "doc", "steps": {"a": echo("a", after=["a"])}}), base, "POST")
    pipeline_id = r.json()["id"]
    check(pipes.get(pipeline_id), one, "GET")
    check(Pipelines(bob).get(pipeline_id), one, "GET")
    check(pipes.get("not a pipeline"), one, "GET")
    check(pipes.list(page_size=2), base, "GET")
    check(pipes.list(status="nope"), base, "GET")
    check(pipes.post(pipeline_id, "retry"), one + ":retry", "POST")
    check(pipes.post(pipeline_id, "cancel"), one + ":cancel", "POST")
    check(pipes.post(pipeline_id, "cancel"), one + ":cancel", "POST")


def test_a_schedule_may_start_a_pipeline_once_per_tick(stack: Stack, admin: ApiUser) -> None:
    from tests.e2e.test_cron import minute, schedules, tick

    first = tick(stack, "test-pipeline", minute(-45))
    again = tick(stack, "test-pipeline", minute(-45))
    assert first.status_code == 202 and again.status_code == 200, first.text
    pipeline = first.json()
    assert again.json()["id"] == pipeline["id"] and pipeline["schedule"] == "test-pipeline"
    assert pipeline["name"] == "test-pipeline" and list(pipeline["steps"]) == ["first", "then"]
    done = Pipelines(admin).wait(pipeline["id"])
    assert done["status"] == "succeeded" and done["owner"].startswith("jobrelay-scheduler@")
    state = wait_for(
        lambda: (s := schedules(stack)[1][("test-pipeline", "dev")])["last_outcome"] == "succeeded" and s,
        what="the pipeline's outcome recorded on its schedule",
    )
    assert state["last_pipeline_id"] == pipeline["id"] and state["pipeline"] is None  # named after the schedule


def test_cancelling_a_pipeline_whose_fan_out_waits_cancels_its_children(stack: Stack, pipes: Pipelines) -> None:
    slow = {"type": "sleep", "payload": {"seconds": 3}, "class": "C"}  # class C: 20 at a time
    r = pipes.submit(
        {"name": "fan-cancel", "steps": {"fan": {"type": "fanout", "payload": {"count": 60, "child": slow}}}}
    )
    pipeline = r.json()
    fan_id = pipeline["steps"]["fan"]["job_id"]
    pipes.user.wait(fan_id, statuses={"waiting"}, timeout=60)
    assert pipes.post(pipeline["id"], "cancel").status_code in (200, 202)
    done = pipes.wait(pipeline["id"], timeout=60)
    assert done["status"] == "cancelled" and done["steps"]["fan"]["status"] == "cancelled"
    children = wait_for(
        lambda: (
            (cs := children_of(stack, fan_id)) and all(c["status"] in ("succeeded", "cancelled") for c in cs) and cs
        ),
        timeout=60,
        what="every child ended",
    )
    assert len(children) == 60 and sum(c["status"] == "cancelled" for c in children) >= 30


def test_redriving_a_failed_step_from_the_dead_letters_brings_its_pipeline_back(
    pipes: Pipelines, admin: ApiUser
) -> None:
    r = pipes.submit(
        {
            "name": "redrive-step",
            "steps": {
                "bad": {"type": "flaky", "payload": {"fail_times": 1, "fatal": True}},
                "next": echo("next", after=["bad"]),
            },
        }
    )
    failed = pipes.wait(r.json()["id"])
    assert failed["status"] == "failed"
    bad = failed["steps"]["bad"]["job_id"]
    wait_for(lambda: admin.get(bad).json()["status"] == "dead_lettered", what="dead-lettered")
    wait_for(
        lambda: requests.get(admin.url(f"/dead-letters/{bad}"), headers=admin.headers, timeout=10).status_code == 200,
        what="dead letter recorded",
    )
    redrive = requests.post(
        admin.url("/dead-letters:redrive"), json={"job_ids": [bad]}, headers=admin.headers, timeout=30
    )
    assert redrive.status_code == 200 and redrive.json()["redriven"] == 1, redrive.text
    done = pipes.wait(failed["id"])
    assert done["status"] == "succeeded" and {s["status"] for s in done["steps"].values()} == {"succeeded"}


def test_a_plain_job_may_fan_out_too(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "fanout", "payload": {"count": 5, "child": echo("c")}}).json()
    done = alice.wait(job["id"], timeout=60)
    assert done["status"] == "succeeded" and done["spawned"] == 5
    assert done["result"]["children"]["succeeded"] == 5 and done["pipeline_id"] is None
    assert {c["owner"] for c in children_of(stack, job["id"])} == {"alice"}


def test_the_maintenance_pass_ends_a_fan_in_whose_checks_were_lost_and_syncs_a_stale_pipeline(
    stack: Stack, pipes: Pipelines, admin: ApiUser
) -> None:
    from datetime import UTC, timedelta

    from tests.e2e.test_maintenance import put_job, run_maintenance

    submitted = pipes.submit({"name": "to-break", "steps": {"a": echo("a"), "b": echo("b", after=["a"])}})
    done = pipes.wait(submitted.json()["id"])
    db = clients.firestore_client(stack.infra.env("dev").project)
    old = datetime.now(UTC) - timedelta(minutes=10)
    # As a crash could leave them: the pipeline document behind its steps, a fan-out whose children
    # ended without any check reaching it (no task exists for any of them).
    steps = {n: {**s, "status": "running", "started_at": None, "finished_at": None} for n, s in done["steps"].items()}
    db.collection("pipelines").document(done["id"]).update({"status": "running", "steps": steps, "updated_at": old})
    fan = put_job(stack, status="waiting", spawned=2, attempt=1, waiting_since=old, started_at=old, due_at=None)
    for i in range(2):
        put_job(stack, status="succeeded", parent_id=fan, child_index=i, due_at=None)
    report = run_maintenance(stack, admin, -58)
    assert report["status"] == "succeeded", report
    assert done["id"] in report["result"]["pipelines_synced"]["jobs"]
    assert fan in report["result"]["fan_in_checked"]["jobs"], report["result"]
    assert pipes.get(done["id"]).json()["status"] == "succeeded"
    ended = pipes.user.get(fan).json()
    assert ended["status"] == "succeeded" and ended["result"]["children"]["succeeded"] == 2


def test_steps_whose_payloads_are_over_the_pipeline_limit_are_refused(stack: Stack, pipes: Pipelines) -> None:
    big = "x" * 60_000
    before = count_jobs(stack, "dev"), count_pipelines(stack)
    step = {"type": "fanout", "payload": {"count": 0, "child": {"type": "echo", "payload": {"blob": big}}}}
    r = pipes.submit({"name": "huge", "steps": {f"s{i}": step for i in range(72)}})
    assert r.status_code == 413 and "a pipeline holds at most 4194304" in r.json()["error"]["message"]
    assert (count_jobs(stack, "dev"), count_pipelines(stack)) == before
