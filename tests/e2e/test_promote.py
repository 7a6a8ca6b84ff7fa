"""`jobrelay promote` against the session stack: a job, a schedule's job and a pipeline run in the next
env and both sides link; every refusal (skipping an env, backwards, unknown id, a non-operator, a spec
the target env refuses) says why and writes nothing in any env (documents counted before and after).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from typer.testing import CliRunner, Result

from jobrelay import cli, clients
from jobrelay.local.stack import Stack
from tests.support import ApiUser, count_jobs, wait_for

runner = CliRunner()


def promote(stack: Stack, *args: str, uid: str, env: str = "dev", admin: bool = True) -> Result:
    base = ["--api", stack.url("api"), "--state-dir", str(stack.state_dir), "--env", env, "--local-user", uid]
    return runner.invoke(cli.app, [*base, *(["--admin"] if admin else []), "promote", *args], env={"COLUMNS": "300"})


def counts(stack: Stack) -> dict[str, int]:
    return {env: count_jobs(stack, env) for env in ("dev", "stg", "prod")}


def pipeline_counts(stack: Stack) -> dict[str, int]:
    return {
        env: int(
            clients.firestore_client(stack.infra.env(env).project).collection("pipelines").count().get()[0][0].value
        )
        for env in ("dev", "stg", "prod")
    }


def pipeline(user: ApiUser, pipeline_id: str) -> dict[str, Any]:
    r = requests.get(user.url(f"/pipelines/{pipeline_id}"), headers=user.headers, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def submit_pipeline(user: ApiUser, body: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(user.url("/pipelines"), json=body, headers=user.headers, timeout=60)
    assert r.status_code == 202, r.text
    made: dict[str, Any] = r.json()
    return made


def schedule_doc(stack: Stack, env: str, name: str) -> dict[str, Any]:
    db = clients.firestore_client(stack.infra.env(env).project)
    return db.collection("schedules").document(name).get().to_dict() or {}


@pytest.fixture
def uid() -> str:
    return f"promoter-{uuid.uuid4().hex[:8]}"


def test_a_job_promoted_to_stg_runs_there_and_both_sides_link(stack: Stack, uid: str) -> None:
    dev, stg = ApiUser(stack, "dev", uid, admin=True), ApiUser(stack, "stg", uid, admin=True)
    source = dev.submit({"type": "report", "payload": {"collection": "promoted"}, "labels": {"team": "data"}}).json()
    dev.wait(source["id"])
    before = counts(stack)
    result = promote(stack, source["id"], "--to", "stg", "--watch", uid=uid)
    assert result.exit_code == 0, result.output
    new_id = result.stdout.split(" -> stg job ")[1].split()[0]
    job = stg.get(new_id).json()
    assert job["status"] == "succeeded" and job["owner"] == uid and job["env"] == "stg"
    assert (job["promoted_from"]["env"], job["promoted_from"]["id"], job["promoted_from"]["by"]) == (
        "dev",
        source["id"],
        uid,
    )
    assert job["labels"] == {"team": "data", "promoted_from": "dev"}
    assert [(link["env"], link["id"]) for link in dev.get(source["id"]).json()["promoted_to"]] == [("stg", new_id)]
    assert counts(stack) == {**before, "stg": before["stg"] + 1}
    # Again: the first promoted job, nothing new run, the link recorded once.
    again = promote(stack, source["id"], "--to", "stg", uid=uid)
    assert again.exit_code == 0 and new_id in again.stdout and "promoted before" in again.stdout
    assert counts(stack) == {**before, "stg": before["stg"] + 1}
    assert len(dev.get(source["id"]).json()["promoted_to"]) == 1


def test_a_schedules_job_spec_goes_from_stg_to_prod(stack: Stack, uid: str) -> None:
    prod = ApiUser(stack, "prod", uid, admin=True)
    before = counts(stack)
    result = promote(stack, "daily-user-report", "--kind", "schedule", "--to", "prod", "--watch", uid=uid, env="stg")
    assert result.exit_code == 0, result.output
    new_id = result.stdout.split(" -> prod job ")[1].split()[0]
    job = prod.get(new_id).json()
    assert job["type"] == "report" and job["status"] == "succeeded" and job["payload"]["group_by"] == "plan"
    assert job["promoted_from"]["kind"] == "schedule" and job["promoted_from"]["id"] == "daily-user-report"
    assert "schedule" not in job["labels"], "the promoted job must not pass for a tick of prod's own schedule"
    links = schedule_doc(stack, "stg", "daily-user-report")["promoted_to"]
    assert any(link["env"] == "prod" and link["id"] == new_id for link in links)
    assert counts(stack) == {**before, "prod": before["prod"] + 1}


def test_a_pipeline_goes_dev_to_stg_to_prod_as_one_pipeline_and_each_side_links(stack: Stack, uid: str) -> None:
    dev, stg, prod = (ApiUser(stack, env, uid, admin=True) for env in ("dev", "stg", "prod"))
    report = {"type": "report", "payload": {"collection": f"promoted-{uid}"}}
    body = {
        "name": "nightly",
        "labels": {"team": "data"},
        "steps": {"export": report, "summary": {**report, "after": ["export"], "allow_failed_children": 1}},
    }
    source = submit_pipeline(dev, body)
    wait_for(lambda: pipeline(dev, source["id"])["status"] == "succeeded", timeout=60, what="the dev pipeline")
    jobs, pipelines = counts(stack), pipeline_counts(stack)

    result = promote(stack, source["id"], "--kind", "pipeline", "--to", "stg", "--watch", uid=uid)
    assert result.exit_code == 0, result.output
    stg_id = result.stdout.split(" -> stg pipeline ")[1].split()[0]
    assert f"stg pipeline {stg_id}: succeeded" in result.stdout
    made = pipeline(stg, stg_id)
    assert made["status"] == "succeeded" and made["owner"] == uid and made["env"] == "stg"
    assert made["name"] == "nightly" and made["labels"] == {"team": "data", "promoted_from": "dev"}
    assert (made["promoted_from"]["env"], made["promoted_from"]["kind"], made["promoted_from"]["id"]) == (
        "dev",
        "pipeline",
        source["id"],
    )
    assert made["order"] == ["export", "summary"] and made["steps"]["summary"]["after"] == ["export"]
    summary = stg.get(made["steps"]["summary"]["job_id"]).json()
    assert summary["env"] == "stg" and summary["status"] == "succeeded" and summary["allow_failed_children"] == 1
    assert summary["payload"]["collection"] == f"promoted-{uid}" and summary["pipeline_id"] == stg_id
    links = pipeline(dev, source["id"])["promoted_to"]
    assert [(link["env"], link["kind"], link["id"], link["by"]) for link in links] == [("stg", "pipeline", stg_id, uid)]
    assert counts(stack) == {**jobs, "stg": jobs["stg"] + 2}
    assert pipeline_counts(stack) == {**pipelines, "stg": pipelines["stg"] + 1}

    # Again: the first promoted pipeline, nothing new run, the link recorded once.
    again = promote(stack, source["id"], "--kind", "pipeline", "--to", "stg", uid=uid)
    assert again.exit_code == 0 and stg_id in again.stdout and "promoted before" in again.stdout
    assert counts(stack) == {**jobs, "stg": jobs["stg"] + 2} and len(pipeline(dev, source["id"])["promoted_to"]) == 1

    # dev -> prod is refused by prod's API too (the CLI refuses it before calling anything), writing nothing.
    spec = requests.get(
        dev.url(f"/promotions/pipeline/{source['id']}"), params={"to": "stg"}, headers=dev.headers, timeout=30
    )
    skip = requests.post(
        prod.url("/promotions"), json={"from": spec.json()["from"], "spec": spec.json()["spec"]}, headers=prod.headers
    )
    assert skip.status_code == 422 and "dev -> prod skips stg" in skip.json()["error"]["message"], skip.text
    assert pipeline_counts(stack)["prod"] == pipelines["prod"]

    # The stg pipeline on to prod: the next step of the chain.
    result = promote(stack, stg_id, "--kind", "pipeline", "--to", "prod", "--watch", uid=uid, env="stg")
    assert result.exit_code == 0, result.output
    prod_id = result.stdout.split(" -> prod pipeline ")[1].split()[0]
    last = pipeline(prod, prod_id)
    assert last["status"] == "succeeded" and last["labels"] == {"team": "data", "promoted_from": "stg"}
    assert (last["promoted_from"]["env"], last["promoted_from"]["id"]) == ("stg", stg_id)
    assert [(link["env"], link["id"]) for link in pipeline(stg, stg_id)["promoted_to"]] == [("prod", prod_id)]
    assert counts(stack) == {**jobs, "stg": jobs["stg"] + 2, "prod": jobs["prod"] + 2}


@pytest.mark.parametrize(
    ("args", "env", "admin", "code", "says"),
    [
        (("--to", "prod"), "dev", True, 4, "dev -> prod skips stg: promote to stg first"),
        (("--to", "dev"), "stg", True, 4, "stg -> dev goes backwards"),
        (("--to", "stg"), "prod", True, 4, "prod -> stg goes backwards"),
        (("--to", "stg", "--kind", "thing"), "dev", True, 4, "unknown --kind"),
        (("--to", "stg"), "dev", False, 5, "is not an operator of env dev"),
    ],
)
def test_wrong_directions_and_callers_are_refused_and_write_nothing(
    stack: Stack, uid: str, args: tuple[str, ...], env: str, admin: bool, code: int, says: str
) -> None:
    dev = ApiUser(stack, "dev", uid, admin=True)
    source = dev.submit({"type": "report", "payload": {"collection": "refused"}}).json()
    before = counts(stack)
    result = promote(stack, source["id"], *args, uid=uid, env=env, admin=admin)
    assert result.exit_code == code and says in result.output, result.output
    assert counts(stack) == before
    assert dev.get(source["id"]).json()["promoted_to"] == []


def test_unknown_ids_and_specs_the_target_refuses_write_nothing(stack: Stack, uid: str) -> None:
    dev = ApiUser(stack, "dev", uid, admin=True)
    sleeper = dev.submit({"type": "sleep", "payload": {"seconds": 0}}).json()  # test-only: stg does not offer it
    report = {"type": "report", "payload": {"collection": "refused"}}
    echoes = submit_pipeline(
        dev,
        {"name": "mixed", "steps": {"first": report, "second": {"type": "echo", "payload": {"message": "x"}}}},
    )
    before, pipelines_before = counts(stack), pipeline_counts(stack)
    stg_schedules = schedule_doc(stack, "dev", "test-echo").get("promoted_to")
    cases = [
        ((sleeper["id"], "--to", "stg"), 6, "unknown job type 'sleep' in env stg"),
        (("nope-not-a-job", "--to", "stg"), 6, "not found in env dev"),
        (("test-echo", "--kind", "schedule", "--to", "stg"), 6, "unknown job type 'echo' in env stg"),
        (("maintenance", "--kind", "schedule", "--to", "stg"), 6, "housekeeping"),
        (
            ("daily-user-report", "--kind", "schedule", "--to", "stg"),
            6,
            "no schedule 'daily-user-report' runs in env dev",
        ),
        (("nope-not-a-pipeline", "--kind", "pipeline", "--to", "stg"), 6, "pipeline 'nope-not-a-pipeline' not found"),
        # A pipeline goes all steps or none: one step of a type stg does not offer refuses the whole.
        ((echoes["id"], "--kind", "pipeline", "--to", "stg"), 6, "steps.second: unknown job type 'echo' in env stg"),
        # A schedule that starts a pipeline promotes that pipeline (its steps are echoes too).
        (("test-pipeline", "--kind", "schedule", "--to", "stg"), 6, "steps.first: unknown job type 'echo' in env stg"),
    ]
    for args, code, says in cases:
        result = promote(stack, *args, uid=uid)
        assert result.exit_code == code and says in result.output, (args, result.output)
    assert counts(stack) == before and pipeline_counts(stack) == pipelines_before
    assert dev.get(sleeper["id"]).json()["promoted_to"] == []
    assert pipeline(dev, echoes["id"]).get("promoted_to", []) == []
    assert schedule_doc(stack, "dev", "test-echo").get("promoted_to") == stg_schedules


def test_a_token_of_one_env_is_not_taken_for_the_other(stack: Stack, uid: str) -> None:
    dev = ApiUser(stack, "dev", uid, admin=True)
    source = dev.submit({"type": "report", "payload": {"collection": "token"}}).json()
    before = counts(stack)
    base = ["--api", stack.url("api"), "--env", "dev", "--token", dev.token()]
    result = runner.invoke(cli.app, [*base, "promote", source["id"], "--to", "stg"], env={"COLUMNS": "300"})
    assert result.exit_code == 4 and "--to-token" in result.output, result.output
    # And a dev token given as the stg token is refused by stg's API (another project's token).
    result = runner.invoke(
        cli.app, [*base, "promote", source["id"], "--to", "stg", "--to-token", dev.token()], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 5, result.output
    assert counts(stack) == before and dev.get(source["id"]).json()["promoted_to"] == []
