"""Eventarc's Firestore events (golden files made with Google's own google-events classes) read and written."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from google.events.cloud.firestore_v1 import DocumentEventData as GoogleDocumentEventData

from jobrelay import cloudevents
from jobrelay.errors import BadRequest
from tests.unit.test_golden_payloads import golden

REQUEST = "job_requests/Xk3pQm9vT2aLr8bWnE5c"
FIELDS = {
    "type": "report",
    "payload": {"collection": "orders", "group_by": "status", "sum_fields": ["total"]},
    "labels": {"order": "o-1042"},
    "delay_seconds": 30,
    "owner": "7rWzP2hQ0bS4kNfV9aLc1XyE3uJ2",
    "status": "pending",
}


def call(name: str) -> tuple[dict[str, str], bytes]:
    data = json.loads(golden(name))
    headers = {k.lower(): v for k, v in data["headers"].items()}
    body = base64.b64decode(data["body_base64"]) if "body_base64" in data else json.dumps(data["body"]).encode()
    return headers, body


@pytest.mark.parametrize("name", ["eventarc_firestore_created.json", "eventarc_firestore_created_json.json"])
def test_eventarc_calls_are_read_in_both_content_types(name: str) -> None:
    headers, body = call(name)
    event = cloudevents.parse(headers, body)
    assert (event.type, event.project, event.database) == (cloudevents.CREATED, "singular-dream", "(default)")
    assert (event.document, event.collection, event.doc_id) == (REQUEST, "job_requests", "Xk3pQm9vT2aLr8bWnE5c")
    assert event.fields == FIELDS
    assert event.create_time == datetime(2026, 11, 26, 5, 0, 1, 482913, tzinfo=UTC)
    assert event.attributes["location"] == "us-central1" and event.attributes["dataschema"] == cloudevents.DATASCHEMA


def test_what_the_local_eventarc_sends_is_what_eventarc_sends() -> None:
    """Same headers as the golden call, and a body Google's own class reads back to the same document."""
    at = datetime(2026, 11, 26, 5, 0, 1, 482913, tzinfo=UTC)
    headers, body = cloudevents.encode_event(
        event_id="e-1",
        project="singular-dream",
        path=REQUEST,
        fields=FIELDS,
        create_time=at,
        update_time=at,
        location="us-central1",
    )
    golden_headers, golden_body = call("eventarc_firestore_created.json")
    ours = {k.lower() for k in headers}
    assert ours == {k for k in golden_headers if k.startswith("ce-") or k == "content-type"}
    for key in ours - {"ce-id"}:
        assert {k.lower(): v for k, v in headers.items()}[key] == golden_headers[key], key
    assert GoogleDocumentEventData.deserialize(body) == GoogleDocumentEventData.deserialize(golden_body)
    again = cloudevents.parse({k.lower(): v for k, v in headers.items()}, body)
    assert again.fields == FIELDS and again.create_time == at


def test_values_without_a_json_form_are_kept_apart() -> None:
    class Ref:
        _document_path = "projects/p/databases/(default)/documents/orders/o1"

    class Geo:
        latitude, longitude = 52.5, 13.4

    at = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, Any] = {"b": b"\x00", "r": Ref(), "g": Geo(), "t": at, "n": None, "f": 1.5}
    fields["nested"] = [{"x": True}]
    headers, body = cloudevents.encode_event(
        event_id="e", project="p-roject", path=REQUEST, fields=fields, create_time=at, update_time=at, location="l"
    )
    got = cloudevents.parse({k.lower(): v for k, v in headers.items()}, body).fields
    assert got["b"] == cloudevents.NotJson("bytes") and got["r"] == cloudevents.NotJson("reference")
    assert got["g"] == cloudevents.NotJson("geo_point")
    assert (got["t"], got["n"], got["f"], got["nested"]) == (at, None, 1.5, [{"x": True}])


def _without(key: str) -> Any:
    return lambda h, b: ({k: v for k, v in h.items() if k != key}, b)


def _with(key: str, value: str) -> Any:
    return lambda h, b: ({**h, key: value}, b)


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (_without("ce-id"), "missing ce-id"),
        (_without("ce-source"), "missing ce-source"),
        (_with("ce-specversion", "0.3"), "ce-specversion"),
        (_with("ce-source", "//storage.googleapis.com/projects/_/buckets/b"), "ce-source must be"),
        (_with("ce-source", "//firestore.googleapis.com/projects/other-project/databases/(default)"), "is not in"),
        (_with("content-type", "text/plain"), "is not application/protobuf"),
        (_with("content-type", "application/json"), "not a DocumentEventData"),
        (_with("ce-document", "job_requests/other"), "ce-document does not name"),
        (_with("ce-subject", "documents/orders/o1"), "ce-subject does not name"),
        (_with("ce-id", "x" * 3000), "over 2048"),
        (lambda h, b: (h, b""), "no body"),
        (lambda h, b: (h, b"\xff\xff\xff\xff"), "not a DocumentEventData"),
        (lambda h, b: (h, b"\x12\x00"), "carries no document"),
    ],
)
def test_a_broken_call_is_refused_naming_the_problem(mutate: Any, expect: str) -> None:
    headers, body = mutate(*call("eventarc_firestore_created.json"))
    with pytest.raises(BadRequest, match=expect):
        cloudevents.parse(headers, body)
