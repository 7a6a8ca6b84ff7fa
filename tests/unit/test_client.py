"""The API client without an API: errors, paging, waiting, URLs and where settings and tokens come from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jobrelay import cli_render as render
from jobrelay.client import ClientError, JobrelayClient, WaitTimeout
from jobrelay.connection import ConfigError, Connection

Answer = tuple[int, Any] | Exception


class FakeApi(requests.Session):
    """Answers calls from a script of (status, body) pairs, or raises a given exception; records each call."""

    def __init__(self, *answers: Answer) -> None:
        super().__init__()
        self.answers: Iterator[Answer] = iter(answers)
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kw: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append({"method": method, "url": url, **kw})
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        resp = requests.Response()
        resp.status_code = status
        resp.reason = {200: "OK", 202: "Accepted", 502: "Bad Gateway"}.get(status, "")
        resp._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        resp.url = str(url)
        resp.request = requests.Request(str(method), str(url)).prepare()
        return resp


def client(*answers: Answer, token: Any = "t0k3n") -> tuple[JobrelayClient, FakeApi]:
    api = FakeApi(*answers)
    return JobrelayClient("http://api.test/", "dev", token, session=api), api


def job(job_id: str, status: str = "queued") -> dict[str, Any]:
    return {"id": job_id, "status": status}


def test_api_error_body_becomes_client_error_with_status_code_message_and_details() -> None:
    details = [{"field": "type", "problem": "unknown job type"}]
    c, _ = client((422, {"error": {"code": "unprocessable", "message": "unknown job type 'x'", "details": details}}))
    with pytest.raises(ClientError) as err:
        c.submit({"type": "x"})
    assert (err.value.status, err.value.code, err.value.message, err.value.details) == (
        422,
        "unprocessable",
        "unknown job type 'x'",
        details,
    )
    assert not err.value.auth and not err.value.transient


@pytest.mark.parametrize(
    ("answer", "status", "code", "says"),
    [
        (
            (502, "<html><body>upstream  down</body></html>"),
            502,
            "http_error",
            "502 Bad Gateway: <html><body>upstream down",
        ),
        ((200, "not json"), 200, "bad_response", "not JSON"),
        ((200, [1, 2]), 200, "bad_response", "not an object"),
        (requests.ConnectionError("refused"), 0, "unreachable", "cannot reach http://api.test/v1/envs/dev/jobs/j1"),
        (requests.Timeout("slow"), 0, "unreachable", "timed out"),
    ],
    ids=["proxy-page", "not-json", "not-an-object", "connection-refused", "timeout"],
)
def test_answers_that_are_not_the_api_say_what_came_back(answer: Answer, status: int, code: str, says: str) -> None:
    c, _ = client(answer)
    with pytest.raises(ClientError) as err:
        c.get("j1")
    assert (err.value.status, err.value.code) == (status, code) and says in err.value.message


@pytest.mark.parametrize(
    ("status", "auth", "transient"),
    [
        (401, True, False),
        (403, True, False),
        (404, False, False),
        (429, False, True),
        (503, False, True),
        (0, False, True),
    ],
)
def test_error_kinds(status: int, auth: bool, transient: bool) -> None:
    err = ClientError(status, "x", "y")
    assert (err.auth, err.transient) == (auth, transient)


def test_submit_tells_a_new_job_from_an_idempotent_repeat() -> None:
    c, api = client((202, job("j1")), (200, job("j1")))
    assert c.submit({"type": "echo"}).created and not c.submit({"type": "echo"}).created
    assert api.calls[0]["url"] == "http://api.test/v1/envs/dev/jobs" and api.calls[0]["json"] == {"type": "echo"}
    assert api.calls[0]["headers"] == {"Authorization": "Bearer t0k3n"}


def test_iter_jobs_follows_page_tokens_up_to_the_limit() -> None:
    page1 = {"jobs": [job(f"a{i}") for i in range(50)], "next_page_token": "p2"}
    page2 = {"jobs": [job("b0"), job("b1"), job("b2")], "next_page_token": "p3"}
    c, api = client((200, page1), (200, page2))
    got = list(c.iter_jobs(status="queued", limit=53))
    assert [j["id"] for j in got] == [*(f"a{i}" for i in range(50)), "b0", "b1", "b2"]
    assert [call["params"] for call in api.calls] == [
        {"page_size": "50", "status": "queued"},
        {"page_size": "3", "status": "queued", "page_token": "p2"},
    ]


def test_iter_jobs_stops_at_the_last_page() -> None:
    c, api = client((200, {"jobs": [job("a")], "next_page_token": None}))
    assert [j["id"] for j in c.iter_jobs(limit=None)] == ["a"] and len(api.calls) == 1


def test_wait_returns_the_final_job_and_shows_every_poll() -> None:
    c, _ = client((200, job("j", "queued")), (200, job("j", "running")), (200, job("j", "succeeded")))
    seen: list[str] = []
    assert c.wait("j", interval=0, on_update=lambda j: seen.append(j["status"]))["status"] == "succeeded"
    assert seen == ["queued", "running", "succeeded"]


def test_wait_gives_up_after_its_timeout_with_the_last_state() -> None:
    c, _ = client(*[(200, job("j", "running"))] * 1000)
    with pytest.raises(WaitTimeout) as err:
        c.wait("j", timeout=0.05, interval=0.01)
    assert err.value.job["status"] == "running"


def test_wait_rides_out_transient_errors_but_not_others() -> None:
    busy = (503, {"error": {"code": "internal", "message": "restarting"}})
    c, _ = client(busy, requests.ConnectionError("reset"), (200, job("j", "succeeded")))
    assert c.wait("j", interval=0.001)["status"] == "succeeded"
    c, _ = client((404, {"error": {"code": "not_found", "message": "job j not found in env dev"}}))
    with pytest.raises(ClientError, match="not found"):
        c.wait("j", interval=0.001)


def test_a_job_id_stays_one_path_segment() -> None:
    c, api = client((200, job("x")), (200, job("x")), (200, {"job_id": "x"}))
    c.get("../stats?x=1")
    c.cancel("a/b")
    c.dead_letter("a b")
    assert [call["url"] for call in api.calls] == [
        "http://api.test/v1/envs/dev/jobs/..%2Fstats%3Fx%3D1",
        "http://api.test/v1/envs/dev/jobs/a%2Fb:cancel",
        "http://api.test/v1/envs/dev/dead-letters/a%20b",
    ]


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        ({"job_ids": ["a", "b"]}, {"job_ids": ["a", "b"], "dry_run": False}),
        ({"fingerprint": "f1", "dry_run": True}, {"fingerprint": "f1", "dry_run": True}),
        ({"all": True}, {"all": True, "dry_run": False}),
    ],
)
def test_redrive_sends_one_selector(kwargs: dict[str, Any], body: dict[str, Any]) -> None:
    c, api = client((200, {"dry_run": False, "count": 0, "redriven": 0, "results": []}))
    c.redrive(**kwargs)
    assert api.calls[0]["json"] == body and api.calls[0]["url"].endswith("/dead-letters:redrive")


def test_a_token_source_is_asked_before_each_call() -> None:
    tokens = iter(["one", "two"])
    c, api = client((200, job("a")), (200, job("a")), token=lambda: next(tokens))
    c.get("a")
    c.get("a")
    assert [call["headers"]["Authorization"] for call in api.calls] == ["Bearer one", "Bearer two"]


def test_schedules_answers_the_health_report_even_when_unhealthy() -> None:
    report = {"healthy": False, "schedules": [{"name": "x", "healthy": False}]}
    c, api = client((503, report))
    assert c.schedules() == report and "Authorization" not in api.calls[0]["headers"]


# -- Connection: where the API is and who calls it ---------------------------------------------------------------


def local_json(tmp_path: Path, api: str = "http://127.0.0.1:8080", auth: str | None = "127.0.0.1:1") -> Path:
    state: dict[str, Any] = {"api": api, "envs": {"dev": {"project": "my-dev-project"}}}
    if auth:
        state["auth"] = {"host": auth, "project": "my-dev-project"}
    (tmp_path / "local.json").write_text(json.dumps(state))
    return tmp_path


def test_the_api_url_comes_from_the_flag_or_the_local_stack_state(tmp_path: Path) -> None:
    state = local_json(tmp_path)
    assert Connection(state_dir=state, local_user="a").client().api_url == "http://127.0.0.1:8080"
    assert Connection(api="https://x.run.app/", state_dir=state, token="t").client().api_url == "https://x.run.app"
    with pytest.raises(ConfigError, match="JOBRELAY_API"):
        Connection(state_dir=tmp_path / "nowhere", token="t").client()
    (tmp_path / "local.json").write_text("{broken")
    with pytest.raises(ConfigError, match=r"local\.json"):
        Connection(state_dir=tmp_path, token="t").client()


def test_a_local_user_without_a_known_auth_emulator_is_told_to_start_the_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signing in as a local user goes through the stack's Auth emulator (tests/e2e/test_auth_emulator.py);
    # with neither local.json's "auth" nor FIREBASE_AUTH_EMULATOR_HOST there is nobody to ask.
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    conn = Connection(state_dir=local_json(tmp_path, auth=None), local_user="ops", admin=True)
    with pytest.raises(ConfigError, match=r"Auth emulator.*jobrelay dev up"):
        conn.client()


def test_a_given_token_wins_and_a_local_api_without_credentials_says_how_to_sign_in() -> None:
    assert Connection(api="https://x.run.app", token="abc", local_user="u").credentials("https://x.run.app")() == "abc"
    source = Connection(api="http://127.0.0.1:8080").credentials("http://127.0.0.1:8080")
    with pytest.raises(ClientError) as err:
        source()
    assert err.value.status == 401 and "--local-user" in err.value.message


# -- what the CLI prints ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "shown"),
    [
        (None, "-"),
        ({"done": 3, "total": 10, "message": "slept 3s"}, "3/10 (30%) slept 3s"),
        ({"done": 2, "total": None}, "2"),
        ({"done": 1, "total": "ten", "message": "odd"}, "1 odd"),
        ({"done": None, "total": None, "message": "starting"}, "starting"),
    ],
)
def test_progress_reads_as_amount_percent_and_message(progress: dict[str, Any] | None, shown: str) -> None:
    assert render.progress_text({"progress": progress}) == shown


@pytest.mark.parametrize(
    ("value", "shown"), [(None, "-"), (3.21, "3.2s"), (245, "4m05s"), (7380, "2h03m"), (273600, "3d04h")]
)
def test_durations_read_at_a_glance(value: float | None, shown: str) -> None:
    assert render.seconds(value) == shown
