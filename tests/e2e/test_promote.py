"""`jobrelay promote` against the session stack: a job runs in the next env and both sides link; every
refusal (skipping an env, backwards, unknown id, a non-operator, a spec the target env refuses) says why
and writes nothing in any env (documents counted before and after).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from jobrelay import cli, clients
from jobrelay.local.stack import Stack
from tests.support import ApiUser, count_jobs

runner = CliRunner()


def promote(stack: Stack, *args: str, uid: str, env: str = "dev", admin: bool = True) -> Result:
    base = ["--api", stack.url("api"), "--state-dir", str(stack.state_dir), "--env", env, "--local-user", uid]
    return runner.invoke(cli.app, [*base, *(["--admin"] if admin else []), "promote", *args], env={"COLUMNS": "300"})


def counts(stack: Stack) -> dict[str, int]:
    return {env: count_jobs(stack, env) for env in ("dev", "stg", "prod")}


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
    before = counts(stack)
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
        (("some-pipeline", "--kind", "pipeline", "--to", "stg"), 6, "pipelines are not available on this server"),
    ]
    for args, code, says in cases:
        result = promote(stack, *args, uid=uid)
        assert result.exit_code == code and says in result.output, (args, result.output)
    assert counts(stack) == before
    assert dev.get(sleeper["id"]).json()["promoted_to"] == []
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
