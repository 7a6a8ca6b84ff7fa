"""The operator CLI against the local stack: every command, its output, its JSON and its exit code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from jobrelay import cli, cli_ops
from jobrelay.client import JobrelayClient
from jobrelay.connection import emulator_token_source
from jobrelay.local import procs
from jobrelay.local.stack import Stack
from tests.support import wait_for

JOBRELAY = Path(sys.executable).with_name("jobrelay")
runner = CliRunner()


def user() -> str:
    """A fresh uid, so a test's job list holds only its own jobs."""
    return f"cli-{uuid.uuid4().hex[:10]}"


def run(stack: Stack, *args: str, uid: str = "alice", admin: bool = False, input: str | None = None) -> Result:
    """`jobrelay --api URL --local-user UID [--admin] ARGS...` in this process."""
    base = ["--api", stack.url("api"), "--local-user", uid, *(["--admin"] if admin else [])]
    return runner.invoke(cli.app, [*base, *args], input=input, env={"JOBRELAY_JSON": None, "COLUMNS": "200"})


def ok(result: Result, code: int = 0) -> str:
    assert result.exit_code == code, f"exit {result.exit_code}, wanted {code}:\n{result.output}"
    return result.stdout


def as_admin(stack: Stack) -> JobrelayClient:
    return JobrelayClient(
        stack.url("api"), "dev", emulator_token_source(stack.auth_host, "singular-dream-dev", "root", admin=True)
    )


def submit(stack: Stack, *args: str, uid: str = "alice") -> str:
    return ok(run(stack, "submit", *args, uid=uid)).strip()


@pytest.mark.parametrize(
    ("job_type", "payload", "code", "shown"),
    [
        ("echo", {"message": "hello [bold]cli[/]"}, 0, ["succeeded", 'result: {"message":"hello [bold]cli[/]"}']),
        ("flaky", {"fail_times": 1, "fatal": True}, 1, ["dead_lettered", "error: Fatal:", "fingerprint: "]),
    ],
    ids=["succeeded-exits-0", "dead-lettered-exits-1"],
)
def test_submit_watch_exits_with_the_outcome_and_status_explains_it(
    stack: Stack, job_type: str, payload: dict[str, Any], code: int, shown: list[str]
) -> None:
    result = run(stack, "submit", job_type, "--payload", json.dumps(payload), "--label", "via=cli", "--watch")
    out = ok(result, code)
    job_id = out.splitlines()[0]
    assert all(s in out for s in shown), out

    status = ok(run(stack, "status", job_id))
    assert job_id in status and "via=cli" in status and f"{job_type} (class A)" in status
    job = json.loads(ok(run(stack, "status", job_id, "--json")))
    assert job["id"] == job_id and job["status"] in ("succeeded", "dead_lettered")
    if code:
        assert job["error"]["fingerprint"] in status and "Fatal: flaky failure (run 1, fatal)" in status
    else:
        assert "succeeded" in status and re.search(r"attempt\s+1 of", status)


def test_cancel_a_waiting_job_and_watch_exits_2(stack: Stack) -> None:
    job_id = submit(stack, "sleep", "--payload", '{"seconds": 5}', "--delay", "300")
    assert ok(run(stack, "cancel", job_id)).strip() == f"job {job_id} cancelled"
    out = ok(run(stack, "watch", job_id), 2)
    assert "cancelled" in out
    again = run(stack, "cancel", job_id)
    assert again.exit_code == 6 and "only queued, retrying or running jobs can be cancelled" in again.stderr


def test_watch_timeout_exits_3_then_a_running_job_cancelled_exits_2(stack: Stack) -> None:
    job_id = submit(stack, "sleep", "--payload", '{"seconds": 20}')
    out = ok(run(stack, "watch", job_id, "--timeout", "1"), 3)
    assert "still " in out and f"jobrelay watch {job_id}" in out
    wait_for(lambda: as_admin(stack).get(job_id)["status"] == "running", what="job running")
    assert "cancel requested" in ok(run(stack, "cancel", job_id))
    assert "cancelled" in ok(run(stack, "watch", job_id, "--timeout", "30", "--interval", "0.2"), 2)


