"""Job requests through the local stack's Eventarc: a server's transaction, refusals, App Check, ownership.

A server writes requests with the admin SDK through `jobrelay.requests`; the stack's Eventarc announces
each to the API, which decides it. Apps' own transactions (the Firebase JS SDK, 1,000 of them, the API
killed) are tests/e2e/test_job_requests_node.py; the rules, the route called directly and the sweep
are tests/e2e/test_job_request_route.py.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
import requests
from google.cloud import firestore
from google.cloud.firestore_v1.types import document

from jobrelay import clients, cloudevents
from jobrelay.local.oidc import LocalSigner
from jobrelay.local.stack import Stack
from jobrelay.requests import REQUESTS, enqueue_in_batch, enqueue_in_transaction, job_id_for
from tests import support
from tests.support import ApiUser, id_token, wait_for

ECHO = {"type": "echo", "payload": {"message": "invoice for order 42"}}
# stg offers no test jobs; a report needs the reporter role (tests/e2e/test_app_check.py submits the same).
REPORT = {"type": "report", "payload": {"collection": "app-check"}}


def db(stack: Stack, env: str = "dev") -> firestore.Client:
    return clients.firestore_client(stack.infra.env(env).project)


def new_id(prefix: str = "req") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def decided(stack: Stack, request_id: str, env: str = "dev", timeout: float = 30) -> dict[str, Any]:
    ref = db(stack, env).collection(REQUESTS).document(request_id)

    def done() -> dict[str, Any] | None:
        data = ref.get().to_dict() or {}
        return data if data.get("status") in ("accepted", "refused") else None

    return wait_for(done, timeout=timeout, what=f"request {request_id} decided")  # type: ignore[no-any-return]


def count(stack: Stack, collection: str, env: str = "dev") -> int:
    return int(db(stack, env).collection(collection).count().get()[0][0].value)


def rest_fields(fields: dict[str, Any]) -> dict[str, Any]:
    doc = document.Document(fields={k: cloudevents.encode(v) for k, v in fields.items()})
    return json.loads(document.Document.to_json(doc))["fields"]  # type: ignore[no-any-return]


def docs_url(stack: Stack, env: str = "dev") -> str:
    project = stack.infra.env(env).project
    return f"http://127.0.0.1:{stack.ports['firestore']}/v1/projects/{project}/databases/(default)/documents"


def client_create(stack: Stack, token: str | None, request_id: str, fields: dict[str, Any]) -> requests.Response:
    """What an app's SDK sends for a create (a commit that fails if the document exists), as the user."""
    name = f"projects/{stack.infra.env('dev').project}/databases/(default)/documents/{REQUESTS}/{request_id}"
    body = {"writes": [{"update": {"name": name, "fields": rest_fields(fields)}, "currentDocument": {"exists": False}}]}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{docs_url(stack)}:commit", json=body, headers=headers, timeout=10)


def event_for(stack: Stack, request_id: str, env: str = "dev") -> tuple[dict[str, str], bytes]:
    snap = db(stack, env).collection(REQUESTS).document(request_id).get()
    e = stack.infra.env(env)
    return cloudevents.encode_event(
        event_id=secrets.token_hex(8),
        project=e.project,
        path=f"{REQUESTS}/{request_id}",
        fields=snap.to_dict() or {},
        create_time=snap.create_time,
        update_time=snap.update_time,
        location=e.region,
    )


def eventarc_token(stack: Stack, env: str = "dev", *, email: str | None = None, audience: str | None = None) -> str:
    email = email or stack.infra.env(env).service_accounts.eventarc
    return LocalSigner(stack.key_file).mint(audience or stack.url("api"), email)


