"""The Eventarc trigger of job requests matches the code: collection, route, content type, identity."""

from __future__ import annotations

import pytest

from jobrelay import cloudevents, namespace
from jobrelay.routes import ROUTES
from tests.infra import contract
from tests.infra.test_environment_module import ENV_DIR, MODULE, mutated

EVENT_ROUTE = next(r.path for r in ROUTES if r.handler == "job_request_event")
WANT = {
    "collection": namespace.REQUESTS,
    "path": EVENT_ROUTE,
    "content_types": (cloudevents.PROTOBUF, cloudevents.JSON),
}


def test_the_trigger_sends_the_new_requests_the_code_reads_to_the_event_route() -> None:
    assert contract.check_eventarc(MODULE, **WANT) == []  # type: ignore[arg-type]


def test_the_route_the_trigger_calls_is_the_apis() -> None:
    route = next(r for r in ROUTES if r.handler == "job_request_event")
    assert (route.method, route.who) == ("POST", "eventarc")


@pytest.mark.parametrize(
    ("file_name", "old", "new", "expect"),
    [
        ("eventarc.tf", 'collection = "job_requests"', 'collection = "requests"', "jobrelay.namespace.REQUESTS"),
        ("eventarc.tf", 'path       = "/v1/events/job-requests"', 'path       = "/events"', "event route"),
        ("eventarc.tf", 'content_type = "application/protobuf"', 'content_type = "text/plain"', "content_type"),
        (
            "eventarc.tf",
            "google.cloud.firestore.document.v1.created",
            "google.cloud.firestore.document.v1.written",
            "created",
        ),
        ("eventarc.tf", 'operator  = "match-path-pattern"\n', "", "match-path-pattern"),
        (
            "eventarc.tf",
            'google_service_account.sa["eventarc"].email',
            'google_service_account.sa["api"].email',
            "eventarc service account",
        ),
        (
            "eventarc.tf",
            "location                = google_firestore_database.default.location_id",
            'location                = "global"',
            "location",
        ),
        (
            "eventarc.tf",
            'google_cloud_run_v2_service.svc["api"].name',
            'google_cloud_run_v2_service.svc["worker"].name',
            "API's event route",
        ),
        (
            "eventarc.tf",
            "  member             = local.pubsub_agent\n",
            '  member             = "user:x@example.com"\n',
            "serviceAccountTokenCreator",
        ),
        ("apis.tf", '    "eventarc.googleapis.com",\n', "", "eventarc.googleapis.com"),
    ],
)
def test_the_eventarc_check_fails_on_a_broken_module(file_name: str, old: str, new: str, expect: str) -> None:
    problems = contract.check_eventarc(mutated(ENV_DIR, file_name, old, new), **WANT)  # type: ignore[arg-type]
    assert any(expect in p for p in problems), problems


def test_the_trigger_account_receives_events_and_reads_no_data() -> None:
    roles = MODULE.local("project_roles")
    assert roles["eventarc"] == ["roles/eventarc.eventReceiver"]
    broken = mutated(
        ENV_DIR,
        "iam.tf",
        '      "roles/eventarc.eventReceiver",\n',
        '      "roles/eventarc.eventReceiver",\n      "roles/datastore.user",\n',
    )
    assert any("eventarc may hold only" in p for p in contract.check_identities(broken))
