"""The API and the job service on in-memory fakes: routing, answers, refusals and what they write.

The same requests run against the real emulators in tests/e2e (test_bad_input, test_openapi,
test_failures); these pin the API's and the service's own decisions in milliseconds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobrelay.api import Api
from jobrelay.models import Status
from jobrelay.wsgi import Request, Response
from tests.fakes import fake_deployment


@pytest.fixture
def d() -> Any:
    return fake_deployment()


@pytest.fixture
def api(d: Any) -> Api:
    return Api(d)


def call(api: Api, method: str, path: str, body: Any = None, token: str | None = "alice", **query: str) -> Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    data = b"" if body is None else json.dumps(body).encode()
    return api.handle(Request(method=method, path=path, headers=headers, query=query, body=data))


ECHO = {"type": "echo", "payload": {"message": "hi"}}


def test_a_submit_is_recorded_then_dispatched_once(api: Api, d: Any):
    resp = call(api, "POST", "/v1/envs/dev/jobs", ECHO)
    assert resp.status == 202, resp.body
    job_id = resp.body["id"]
    assert resp.headers["Location"] == f"/v1/envs/dev/jobs/{job_id}"
    assert d.stores["dev"].get(job_id).status == Status.QUEUED
    assert d.dispatchers["dev"].dispatched == [(job_id, 0, None)]


def test_with_overlap_a_new_job_gets_its_document_and_its_task_at_once(api: Api, d: Any):
    d.service.overlap = True
    resp = call(api, "POST", "/v1/envs/dev/jobs", ECHO)
    assert resp.status == 202, resp.body
    job_id = resp.body["id"]
    assert d.stores["dev"].get(job_id).status == Status.QUEUED
    assert d.dispatchers["dev"].dispatched == [(job_id, 0, None)] and d.dispatchers["dev"].deleted == []


def test_with_overlap_a_job_whose_document_was_not_written_has_its_task_taken_back(api: Any, d: Any):
    from google.api_core import exceptions as gexc

    d.service.overlap = True

    def refuse(data: dict[str, Any]) -> Any:
        raise gexc.ServiceUnavailable("firestore is down")

    d.stores["dev"].create = refuse
    resp = call(api, "POST", "/v1/envs/dev/jobs", ECHO)
    assert resp.status == 500 and d.stores["dev"].docs == {}
    [(job_id, _, _)] = d.dispatchers["dev"].dispatched
    assert d.dispatchers["dev"].deleted == [job_id]


def test_with_overlap_a_repeated_key_still_answers_the_first_job_without_a_new_task(api: Api, d: Any):
    d.service.overlap = True
    first = call(api, "POST", "/v1/envs/dev/jobs", {**ECHO, "idempotency_key": "k-9"})
    d.stores["dev"].docs[first.body["id"]]["status"] = "succeeded"
    again = call(api, "POST", "/v1/envs/dev/jobs", {**ECHO, "idempotency_key": "k-9"})
    assert (first.status, again.status) == (202, 200) and first.body["id"] == again.body["id"]
    assert len(d.dispatchers["dev"].dispatched) == 1  # the repeat of a finished job dispatches nothing


def test_a_repeated_idempotency_key_answers_the_first_job(api: Api, d: Any):
    first = call(api, "POST", "/v1/envs/dev/jobs", {**ECHO, "idempotency_key": "k-1"})
    again = call(api, "POST", "/v1/envs/dev/jobs", {**ECHO, "idempotency_key": "k-1"})
    assert (first.status, again.status) == (202, 200) and first.body["id"] == again.body["id"]
    assert len(d.stores["dev"].docs) == 1


def test_a_key_reused_for_a_different_job_is_a_conflict(api: Api, d: Any):
    call(api, "POST", "/v1/envs/dev/jobs", {**ECHO, "idempotency_key": "k-2"})
    resp = call(
        api, "POST", "/v1/envs/dev/jobs", {"type": "echo", "payload": {"message": "other"}, "idempotency_key": "k-2"}
    )
    assert resp.status == 409 and "different job" in resp.body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"type": "nope"}, 422, "unknown job type"),
        ({"type": "echo", "payload": {"message": 1}}, 422, "payload.message"),
        ({"type": "echo", "payload": {}, "colour": "red"}, 422, "colour"),
        ({"type": "report", "payload": {"collection": "orders"}}, 403, "reporter"),
        ({"type": "echo", "payload": {"message": "x"}, "class": "Z"}, 422, "unknown class"),
    ],
)
def test_refused_submits_name_the_problem_and_write_nothing(api: Api, d: Any, body: Any, status: int, says: str):
    resp = call(api, "POST", "/v1/envs/dev/jobs", body)
    assert resp.status == status and says in json.dumps(resp.body)
    assert d.stores["dev"].docs == {} and d.dispatchers["dev"].dispatched == []


def test_a_batch_with_one_bad_spec_writes_none(api: Api, d: Any):
    resp = call(api, "POST", "/v1/envs/dev/jobs:batch", {"jobs": [ECHO, {"type": "nope"}]})
    assert resp.status == 422 and resp.body["error"]["message"].startswith("jobs[1]:")
    assert d.stores["dev"].docs == {}


def test_a_batch_is_written_and_dispatched(api: Api, d: Any):
    resp = call(api, "POST", "/v1/envs/dev/jobs:batch", {"jobs": [ECHO, ECHO, ECHO]})
    assert resp.status == 202 and len(resp.body["jobs"]) == 3
    assert len(d.stores["dev"].docs) == 3 and len(d.dispatchers["dev"].dispatched) == 3


def test_the_owner_reads_and_lists_their_job_and_nobody_else_does(api: Api):
    job_id = call(api, "POST", "/v1/envs/dev/jobs", ECHO).body["id"]
    assert call(api, "GET", f"/v1/envs/dev/jobs/{job_id}").body["id"] == job_id
    assert call(api, "GET", f"/v1/envs/dev/jobs/{job_id}", token="root+admin").status == 200
    assert call(api, "GET", f"/v1/envs/dev/jobs/{job_id}", token="mallory").status in (403, 404)
    assert [j["id"] for j in call(api, "GET", "/v1/envs/dev/jobs").body["jobs"]] == [job_id]
    assert call(api, "GET", "/v1/envs/dev/jobs", token="mallory").body["jobs"] == []


def test_cancel_of_a_waiting_job_deletes_its_task_and_follows_its_end(api: Api, d: Any):
    job_id = call(api, "POST", "/v1/envs/dev/jobs", ECHO).body["id"]
    resp = call(api, "POST", f"/v1/envs/dev/jobs/{job_id}:cancel")
    assert resp.status == 200 and resp.body["status"] == "cancelled"
    assert d.dispatchers["dev"].deleted == [job_id]
    assert d.flow.statuses() == [Status.CANCELLED]


def test_cancel_of_a_running_job_asks_it_to_stop(api: Api, d: Any):
    job_id = call(api, "POST", "/v1/envs/dev/jobs", ECHO).body["id"]
    d.stores["dev"].update(job_id, {"status": "running", "attempt": 1, "worker_id": "w"})
    resp = call(api, "POST", f"/v1/envs/dev/jobs/{job_id}:cancel")
    assert resp.status == 202 and resp.body["cancel_requested"] is True
    assert d.flow.ended_jobs == []
    assert call(api, "POST", f"/v1/envs/dev/jobs/{job_id}:cancel").status == 202  # asked again: same answer


def test_cancel_of_a_finished_job_is_a_conflict(api: Api, d: Any):
    job_id = call(api, "POST", "/v1/envs/dev/jobs", ECHO).body["id"]
    d.stores["dev"].update(job_id, {"status": "succeeded"})
    resp = call(api, "POST", f"/v1/envs/dev/jobs/{job_id}:cancel")
    assert resp.status == 409 and resp.body["error"]["details"]["status"] == "succeeded"


@pytest.mark.parametrize(
    ("method", "path", "token", "status"),
    [
        ("GET", "/v1/envs/dev/nothing", "alice", 404),
        ("DELETE", "/v1/envs/dev/jobs", "alice", 405),
        ("GET", "/v1/envs/prod/jobs", "alice", 404),  # served envs only
        ("GET", "/v1/envs/dev/jobs", None, 401),
        ("GET", "/v1/envs/dev/dead-letters", "alice", 403),  # operators only
        ("GET", "/v1/envs/dev/stats", "alice", 403),
        ("POST", "/v1/cron/test-echo", None, 401),  # the caller first, before any schedule is named
        ("POST", "/v1/cron/test-echo", "alice", 401),
    ],
)
def test_routing_and_who_may_call(api: Api, method: str, path: str, token: str | None, status: int):
    resp = call(api, method, path, token=token)
    assert resp.status == status, resp.body
    assert set(resp.body["error"]) >= {"code", "message"}


def test_a_405_names_the_methods_allowed(api: Api):
    resp = call(api, "PUT", "/v1/envs/dev/jobs")
    assert resp.headers["Allow"] == "GET, POST"


def test_every_declared_route_has_its_handler(api: Api):
    from jobrelay.routes import CONSOLE_ROUTES, ROUTES

    assert len(api.routes) == len(ROUTES) + len(CONSOLE_ROUTES)
    assert all(callable(handler) for _, _, handler in api.routes)
