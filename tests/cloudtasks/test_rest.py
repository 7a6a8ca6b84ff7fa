"""The REST face over plain HTTP: every method, JSON as the real API writes it, one engine with gRPC.

The gRPC client is the reference: a resource read over REST must be exactly the proto3 JSON of the
same resource read over gRPC, and a task made on one face is seen, run and dispatched the same on
the other.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
from google.cloud import tasks_v2

from jobrelay.local.cloudtasks import rest as rest_face
from jobrelay.local.cloudtasks import server

from .helpers import LOCATION, PROJECTS, eventually, http_task

PARENT = f"projects/{PROJECTS[0]}/locations/{LOCATION}"


def _v2(name: str) -> str:
    return f"/v2/{name}"


def _grpc_json(message: object) -> dict:
    """A gRPC answer in proto3 JSON, integral doubles as integers (as the real API prints them)."""
    return rest_face.jsonpb.to_json(type(message).pb(message))  # type: ignore[attr-defined]


def test_every_grpc_method_has_a_rest_route():
    routed = {r.rpc for r in rest_face.ROUTES if r.emulated}
    assert set(server._TASKS_METHODS) | {"ListLocations", "GetLocation"} <= routed


def test_a_queue_lives_its_whole_life_over_rest(rest):
    name = f"{PARENT}/queues/rest-{uuid.uuid4().hex[:8]}"
    created = rest.ok(
        "POST",
        _v2(f"{PARENT}/queues"),
        {
            "name": name,
            "rateLimits": {"maxDispatchesPerSecond": 7},
            "retryConfig": {"maxAttempts": 4, "minBackoff": "2s"},
        },
    )
    assert created == {
        "name": name,
        "rateLimits": {"maxDispatchesPerSecond": 7, "maxBurstSize": 2, "maxConcurrentDispatches": 1000},
        "retryConfig": {"maxAttempts": 4, "minBackoff": "2s", "maxBackoff": "3600s", "maxDoublings": 16},
        "state": "RUNNING",
    }
    assert rest.ok("GET", _v2(name)) == created
    assert name in [q["name"] for q in rest.ok("GET", _v2(f"{PARENT}/queues"))["queues"]]
    patched = rest.ok("PATCH", _v2(name), {"retryConfig": {"maxBackoff": "60s"}}, updateMask="retryConfig.maxBackoff")
    assert patched["retryConfig"] == {**created["retryConfig"], "maxBackoff": "60s"}
    assert rest.ok("POST", _v2(f"{name}:pause"), {})["state"] == "PAUSED"
    assert rest.ok("GET", _v2(f"{PARENT}/queues"), filter="state: PAUSED")["queues"][-1]["state"] == "PAUSED"
    assert rest.ok("POST", _v2(f"{name}:resume"), {})["state"] == "RUNNING"
    purged = rest.ok("POST", _v2(f"{name}:purge"), {})
    assert dt.datetime.fromisoformat(purged["purgeTime"]).tzinfo is not None
    assert rest.ok("DELETE", _v2(name)) == {}
    gone = rest.call("GET", _v2(name))
    assert (gone.status_code, gone.json()["error"]["status"]) == (404, "NOT_FOUND")


def test_rest_json_is_the_proto3_json_of_what_grpc_answers(rest, client, make_queue, target):
    queue = make_queue(paused=True)
    name = f"{queue}/tasks/same-{uuid.uuid4().hex[:8]}"
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    created = rest.ok(
        "POST",
        _v2(f"{queue}/tasks"),
        {
            "task": {
                "name": name,
                "scheduleTime": later,
                "dispatchDeadline": "45s",
                "httpRequest": {
                    "url": target.url + "/r",
                    "httpMethod": "PUT",
                    "body": base64.b64encode(b"\x00binary\xff").decode(),
                    "headers": {"Content-Type": "application/octet-stream"},
                    "oidcToken": {"serviceAccountEmail": "sa@proj-a.iam.gserviceaccount.com"},
                },
            },
            "responseView": "FULL",
        },
    )
    via_grpc = client.get_task(request={"name": name, "response_view": tasks_v2.Task.View.FULL})
    assert created == _grpc_json(via_grpc)
    assert rest.ok("GET", _v2(name), responseView="FULL") == _grpc_json(via_grpc)
    assert rest.ok("GET", _v2(queue)) == _grpc_json(client.get_queue(name=queue))
    assert created["dispatchDeadline"] == "45s"
    assert base64.b64decode(created["httpRequest"]["body"]) == b"\x00binary\xff"
    assert created["createTime"].endswith("Z") and created["view"] == "FULL"
    basic = rest.ok("GET", _v2(name))
    assert "body" not in basic["httpRequest"] and basic["view"] == "BASIC"


def test_a_task_made_on_either_face_is_seen_run_and_dispatched_the_same(rest, client, make_queue, target):
    queue = make_queue(paused=True)
    over_rest = rest.ok(
        "POST",
        _v2(f"{queue}/tasks"),
        {"task": {"httpRequest": {"url": target.url + "/job", "body": base64.b64encode(b"{}").decode(),
                                  "headers": {"Content-Type": "application/json", "X-App": "a"}}}},
    )  # fmt: skip
    over_grpc = client.create_task(
        parent=queue,
        task=http_task(target.url + "/job", body=b"{}", headers={"Content-Type": "application/json", "X-App": "a"}),
    )
    listed_rest = {t["name"] for t in rest.ok("GET", _v2(f"{queue}/tasks"))["tasks"]}
    listed_grpc = {t.name for t in client.list_tasks(parent=queue)}
    assert listed_rest == listed_grpc == {over_rest["name"], over_grpc.name}
    assert client.get_task(name=over_rest["name"]).http_request.url == target.url + "/job"

    ran = rest.ok("POST", _v2(f"{over_grpc.name}:run"), {})
    assert ran["dispatchCount"] == 1
    client.resume_queue(name=queue)
    first, second = target.wait_for(2)
    by_name = {s.header("X-CloudTasks-TaskName"): s for s in (first, second)}
    a, b = by_name[over_rest["name"].rsplit("/", 1)[1]], by_name[over_grpc.name.rsplit("/", 1)[1]]
    assert (a.method, a.path, a.body) == (b.method, b.path, b.body) == ("POST", "/job", b"{}")
    varying = {"x-cloudtasks-taskname", "x-cloudtasks-tasketa", "content-length"}
    assert {k.lower(): v for k, v in a.headers.items() if k.lower() not in varying} == {
        k.lower(): v for k, v in b.headers.items() if k.lower() not in varying
    }
    eventually(lambda: not rest.ok("GET", _v2(f"{queue}/tasks")).get("tasks"), what="both tasks to finish")


def test_page_tokens_walk_every_task_exactly_once(rest, make_queue, target):
    queue = make_queue(paused=True)
    made = {
        rest.ok("POST", _v2(f"{queue}/tasks"), {"task": {"httpRequest": {"url": target.url}}})["name"] for _ in range(5)
    }
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = rest.ok("GET", _v2(f"{queue}/tasks"), pageSize=2, pageToken=token)
        seen += [t["name"] for t in page["tasks"]]
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert sorted(seen) == sorted(made)
    bad = rest.call("GET", _v2(f"{queue}/tasks"), pageToken="%%%")
    assert (bad.status_code, bad.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")


def test_locations_answer_over_rest(rest):
    listed = rest.ok("GET", _v2(f"projects/{PROJECTS[0]}/locations"))
    assert listed["locations"] == [{"name": PARENT, "locationId": LOCATION}]
    assert rest.ok("GET", _v2(PARENT)) == {"name": PARENT, "locationId": LOCATION}


@pytest.mark.parametrize(
    ("params", "state", "compact"),
    [
        ({"alt": "json"}, "RUNNING", False),
        ({"$alt": "json;enum-encoding=int"}, 1, False),
        ({"prettyPrint": "false"}, "RUNNING", True),
        ({"$prettyPrint": "0", "fields": "name", "key": "k"}, "RUNNING", True),
    ],
)
def test_system_parameters_shape_the_answer(rest, make_queue, params, state, compact):
    answer = rest.call("GET", _v2(make_queue()), **params)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert answer.json()["state"] == state
    assert ("\n" not in answer.text) is compact


def test_an_unsupported_alt_is_refused(rest, make_queue):
    answer = rest.call("GET", _v2(make_queue()), alt="xml")
    assert (answer.status_code, answer.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")


def test_a_chunked_body_is_read(rest, make_queue, target):
    queue = make_queue(paused=True)
    chunks = iter([b'{"task": {"httpRequest": ', json.dumps({"url": target.url}).encode(), b"}}"])
    answer = rest.session.post(rest.base + _v2(f"{queue}/tasks"), data=chunks, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["httpRequest"]["url"] == target.url


def test_firebase_dialect_answers_the_shape_firebase_admin_reads(rest, client, make_queue):
    queue = make_queue(paused=True)
    project, queue_id = queue.split("/")[1], queue.rsplit("/", 1)[1]
    # What firebase-admin posts in emulator mode: no /v2, nulls for unset fields, an empty url.
    body = {"task": {"httpRequest": {"url": "", "oidcToken": {"serviceAccountEmail": "emulated-service-acct@email.com"},
                                     "body": base64.b64encode(b'{"data": 1}').decode(),
                                     "headers": {"Content-Type": "application/json"}},
                     "name": None, "scheduleTime": None, "dispatchDeadline": None}}  # fmt: skip
    answer = rest.ok("POST", f"/{queue}/tasks", body)
    name = answer["task"]["name"]
    assert name.startswith(f"/{queue}/tasks/")
    stored = client.get_task(name=name[1:])
    assert stored.http_request.url == f"{rest_face.DEFAULT_FUNCTIONS_URL}/{project}/{LOCATION}/{queue_id}"
    assert stored.http_request.oidc_token.service_account_email == "emulated-service-acct@email.com"
    assert rest.ok("DELETE", f"/{name[1:]}") == {}
    assert list(client.list_tasks(parent=queue)) == []