def test_list_is_newest_first_and_filters(stack: Stack) -> None:
    uid = user()
    first = submit(stack, "echo", "--payload", '{"message": "1"}', uid=uid)
    second = submit(stack, "sleep", "--payload", '{"seconds": 0}', uid=uid)
    third = submit(stack, "echo", "--payload", '{"message": "3"}', uid=uid)
    for job_id in (first, second, third):
        ok(run(stack, "watch", job_id, uid=uid))

    listed = json.loads(ok(run(stack, "list", "--json", uid=uid)))["jobs"]
    assert [j["id"] for j in listed] == [third, second, first]
    table = ok(run(stack, "list", uid=uid))
    assert table.index(third) < table.index(second) < table.index(first) and "3 jobs, newest first" in table
    assert [j["id"] for j in json.loads(ok(run(stack, "list", "--type", "sleep", "--json", uid=uid)))["jobs"]] == [
        second
    ]
    assert len(json.loads(ok(run(stack, "list", "--status", "succeeded", "--json", uid=uid)))["jobs"]) == 3
    assert "no jobs match" in ok(run(stack, "list", "--status", "queued", uid=uid))
    limited = ok(run(stack, "list", "--limit", "2", uid=uid))
    assert third in limited and second in limited and first not in limited and "--limit reached" in limited
    owner = json.loads(ok(run(stack, "list", "--owner", uid, "--limit", "5", "--json", uid="root", admin=True)))
    assert {j["owner"] for j in owner["jobs"]} == {uid} and len(owner["jobs"]) == 3


def test_batch_file_and_list_following_pages(stack: Stack, tmp_path: Path) -> None:
    uid = user()
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([{"type": "echo", "payload": {"message": f"n{i}"}} for i in range(55)]))
    ids = ok(run(stack, "submit", "--file", str(batch), uid=uid)).split()
    assert len(ids) == 55 and len(set(ids)) == 55
    listed = json.loads(ok(run(stack, "list", "--limit", "53", "--json", uid=uid)))["jobs"]  # pages of 50 + 3
    assert len(listed) == 53 and len({j["id"] for j in listed}) == 53 and set(j["id"] for j in listed) <= set(ids)
    created = [j["created_at"] for j in listed]
    assert created == sorted(created, reverse=True)


def test_spec_file_flags_override_and_idempotency_key_returns_the_first_job(stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"type": "echo", "payload": {"message": "from file"}, "labels": {"a": "1"}}))
    key = f"cli-{uuid.uuid4().hex}"
    first = run(stack, "submit", "--file", str(spec), "--label", "b=2", "--idempotency-key", key, "--json")
    job = json.loads(ok(first))
    assert job["labels"] == {"a": "1", "b": "2"} and job["payload"] == {"message": "from file"}
    repeat = run(stack, "submit", "--file", str(spec), "--label", "b=2", "--idempotency-key", key)
    assert ok(repeat).strip() == job["id"] and "was used before" in repeat.stderr


