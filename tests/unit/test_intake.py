"""Job requests into jobs on in-memory fakes: one job per request, refusals as the API answers them.

The same behaviour runs against the emulators, through Eventarc's CloudEvents and the sweep, in
tests/e2e/test_job_requests.py and (1,000 app transactions, the API killed) test_job_requests_node.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from jobrelay.api import Api
from jobrelay.errors import Unavailable
from jobrelay.requests import job_id_for
from jobrelay.wsgi import Request
from tests.fakes import fake_deployment, fake_intake

ECHO = {"type": "echo", "payload": {"message": "order 42"}}


@pytest.fixture
def d() -> Any:
    return fake_deployment()


@pytest.fixture
def parts(d: Any) -> Any:
    intake, requests, owners = fake_intake(d)
    owners.add("alice", roles=("reporter",))
    owners.add("bob")
    return intake, requests, owners


def pending(spec: dict[str, Any], owner: str = "alice") -> dict[str, Any]:
    return {**spec, "owner": owner, "status": "pending"}


def api_answer(d: Any, spec: Any, uid: str) -> dict[str, Any]:
    """What POST /v1/envs/dev/jobs answers the same user for the same spec (the fakes' token is the uid)."""
    token = uid + ("+role:reporter" if uid == "alice" else "")
    req = Request("POST", "/v1/envs/dev/jobs", {"authorization": f"Bearer {token}"}, body=json.dumps(spec).encode())
    resp = Api(d).handle(req)
    assert resp.status >= 400, resp.body
    return resp.body["error"]  # type: ignore[no-any-return]


def test_a_request_becomes_one_job_named_after_it_and_is_marked_accepted(parts: Any, d: Any) -> None:
    intake, requests, _ = parts
    requests.put("order-42-invoice", pending(ECHO))
    outcome = intake.process("dev", "order-42-invoice")
    job_id = job_id_for("order-42-invoice")
    assert (outcome.status, outcome.job_id, outcome.repeat) == ("accepted", job_id, False)
    job = d.stores["dev"].get(job_id)
    assert (job.owner, job.request_id, job.payload) == ("alice", "order-42-invoice", ECHO["payload"])
    doc = requests.docs["order-42-invoice"]
    assert (doc["status"], doc["job_id"]) == ("accepted", job_id) and "processed_at" in doc
    assert d.dispatchers["dev"].dispatched == [(job_id, 0, None)]


def test_a_repeated_event_writes_nothing_and_makes_no_second_job(parts: Any, d: Any) -> None:
    intake, requests, _ = parts
    requests.put("req-000001", pending(ECHO))
    first = intake.process("dev", "req-000001")
    writes = (requests.writes, d.stores["dev"].writes)
    again = [intake.process("dev", "req-000001") for _ in range(3)]
    assert {(o.status, o.job_id, o.repeat) for o in again} == {("accepted", first.job_id, True)}
    assert (requests.writes, d.stores["dev"].writes) == writes and len(d.stores["dev"].docs) == 1
    # A still-queued job is dispatched again under the same task name, which Cloud Tasks de-duplicates.
    assert {(j, n) for j, n, _ in d.dispatchers["dev"].dispatched} == {(first.job_id, 0)}


def test_a_request_decided_by_another_process_meanwhile_keeps_that_decision(parts: Any, d: Any) -> None:
    intake, requests, _ = parts
    requests.put("req-000002", pending(ECHO))
    other = fake_intake(d)[0]
    other.owners, other.stores = intake.owners, intake.stores
    requests.before_write = lambda: other.process("dev", "req-000002")  # the sweep wins the race
    outcome = intake.process("dev", "req-000002")
    assert (outcome.status, outcome.repeat) == ("accepted", True)
    assert list(d.stores["dev"].docs) == [job_id_for("req-000002")]


@pytest.mark.parametrize(
    ("spec", "owner"),
    [
        ({"type": "nope", "payload": {}}, "alice"),
        ({"type": "echo", "payload": {"message": 7}}, "alice"),
        ({"type": "report", "payload": {"collection": "orders"}}, "bob"),  # needs the reporter role
        ({"type": "echo", "payload": {"message": "x"}, "class": "Z"}, "alice"),
        ({"type": "echo", "payload": {"message": "x"}, "max_attempts": 99}, "alice"),
        ({"type": "echo", "payload": {"message": "x"}, "depends_on": ["Not An Id"]}, "alice"),
        ({"type": "echo", "payload": {"message": "x" * 70000}}, "alice"),
    ],
)
def test_a_refused_request_gets_the_apis_code_and_message_and_no_job(
    parts: Any, d: Any, spec: dict[str, Any], owner: str
) -> None:
    intake, requests, _ = parts
    requests.put("req-refused", pending(spec, owner))
    outcome = intake.process("dev", "req-refused")
    expected = api_answer(d, spec, owner)
    assert outcome.status == "refused"
    stored = requests.docs["req-refused"]["error"]
    assert (stored["code"], stored["message"]) == (expected["code"], expected["message"])
    assert job_id_for("req-refused") not in d.stores["dev"].docs
    assert d.dispatchers["dev"].dispatched == []


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"owner": "mallory"}, "unauthenticated", "no user"),
        ({"owner": ""}, "invalid", "owner"),
        ({"idempotency_key": "k"}, "invalid", "idempotency_key"),
        ({"order_total": 12}, "invalid", "order_total"),
        ({"payload": {"message": b"\x00"}}, "invalid", "payload.message"),
        ({"payload": {"message": "x", "when": __import__("datetime").datetime.now()}}, "invalid", "timestamp"),
    ],
)
def test_requests_that_no_job_spec_could_come_from_are_refused(
    parts: Any, d: Any, fields: dict[str, Any], code: str, words: str
) -> None:
    intake, requests, _ = parts
    requests.put("req-shape1", {**pending(ECHO), **fields})
    outcome = intake.process("dev", "req-shape1")
    assert outcome.status == "refused" and outcome.error is not None
    assert outcome.error["code"] == code and words in outcome.error["message"], outcome.error
    assert d.stores["dev"].docs == {}


