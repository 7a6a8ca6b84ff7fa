"""Every kind of bad input gets the right status and a message naming the problem, and writes nothing."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from jobrelay.local.oidc import LocalSigner
from jobrelay.local.stack import Stack
from jobrelay.wsgi import MAX_BODY_BYTES
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


def dev_token(stack: Stack, uid: str = "carol", *, admin: bool = False, roles: tuple[str, ...] = ()) -> str:
    """`uid` of dev, signed in through the Auth emulator: a good token, so the case's other fault shows."""
    return id_token(stack, "dev", uid, admin=admin, roles=roles)


def forged(uid: str = "carol", **kw: Any) -> str:
    """A hand-made dev token, wrong in the one way a case says (an attacker's, not a sign-in)."""
    return forged_id_token("singular-dream-dev", uid, **kw)


ECHO = {"type": "echo", "payload": {"message": "hi"}}
JOBS = "/v1/envs/dev/jobs"
DEEP = b"[" * 10_000 + b"]" * 10_000  # nested far past any parser's recursion limit


def get(stack: Stack, path: str, *, token: str | None = None, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{stack.url('api')}{path}", params=params, headers=headers, timeout=30)


def page_token(*parts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


CASES = [
    Case(
        "malformed JSON",
        400,
        "not valid JSON",
        lambda s, u: post(s, JOBS, data=b'{"type": "echo", ', token=dev_token(s)),
    ),
    Case("empty body", 400, "empty", lambda s, u: post(s, JOBS, data=b"", token=dev_token(s))),
    Case("body not an object", 422, "JSON object", lambda s, u: post(s, JOBS, [1, 2], token=dev_token(s))),
    Case(
        "wrong field type",
        422,
        "payload",
        lambda s, u: post(s, JOBS, {"type": "echo", "payload": "hi"}, token=dev_token(s)),
    ),
    Case(
        "unknown spec field",
        422,
        "colour",
        lambda s, u: post(s, JOBS, {**ECHO, "colour": "red"}, token=dev_token(s)),
    ),
    Case(
        "unknown job type",
        422,
        "unknown job type 'nope'",
        lambda s, u: post(s, JOBS, {"type": "nope", "payload": {}}, token=dev_token(s)),
    ),
    Case(
        "payload fails its schema",
        422,
        "payload.seconds",
        lambda s, u: post(s, JOBS, {"type": "sleep", "payload": {"seconds": "soon"}}, token=dev_token(s)),
    ),
    Case(
        "payload missing a field",
        422,
        "payload.message",
        lambda s, u: post(s, JOBS, {"type": "echo", "payload": {}}, token=dev_token(s)),
    ),
    Case(
        "payload over the size limit",
        413,
        "limit",
        lambda s, u: post(
            s,
            JOBS,
            {"type": "echo", "payload": {"message": "x" * 9000, "pad": "y" * 70000}},
            token=dev_token(s),
        ),
    ),
    Case(
        "unknown class",
        422,
        "unknown class 'Z'",
        lambda s, u: post(s, JOBS, {**ECHO, "class": "Z"}, token=dev_token(s)),
    ),
    Case(
        "both run_at and delay",
        422,
        "not both",
        lambda s, u: post(s, JOBS, {**ECHO, "delay_seconds": 5, "run_at": "2030-01-01T00:00:00Z"}, token=dev_token(s)),
    ),
    Case(
        "naive run_at",
        422,
        "time zone",
        lambda s, u: post(s, JOBS, {**ECHO, "run_at": "2030-01-01T00:00:00"}, token=dev_token(s)),
    ),
    Case(
        "max_attempts over the class limit",
        422,
        "max_attempts",
        lambda s, u: post(s, JOBS, {**ECHO, "max_attempts": 50}, token=dev_token(s)),
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
        lambda s, u: post(s, JOBS, {"type": "report", "payload": {"collection": "users"}}, token=dev_token(s)),
    ),
    Case(
        "test job type in prod",
        422,
        "unknown job type 'echo' in env prod",
        lambda s, u: post(s, "/v1/envs/prod/jobs", ECHO, token=id_token(s, "prod", "carol")),
    ),
    Case("unknown env", 404, "env 'qa'", lambda s, u: post(s, "/v1/envs/qa/jobs", ECHO, token=dev_token(s))),
    Case(
        "batch with one bad spec",
        422,
        "jobs[1]",
        lambda s, u: post(s, JOBS + ":batch", {"jobs": [ECHO, {"type": "echo"}]}, token=dev_token(s)),
    ),
    Case(
        "batch over the limit",
        413,
        "at most 500",
        lambda s, u: post(s, JOBS + ":batch", {"jobs": [ECHO] * 501}, token=dev_token(s)),
    ),
    Case(
        "batch without jobs",
        422,
        "jobs",
        lambda s, u: post(s, JOBS + ":batch", {"specs": []}, token=dev_token(s)),
    ),
    Case("wrong method", 405, "not allowed", lambda s, u: requests.delete(f"{s.url('api')}{JOBS}", timeout=10)),
    Case("unknown route", 404, "no route", lambda s, u: post(s, "/v2/jobs", ECHO, token=dev_token(s))),
    # Issue 14, item 5: nesting is bounded before it reaches the parser's, pydantic's or Firestore's limits.
    Case("submit nested 10,000 deep", 400, "nests", lambda s, u: post(s, JOBS, data=DEEP, token=dev_token(s))),
    Case(
        "batch nested 10,000 deep", 400, "nests", lambda s, u: post(s, JOBS + ":batch", data=DEEP, token=dev_token(s))
    ),
    Case(
        "redrive nested 10,000 deep",
        400,
        "nests",
        lambda s, u: post(s, "/v1/envs/dev/dead-letters:redrive", data=DEEP, token=dev_token(s, admin=True)),
    ),
    Case(
        "body nested past the edge's bound",
        400,
        "more than 32 levels",
        lambda s, u: post(s, JOBS, {"type": "echo", "payload": nested(40)}, token=dev_token(s)),
    ),
    Case(
        "payload nested deeper than Firestore stores",
        422,
        "more than 20 levels",
        lambda s, u: post(
            s,
            JOBS,
            {
                "type": "report",
                "payload": {"collection": "o", "where": [{"field": "a", "op": "==", "value": nested(18)}]},
            },
            token=dev_token(s, roles=("reporter",)),
        ),
    ),
    # Item 6: ids and query values are checked with the rules the store needs.
    Case("job id Firestore reserves", 404, "not found", lambda s, u: get(s, JOBS + "/__x__", token=dev_token(s))),
    Case(
        "cancel of a job id Firestore reserves",
        404,
        "not found",
        lambda s, u: post(s, JOBS + "/__x__:cancel", data=b"", token=dev_token(s)),
    ),
    Case(
        "dead letter of a job id Firestore reserves",
        404,
        "no dead letter",
        lambda s, u: get(s, "/v1/envs/dev/dead-letters/__x__", token=dev_token(s, admin=True)),
    ),
    Case("2,000-character type filter", 422, "type", lambda s, u: get(s, JOBS, token=dev_token(s), type="t" * 2000)),
    Case(
        "long owner filter", 422, "owner", lambda s, u: get(s, JOBS, token=dev_token(s, admin=True), owner="o" * 2000)
    ),
    Case(
        "page token with a foreign id",
        400,
        "page_token",
        lambda s, u: get(s, JOBS, token=dev_token(s), page_token=page_token("2026-01-01T00:00:00+00:00", "__x__")),
    ),
    Case("empty status filter", 422, "status is empty", lambda s, u: get(s, JOBS, token=dev_token(s), status="")),
    Case(
        "empty fingerprint filter",
        422,
        "fingerprint",
        lambda s, u: get(s, "/v1/envs/dev/dead-letters", token=dev_token(s, admin=True), fingerprint=""),
    ),
    Case(
        "10,000-character fingerprint filter",
        422,
        "fingerprint",
        lambda s, u: get(s, "/v1/envs/dev/dead-letters", token=dev_token(s, admin=True), fingerprint="f" * 10_000),
    ),
    # Item 11: a trailing newline passes no id, key or field check.
    Case(
        "path with a newline",
        404,
        "no route",
        lambda s, u: requests.post(
            f"{s.url('api')}/v1/envs/a%0Ab/jobs", json=ECHO, headers=auth(dev_token(s)), timeout=10
        ),
    ),
    Case(
        "label key with a trailing newline",
        422,
        "label key",
        lambda s, u: post(s, JOBS, {**ECHO, "labels": {"team\n": "web"}}, token=dev_token(s)),
    ),
    Case(
        "report field with a trailing newline",
        422,
        "field path",
        lambda s, u: post(
            s,
            JOBS,
            {"type": "report", "payload": {"collection": "orders", "group_by": "status\n"}},
            token=dev_token(s, roles=("reporter",)),
        ),
    ),
]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
        assert r.status_code == 404
        assert r.json()["error"]["message"] == f"job {job['id']} not found in env dev"
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


def test_cron_refuses_an_unverified_caller_before_naming_any_schedule_or_env(stack: Stack) -> None:
    stranger = LocalSigner(stack.key_file).mint(stack.url("api"), "someone@else.iam.gserviceaccount.com")
    jobs_before = count_jobs(stack, "dev")
    for token, status in ((None, 401), (forged(), 401), (stranger, 403)):
        for name, env in (("no-such-schedule", "dev"), ("test-echo", "qa")):
            headers = auth(token) if token else {}
            r = requests.post(f"{stack.url('api')}/v1/cron/{name}", params={"env": env}, headers=headers, timeout=10)
            assert r.status_code == status, r.text
            assert not any(s in r.text for s in stack.infra.schedules), r.text
            assert "serves" not in r.text and "served" not in r.text, r.text
    assert count_jobs(stack, "dev") == jobs_before


def raw_post(stack: Stack, path: str, headers: dict[str, str], parts: Iterable[bytes]) -> tuple[int, dict[str, Any]]:
    """Send a request by hand (a lying Content-Length, an endless chunked body) and read the answer."""
    port = int(stack.url("api").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "127.0.0.1", **headers}.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
        for part in parts:
            sock.sendall(part)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, json.loads(resp.read())


def test_a_body_announced_over_the_limit_is_refused_without_reading_it(stack: Stack) -> None:
    before = count_jobs(stack, "dev")
    status, body = raw_post(
        stack,
        JOBS,
        {**auth(dev_token(stack)), "Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)},
        [b'{"type": "echo", "payload": '],  # the rest never comes: reading it would hang
    )
    assert status == 413, body
    assert "over the limit" in body["error"]["message"]
    assert count_jobs(stack, "dev") == before


def test_a_chunked_body_is_cut_off_at_the_limit(stack: Stack) -> None:
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    count = MAX_BODY_BYTES // len(chunk) + 2  # past the limit, and never the last chunk: reading on would hang
    before = count_jobs(stack, "dev")
    status, body = raw_post(
        stack,
        JOBS,
        {**auth(dev_token(stack)), "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        [frame] * count,
    )
    assert status == 413, body
    assert count_jobs(stack, "dev") == before


@pytest.mark.parametrize("job_id", ["a/b", "../x", "__x__", "abcdef123456\n", "x" * 2000])
def test_worker_drops_a_validly_signed_task_whose_job_id_is_not_an_id(stack: Stack, job_id: str) -> None:
    env = stack.infra.env("dev")
    token = LocalSigner(stack.key_file).mint(stack.url("worker"), env.service_accounts.tasks_invoker)
    before = count_jobs(stack, "dev")
    r = requests.post(
        f"{stack.url('worker')}/v1/run",
        json={"env": "dev", "job_id": job_id, "dispatch": 0},
        headers=auth(token),
        timeout=30,
    )
    assert r.status_code == 200, r.text  # acknowledged: Cloud Tasks must not retry it forever
    assert r.json()["outcome"] == "malformed" and "job id" in r.json()["detail"]
    assert count_jobs(stack, "dev") == before
