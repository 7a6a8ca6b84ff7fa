"""Job requests with the stack's Eventarc held: the security rules, Eventarc's route called directly, the sweep.

While the stack's Eventarc is stopped nothing announces a request, so each test decides what reaches
the API: a client's write under the rules (the emulator's REST API, as the SDKs use it), an event as
Eventarc shapes it with a token of any account, or nothing at all, for the maintenance pass's sweep.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from google.cloud import firestore

from jobrelay import cloudevents
from jobrelay.local.stack import Stack
from jobrelay.requests import REQUESTS, job_id_for
from tests.e2e.test_cron import minute, own_minutes, tick
from tests.e2e.test_job_requests import (
    ECHO,
    client_create,
    count,
    db,
    decided,
    docs_url,
    event_for,
    eventarc_token,
    new_id,
    post_event,
    rest_fields,
    server_request,
)
from tests.support import ApiUser, id_token

# -- security rules (a client's writes, through the emulator's REST API) ---------------------------


@pytest.fixture(scope="module")
def held(stack: Stack) -> Iterator[None]:
    """The stack's Eventarc stopped for this module's direct calls of the route (restarted after)."""
    with stack.held("eventarc"):
        yield


def mine(uid: str, **more: Any) -> dict[str, Any]:
    return {**ECHO, "owner": uid, "status": "pending", **more}


@pytest.mark.parametrize(
    ("why", "request_id", "fields"),
    [
        ("another user as owner", None, mine("someone-else")),
        ("already accepted", None, {**mine("{me}"), "status": "accepted"}),
        ("a job id of its own", None, mine("{me}", job_id="r0123456789abcdef")),
        ("an unknown field", None, mine("{me}", priority=1)),
        ("an idempotency key", None, mine("{me}", idempotency_key="k")),
        ("no type", None, {k: v for k, v in mine("{me}").items() if k != "type"}),
        ("a type that is not a string", None, mine("{me}", type=7)),
        ("a payload that is not a map", None, mine("{me}", payload="x")),
        ("labels that are not a map", None, mine("{me}", labels=["a"])),
        ("a huge App Check field", None, mine("{me}", app_check="x" * 5000)),
        ("an id jobrelay cannot name a job after", "bad.id", mine("{me}")),
        ("a short id", "abc", mine("{me}")),
    ],
)
def test_the_rules_refuse_every_other_request_and_it_changes_nothing(
    stack: Stack, held: None, why: str, request_id: str | None, fields: dict[str, Any]
) -> None:
    uid = "rules-user"
    fields = {k: (uid if v == "{me}" else v) for k, v in fields.items()}
    before = count(stack, REQUESTS)
    r = client_create(stack, id_token(stack, "dev", uid), request_id or new_id(), fields)
    assert r.status_code == 403, (why, r.text)
    assert count(stack, REQUESTS) == before


def test_a_user_creates_their_own_request_reads_it_and_nobody_changes_it(stack: Stack, held: None) -> None:
    uid, request_id = "rules-owner", new_id()
    token = id_token(stack, "dev", uid)
    assert client_create(stack, None, request_id, mine(uid)).status_code == 403  # signed out
    r = client_create(stack, token, request_id, mine(uid, labels={"order": "o-42"}, delay_seconds=5))
    assert r.status_code == 200, r.text
    assert client_create(stack, token, request_id, mine(uid)).status_code in (403, 409)  # created once
    url = f"{docs_url(stack)}/{REQUESTS}/{request_id}"
    assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    other = id_token(stack, "dev", "rules-other")
    assert requests.get(url, headers={"Authorization": f"Bearer {other}"}, timeout=10).status_code == 403
    admin = id_token(stack, "dev", "root", admin=True)
    assert requests.get(url, headers={"Authorization": f"Bearer {admin}"}, timeout=10).status_code == 200
    patch = {"fields": rest_fields({"status": "accepted", "job_id": "r-forged-000"})}
    for who in (token, admin):
        h = {"Authorization": f"Bearer {who}"}
        assert requests.patch(url, json=patch, headers=h, timeout=10).status_code == 403
        assert requests.delete(url, headers=h, timeout=10).status_code == 403
    assert (db(stack).collection(REQUESTS).document(request_id).get().to_dict() or {})["status"] == "pending"


# -- the event route, called as Eventarc calls it ---------------------------------------------------


def test_a_repeated_event_answers_the_first_decision_and_makes_no_second_job(
    stack: Stack, held: None, alice: ApiUser
) -> None:
    alice.token()  # alice is a user of dev's project
    request_id = server_request(stack, "alice")
    headers, body = event_for(stack, request_id)
    first = post_event(stack, headers, body, eventarc_token(stack))
    assert first.status_code == 200, first.text
    assert first.json() | {"error": None} == {
        "request_id": request_id,
        "status": "accepted",
        "job_id": job_id_for(request_id),
        "error": None,
        "repeat": False,
    }
    again = post_event(stack, headers, body, eventarc_token(stack))
    assert again.status_code == 200 and again.json()["repeat"] is True
    assert again.json()["job_id"] == first.json()["job_id"]
    jobs = db(stack).collection("jobs").where(filter=firestore.FieldFilter("request_id", "==", request_id))
    assert len(list(jobs.stream())) == 1
    job = alice.wait(job_id_for(request_id))
    assert (job["status"], job["request_id"], job["owner"]) == ("succeeded", request_id, "alice")


@pytest.mark.parametrize(
    ("who", "status", "words"),
    [
        ("nobody", 401, "missing Authorization"),
        ("user", 401, "invalid Google OIDC token"),
        ("scheduler", 403, "not allowed"),
        ("prod-eventarc", 403, "not env prod's"),
        ("wrong-audience", 401, "audience"),
    ],
)
def test_only_the_envs_eventarc_account_may_call_the_route_and_refusals_change_nothing(
    stack: Stack, held: None, alice: ApiUser, who: str, status: int, words: str
) -> None:
    alice.token()
    request_id = server_request(stack, "alice")
    headers, body = event_for(stack, request_id)
    token = {
        "nobody": None,
        "user": alice.token(),
        "scheduler": eventarc_token(stack, email=stack.infra.env("dev").service_accounts.scheduler),
        "prod-eventarc": eventarc_token(stack, "prod"),
        "wrong-audience": eventarc_token(stack, audience=stack.url("worker")),
    }[who]
    jobs = count(stack, "jobs")
    r = post_event(stack, headers, body, token)
    assert r.status_code == status and words in r.json()["error"]["message"], r.text
    assert (db(stack).collection(REQUESTS).document(request_id).get().to_dict() or {})["status"] == "pending"
    assert count(stack, "jobs") == jobs


@pytest.mark.parametrize(
    ("mutate", "status", "words"),
    [
        (lambda h, b: ({**h, "ce-type": "google.cloud.firestore.document.v1.deleted"}, b), 400, "is not"),
        (lambda h, b: ({**h, "Content-Type": "text/plain"}, b), 400, "Content-Type"),
        (lambda h, b: (h, b"\x00garbage"), 400, "DocumentEventData"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "ce-id"}, b), 400, "ce-id"),
        (lambda h, b: (h, b[:10]), 400, ""),
    ],
)
def test_a_malformed_event_is_a_400_naming_the_problem(
    stack: Stack, held: None, alice: ApiUser, mutate: Any, status: int, words: str
) -> None:
    alice.token()
    request_id = server_request(stack, "alice")
    headers, body = mutate(*event_for(stack, request_id))
    r = post_event(stack, headers, body, eventarc_token(stack))
    assert r.status_code == status and words in r.json()["error"]["message"], r.text
    assert (db(stack).collection(REQUESTS).document(request_id).get().to_dict() or {})["status"] == "pending"


def test_an_event_of_another_collection_or_project_is_refused(stack: Stack, held: None) -> None:
    at = datetime.now(UTC)
    for path, project, status in (
        ("orders/o-000042", stack.infra.env("dev").project, 400),
        (f"{REQUESTS}/nope-000001", "some-other-project", 404),
    ):
        headers, body = cloudevents.encode_event(
            event_id="e", project=project, path=path, fields={}, create_time=at, update_time=at, location="x"
        )
        r = post_event(stack, headers, body, eventarc_token(stack))
        assert r.status_code == status, r.text


def test_the_sweep_in_the_maintenance_pass_decides_requests_whose_event_was_lost(
    stack: Stack, held: None, alice: ApiUser, admin: ApiUser
) -> None:
    alice.token()
    lost = [server_request(stack, "alice") for _ in range(3)]
    refused = server_request(stack, "alice", {"type": "nope", "payload": {}})
    time.sleep(1.1)  # older than the session's sweep delay (1 s): only the sweep can decide them now
    r = tick(stack, "maintenance", minute(own_minutes()))
    assert r.status_code in (200, 202), r.text
    report = admin.wait(r.json()["id"], timeout=60)["result"]["requests"]
    assert set(lost) <= set(report["accepted"]["requests"]) and refused in report["refused"]["requests"]
    for request_id in lost:
        assert decided(stack, request_id)["job_id"] == job_id_for(request_id)
    assert decided(stack, refused)["error"]["code"] == "invalid"