def test_an_owner_over_the_submit_rate_is_refused_as_the_api_refuses(parts: Any, d: Any) -> None:
    intake, requests, _ = parts
    d.quotas.clock = lambda: 0.0  # no refill while the test runs
    rate = d.infra.env("dev").quotas.submits_per_minute
    for i in range(rate + 1):
        requests.put(f"req-rate-{i:04d}", pending(ECHO))
    outcomes = [intake.process("dev", f"req-rate-{i:04d}") for i in range(rate + 1)]
    assert [o.status for o in outcomes].count("accepted") == rate
    last = outcomes[-1]
    assert last.status == "refused" and last.error is not None and last.error["code"] == "rate_limited"
    assert len(d.stores["dev"].docs) == rate


def test_an_unreachable_firebase_auth_leaves_the_request_pending(parts: Any, d: Any) -> None:
    intake, requests, owners = parts
    requests.put("req-outage", pending(ECHO))
    owners.down = True
    with pytest.raises(Unavailable):
        intake.process("dev", "req-outage")
    assert requests.docs["req-outage"]["status"] == "pending" and requests.writes == 0
    owners.down = False
    assert intake.process("dev", "req-outage").status == "accepted"


def test_a_deleted_request_is_gone_and_writes_nothing(parts: Any, d: Any) -> None:
    intake, requests, _ = parts
    assert intake.process("dev", "req-never1").status == "gone"
    assert requests.writes == 0 and d.stores["dev"].docs == {}


def test_the_sweep_takes_only_requests_older_than_its_delay(parts: Any, d: Any) -> None:
    intake, requests, _ = parts
    intake.sweep_after = timedelta(seconds=30)
    requests.put("req-lost-01", pending(ECHO), age=timedelta(minutes=5))
    requests.put("req-lost-02", pending({"type": "nope"}), age=timedelta(minutes=5))
    requests.put("req-fresh-1", pending(ECHO))
    report = intake.sweep("dev")
    assert (report.accepted, report.refused) == (["req-lost-01"], ["req-lost-02"])
    assert requests.docs["req-fresh-1"]["status"] == "pending"
    assert intake.sweep("dev").accepted == []  # decided ones are no longer pending