def test_dead_letters_list_show_and_redrive(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = uuid.uuid4().hex[:8]
    job_id = submit(
        stack,
        "flaky",
        "--payload",
        json.dumps({"fail_times": 1, "message": f"cli dlq {marker}"}),
        "--max-attempts",
        "1",
    )
    ok(run(stack, "watch", job_id), 1)
    wait_for(lambda: run(stack, "dlq", "show", job_id, uid="root", admin=True).exit_code == 0, what="dead letter")

    letter = json.loads(ok(run(stack, "dlq", "show", job_id, "--json", uid="root", admin=True)))
    fingerprint = letter["fingerprint"]
    shown = ok(run(stack, "dlq", "show", job_id, uid="root", admin=True))
    assert fingerprint in shown and f"cli dlq {marker}" in shown and re.search(r"redriven\s+no", shown)
    groups = ok(run(stack, "dlq", "list", uid="root", admin=True))
    row = next(line for line in groups.splitlines() if fingerprint in line)
    assert "flaky" in row and "RuntimeError" in row and "ago" in row
    body = json.loads(ok(run(stack, "dlq", "list", "--json", uid="root", admin=True)))
    assert fingerprint in {g["fingerprint"] for g in body["groups"]}
    assert job_id in ok(run(stack, "dlq", "list", "--fingerprint", fingerprint, uid="root", admin=True))

    dry = ok(run(stack, "dlq", "redrive", "--fingerprint", fingerprint, "--dry-run", uid="root", admin=True))
    assert job_id in dry and "would_redrive" in dry and "nothing changed" in dry
    refused = run(stack, "dlq", "redrive", "--job", job_id, uid="root", admin=True)
    assert refused.exit_code == 4 and "--yes" in refused.stderr
    monkeypatch.setattr(cli_ops, "stdin_is_terminal", lambda: True)
    declined = ok(run(stack, "dlq", "redrive", "--job", job_id, uid="root", admin=True, input="n\n"))
    assert "would_redrive" in declined and "redrive 1 job in env dev?" in declined and "not redriven" in declined
    assert as_admin(stack).get(job_id)["status"] == "dead_lettered"  # dry run, refusal and "no" changed nothing

    redriven = ok(run(stack, "dlq", "redrive", "--job", job_id, "--yes", uid="root", admin=True))
    assert "redriven 1 of 1" in redriven
    assert "succeeded" in ok(run(stack, "watch", job_id))
    assert as_admin(stack).get(job_id)["attempt"] == 2
    assert "yes, " in ok(run(stack, "dlq", "show", job_id, uid="root", admin=True))


def test_operator_commands_need_the_admin_claim(stack: Stack) -> None:
    for args in (["dlq", "list"], ["queues"], ["stats"]):
        result = run(stack, *args)
        assert result.exit_code == 5 and "admin claim" in result.stderr and "HTTP 403" in result.stderr


def test_queues_and_stats_print_rows_and_json(stack: Stack) -> None:
    table = ok(run(stack, "queues", uid="root", admin=True))
    assert all(f" {c} " in table for c in "ABCD") and "jobrelay-a" in table and "muscle" in table
    queues = json.loads(ok(run(stack, "queues", "--json", uid="root", admin=True)))
    assert queues["env"] == "dev" and [q["class"] for q in queues["queues"]] == ["A", "B", "C", "D"]

    shown = ok(run(stack, "stats", uid="root", admin=True))
    assert "succeeded" in shown and "failure rate" in shown and "p50 / p95" in shown and "oldest queued" in shown
    stats = json.loads(ok(run(stack, "stats", "--window", "15m", "--json", uid="root", admin=True)))
    assert stats["window_seconds"] == 900 and stats["counts"]["by_status"]["succeeded"] >= 1


def test_bad_input_gets_a_clear_message_and_a_non_zero_exit(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = run(stack, "submit", "nope", "--payload", "{}")
    assert unknown.exit_code == 6 and "unknown job type 'nope'" in unknown.stderr and "type: unknown" in unknown.stderr
    bad_json = run(stack, "submit", "echo", "--payload", "{message: hi}")
    assert bad_json.exit_code == 4 and "--payload is not valid JSON" in bad_json.stderr
    bad_payload = run(stack, "submit", "echo", "--payload", '{"words": 1}')
    assert bad_payload.exit_code == 6 and "payload" in bad_payload.stderr
    missing = run(stack, "status", "0123456789abcdef01234567")
    assert missing.exit_code == 6 and "not found" in missing.stderr
    two = run(stack, "dlq", "redrive", "--all", "--fingerprint", "x", uid="root", admin=True)
    assert two.exit_code == 4 and "exactly one of" in two.stderr
    assert runner.invoke(cli.app, ["--env", "qa", "list"]).exit_code == 4
    assert runner.invoke(cli.app, ["list", "--no-such-flag"]).exit_code == 4  # click's usage error, not 2

    monkeypatch.chdir(tmp_path)  # no .jobrelay/local.json here
    no_api = runner.invoke(cli.app, ["list"], env={"JOBRELAY_API": None, "JOBRELAY_STATE_DIR": None})
    assert no_api.exit_code == 4 and "JOBRELAY_API" in no_api.stderr and "jobrelay dev up" in no_api.stderr
    no_user = runner.invoke(cli.app, ["--api", stack.url("api"), "list"], env={"JOBRELAY_LOCAL_USER": None})
    assert no_user.exit_code == 5 and "--local-user" in no_user.stderr
    dead_url = f"http://127.0.0.1:{procs.free_port()}"
    down = runner.invoke(cli.app, ["--api", dead_url, "--local-user", "alice", "list"])
    assert down.exit_code == 7 and f"cannot reach {dead_url}/v1/envs/dev/jobs" in down.stderr


def test_env_vars_alone_drive_the_installed_command(stack: Stack, tmp_path: Path) -> None:
    """The real `jobrelay` executable, configured only by JOBRELAY_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBRELAY_")}
    # The API from the local stack's local.json, found through JOBRELAY_STATE_DIR; JSON output from JOBRELAY_JSON.
    env = {
        **base,
        "JOBRELAY_STATE_DIR": str(stack.state_dir),
        "JOBRELAY_ENV": "dev",
        "JOBRELAY_LOCAL_USER": "alice",
        "JOBRELAY_JSON": "1",
    }
    done = subprocess.run(
        [str(JOBRELAY), "submit", "echo", "--payload", '{"message": "env"}', "--watch"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["result"] == {"message": "env"} and job["owner"] == "alice"

    # The API from JOBRELAY_API; submit --watch of a job cancelled meanwhile exits 2.
    env = {**base, "JOBRELAY_API": stack.url("api"), "JOBRELAY_LOCAL_USER": "alice", "JOBRELAY_WATCH_TIMEOUT": "45"}
    proc = subprocess.Popen(
        [str(JOBRELAY), "submit", "sleep", "--payload", '{"seconds": 30}', "--watch"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        job_id = proc.stdout.readline().strip()
        time.sleep(0.5)
        assert ok(run(stack, "cancel", job_id)).startswith(f"job {job_id} ")
        out, err = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err
    assert f"job {job_id} cancelled" in out
