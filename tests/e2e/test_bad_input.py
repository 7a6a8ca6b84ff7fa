"""Every kind of bad input gets the right status and a message naming the problem, and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from jobrelay.local.stack import Stack
from tests.forge import forged_id_token
from tests.support import ApiUser, count_jobs, id_token, project_token, task_names


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    says: str
    send: Callable[[Stack, ApiUser], requests.Response]


def post(
    stack: Stack,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if data is None:
        data = json.dumps(body).encode()
    return requests.post(f"{stack.url('api')}{path}", data=data, headers=h, timeout=30)


def carol(stack: Stack) -> str:
    """carol of dev, signed in through the Auth emulator: a good token, so the case's other fault shows."""
    return id_token(stack, "dev", "carol")


def forged(uid: str = "carol", **kw: Any) -> str:
    """A hand-made dev token, wrong in the one way a case says (an attacker's, not a sign-in)."""
    return forged_id_token("singular-dream-dev", uid, **kw)


ECHO = {"type": "echo", "payload": {"message": "hi"}}
JOBS = "/v1/envs/dev/jobs"

CASES = [
    Case(
        "malformed JSON",
        400,
        "not valid JSON",
        lambda s, u: post(s, JOBS, data=b'{"type": "echo", ', token=carol(s)),
    ),
    Case("empty body", 400, "empty", lambda s, u: post(s, JOBS, data=b"", token=carol(s))),
    Case("body not an object", 422, "JSON object", lambda s, u: post(s, JOBS, [1, 2], token=carol(s))),
    Case(
        "wrong field type",
        422,
        "payload",
        lambda s, u: post(s, JOBS, {"type": "echo", "payload": "hi"}, token=carol(s)),
    ),
    Case(
        "unknown spec field",
        422,
        "colour",
        lambda s, u: post(s, JOBS, {**ECHO, "colour": "red"}, token=carol(s)),
    ),
    Case(
        "unknown job type",
        422,
        "unknown job type 'nope'",
        lambda s, u: post(s, JOBS, {"type": "nope", "payload": {}}, token=carol(s)),
    ),
    Case(
        "payload fails its schema",
        422,
        "payload.seconds",
        lambda s, u: post(s, JOBS, {"type": "sleep", "payload": {"seconds": "soon"}}, token=carol(s)),
    ),
    Case(
        "payload missing a field",
        422,
        "payload.message",
        lambda s, u: post(s, JOBS, {"type": "echo", "payload": {}}, token=carol(s)),
    ),
    Case(
        "payload over the size limit",
        413,
        "limit",
        lambda s, u: post(
            s,
            JOBS,
            {"type": "echo", "payload": {"message": "x" * 9000, "pad": "y" * 70000}},
            token=carol(s),
        ),
    ),
    Case(
        "unknown class",
        422,
        "unknown class 'Z'",
        lambda s, u: post(s, JOBS, {**ECHO, "class": "Z"}, token=carol(s)),
    ),
    Case(
        "both run_at and delay",
        422,
        "not both",
        lambda s, u: post(s, JOBS, {**ECHO, "delay_seconds": 5, "run_at": "2030-01-01T00:00:00Z"}, token=carol(s)),
    ),
    Case(
        "naive run_at",
        422,
        "time zone",
        lambda s, u: post(s, JOBS, {**ECHO, "run_at": "2030-01-01T00:00:00"}, token=carol(s)),
    ),
    Case(
        "max_attempts over the class limit",
        422,
        "max_attempts",
        lambda s, u: post(s, JOBS, {**ECHO, "max_attempts": 50}, token=carol(s)),
    ),
    Case("missing token", 401, "missing Authorization", lambda s, u: post(s, JOBS, ECHO)),
    Case(
        "not a bearer token",
        401,
        "Bearer",
        lambda s, u: post(s, JOBS, ECHO, headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"}),
    ),
    Case("malformed token", 401, "malformed token", lambda s, u: post(s, JOBS, ECHO, token="not-a-jwt")),
    Case("garbage token claims", 401, "malformed token", lambda s, u: post(s, JOBS, ECHO, token="a.b.c")),
    Case(
        "expired token",
        401,
        "expired",
        lambda s, u: post(s, JOBS, ECHO, token=forged(issued_at=0, lifetime_seconds=3600)),
    ),
    Case(
        "token from the future",
        401,
        "future",
        lambda s, u: post(s, JOBS, ECHO, token=forged(issued_at=4_000_000_000)),
    ),
    Case(
        "token of another Firebase project",
        401,
        "not 'singular-dream-dev'",
        lambda s, u: post(s, JOBS, ECHO, token=project_token(s, "someone-else", "carol")),
    ),
    Case(
        "token of another env",
        401,
        "singular-dream-stg",
        lambda s, u: post(s, JOBS, ECHO, token=id_token(s, "stg", "carol")),
    ),
    Case(
        "token with a foreign issuer",
        401,
        "issuer",
        lambda s, u: post(s, JOBS, ECHO, token=forged(extra={"iss": "https://evil.example"})),
    ),
    Case(
        "token without subject",
        401,
        "sub",
        lambda s, u: post(s, JOBS, ECHO, token=forged(extra={"sub": ""})),
    ),
    Case(
        "job type needing a role",
        403,
        "reporter",
        lambda s, u: post(s, JOBS, {"type": "report", "payload": {"collection": "users"}}, token=carol(s)),
    ),
    Case(
        "test job type in prod",
        422,
        "unknown job type 'echo' in env prod",
        lambda s, u: post(s, "/v1/envs/prod/jobs", ECHO, token=id_token(s, "prod", "carol")),
    ),
    Case("unknown env", 404, "env 'qa'", lambda s, u: post(s, "/v1/envs/qa/jobs", ECHO, token=carol(s))),
    Case(
        "batch with one bad spec",
        422,
        "jobs[1]",
        lambda s, u: post(s, JOBS + ":batch", {"jobs": [ECHO, {"type": "echo"}]}, token=carol(s)),
    ),
    Case(
        "batch over the limit",
        413,
        "at most 500",
        lambda s, u: post(s, JOBS + ":batch", {"jobs": [ECHO] * 501}, token=carol(s)),
    ),
    Case(
        "batch without jobs",
        422,
        "jobs",
        lambda s, u: post(s, JOBS + ":batch", {"specs": []}, token=carol(s)),
    ),
    Case("wrong method", 405, "not allowed", lambda s, u: requests.delete(f"{s.url('api')}{JOBS}", timeout=10)),
    Case("unknown route", 404, "no route", lambda s, u: post(s, "/v2/jobs", ECHO, token=carol(s))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_naming_the_problem_and_writes_nothing(stack: Stack, alice: ApiUser, case: Case) -> None:
    jobs_before = {e: count_jobs(stack, e) for e in ("dev", "prod")}
    tasks_before = task_names(stack, "dev") | task_names(stack, "prod")
    r = case.send(stack, alice)
    assert r.status_code == case.status, r.text
    error = r.json()["error"]
    assert case.says in error["message"], error
    assert error["code"]
    assert {e: count_jobs(stack, e) for e in ("dev", "prod")} == jobs_before
    assert (task_names(stack, "dev") | task_names(stack, "prod")) <= tasks_before


def test_another_users_job_cannot_be_read_or_cancelled(stack: Stack, alice: ApiUser, bob: ApiUser) -> None:
    job = alice.submit({"type": "echo", "payload": {"message": "private"}, "delay_seconds": 30}).json()
    for r in (bob.get(job["id"]), bob.cancel(job["id"])):
        assert r.status_code == 403
        assert "another user" in r.json()["error"]["message"]
    assert alice.get(job["id"]).json()["status"] == "queued"


def test_job_of_another_env_is_not_found_there(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit(ECHO).json()
    stg_user = ApiUser(stack, "stg", "alice")
    r = stg_user.get(job["id"])
    assert r.status_code == 404
    assert "not found in env stg" in r.json()["error"]["message"]


def test_submit_rate_limit_answers_429_with_retry_after(stack: Stack) -> None:
    # 600 submits a minute per user in dev: a batch of 500 fits, a second one does not, and writes nothing.
    user = ApiUser(stack, "dev", "quota-user")
    per_minute = stack.infra.env("dev").quotas.submits_per_minute
    specs = [{"type": "echo", "payload": {"message": "q"}} for _ in range(500)]
    assert per_minute < 1000
    assert user.batch(specs).status_code == 202
    before = count_jobs(stack, "dev")
    r = user.batch(specs)
    assert r.status_code == 429, r.text
    assert f"limit of {per_minute} submits a minute" in r.json()["error"]["message"]
    assert int(r.headers["Retry-After"]) > 0
    assert count_jobs(stack, "dev") == before