def post_event(stack: Stack, headers: dict[str, str], body: bytes, token: str | None) -> requests.Response:
    h = {**headers, **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.post(f"{stack.url('api')}/v1/events/job-requests", data=body, headers=h, timeout=30)


def server_request(stack: Stack, owner: str, spec: dict[str, Any] | None = None, env: str = "dev", **kw: Any) -> str:
    batch = db(stack, env).batch()
    request_id = enqueue_in_batch(batch, db(stack, env), spec or ECHO, owner=owner, **kw)
    batch.commit()
    return request_id


# -- through the stack's Eventarc ---------------------------------------------------------------------


def test_a_server_transaction_that_commits_becomes_a_job_and_one_that_aborts_leaves_nothing(
    stack: Stack, alice: ApiUser
) -> None:
    alice.token()
    client = db(stack)
    order = client.collection("orders").document()

    @firestore.transactional
    def place(tx: firestore.Transaction, fail: bool) -> str:
        tx.get(order)  # a read-modify-write, as an app's transaction is
        tx.set(order, {"owner": "alice", "total": 42})
        request_id = enqueue_in_transaction(tx, client, {**ECHO, "labels": {"order": order.id}}, owner="alice")
        if fail:
            raise RuntimeError("card declined")
        return request_id

    with pytest.raises(RuntimeError):
        place(client.transaction(), True)
    labelled = client.collection(REQUESTS).where(filter=firestore.FieldFilter("labels.order", "==", order.id))
    assert not order.get().exists and list(labelled.stream()) == []  # the abort left neither document
    request_id = place(client.transaction(), False)
    outcome = decided(stack, request_id)
    assert (outcome["status"], outcome["job_id"]) == ("accepted", job_id_for(request_id))
    job = alice.wait(outcome["job_id"])
    assert job["status"] == "succeeded" and job["labels"] == {"order": order.id}


def test_a_request_jobrelay_refuses_carries_the_apis_answer_and_no_job(stack: Stack) -> None:
    # A user of its own: its claims in Firebase Auth (what the request is judged by) are the token's.
    reporter = ApiUser(stack, "dev", "requests-reporter", roles=("reporter",))
    spec = {"type": "report", "payload": {"collection": "jobs"}}  # jobrelay's own collection: refused
    answer = reporter.submit(spec).json()["error"]
    request_id = server_request(stack, reporter.uid, spec)
    error = decided(stack, request_id)["error"]
    assert (error["code"], error["message"]) == (answer["code"], answer["message"])
    assert not db(stack).collection("jobs").document(job_id_for(request_id)).get().exists


def test_app_check_where_the_env_requires_it_judged_at_the_time_of_the_write(stack: Stack) -> None:
    env = "stg"
    project = stack.infra.env(env).project
    id_token(stack, env, "checked-user", roles=("reporter",))  # a user of stg's project
    keys = support.APP_CHECK
    assert keys is not None
    cases = {
        "missing": (None, "app_check_required"),
        "valid": (keys.token(project), None),
        "expired when written": (keys.token(project, issued_at=time.time() - 7200, lifetime=3600), "app_check_invalid"),
        "another project's": (keys.token("singular-dream"), "app_check_invalid"),
    }
    ids = {
        name: server_request(stack, "checked-user", REPORT, env=env, app_check_token=token)
        for name, (token, _) in cases.items()
    }
    for name, (_, code) in cases.items():
        outcome = decided(stack, ids[name], env)
        assert "app_check" not in outcome, name  # the token does not stay in the document
        if code is None:
            assert outcome["status"] == "accepted", (name, outcome)
        else:
            assert outcome["status"] == "refused" and outcome["error"]["code"] == code, (name, outcome)


def test_a_request_written_while_its_token_was_valid_is_accepted_after_the_token_expired(stack: Stack) -> None:
    """The sweep may read a request long after it was written: App Check is judged at the write."""
    env = "stg"
    project = stack.infra.env(env).project
    id_token(stack, env, "checked-user", roles=("reporter",))
    keys = support.APP_CHECK
    assert keys is not None
    with stack.held("eventarc"):
        token = keys.token(project, issued_at=time.time() - 3598, lifetime=3600)  # valid for 2 more seconds
        request_id = server_request(stack, "checked-user", REPORT, env=env, app_check_token=token)
        time.sleep(2.5)
    assert decided(stack, request_id, env)["status"] == "accepted"


def test_the_request_and_its_job_belong_to_the_owner_only(stack: Stack, alice: ApiUser, bob: ApiUser) -> None:
    request_id = server_request(stack, "alice")
    job_id = decided(stack, request_id)["job_id"]
    assert alice.get(job_id).status_code == 200
    assert bob.get(job_id).status_code == 404
    url = f"{docs_url(stack)}/{REQUESTS}/{request_id}"
    assert requests.get(url, headers={"Authorization": f"Bearer {bob.token()}"}, timeout=10).status_code == 403


def test_a_request_that_waits_on_another_job_is_linked_to_it_in_the_same_commit(stack: Stack, alice: ApiUser) -> None:
    first = alice.submit({"type": "sleep", "payload": {"seconds": 1}}).json()
    request_id = server_request(stack, "alice", {**ECHO, "depends_on": [first["id"]]})
    outcome = decided(stack, request_id)
    assert (outcome["status"], outcome["job_id"]) == ("accepted", job_id_for(request_id))
    stored = alice.get(first["id"]).json()
    assert job_id_for(request_id) in stored["dependents"] or stored["status"] == "succeeded"
    assert alice.wait(job_id_for(request_id))["status"] == "succeeded"  # released when the first succeeded
    missing = server_request(stack, "alice", {**ECHO, "depends_on": ["f00dfeedf00dfeedf00dfeed"]})
    answer = alice.submit({**ECHO, "depends_on": ["f00dfeedf00dfeedf00dfeed"]}).json()["error"]
    error = decided(stack, missing)["error"]
    assert (error["code"], error["message"]) == (answer["code"], answer["message"])
    assert not db(stack).collection("jobs").document(job_id_for(missing)).get().exists
