"""What `pipelines/{id}` holds of each step (the console draws it), and a pipeline's spec as promoted.

The same documents are written and promoted on the local stack in tests/e2e/test_pipelines.py,
tests/e2e/test_promote.py and tests/e2e/test_console.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobrelay import pipeline_doc
from jobrelay.errors import Unprocessable
from jobrelay.models import Job
from jobrelay.pipeline_promotion import PipelinePromoter, check_spec, spec_of_pipeline
from tests.fakes import job_doc

AT = datetime(2026, 1, 1, tzinfo=UTC)
COUNTED = {"returned": {"n": 3}, "children": {"parent_id": "fan-0001", "total": 3, "succeeded": 2, "failed": 1}}


def job(**fields: Any) -> Job:
    return Job.model_validate(job_doc("fan-0001", **fields))


@pytest.mark.parametrize(
    ("fields", "children", "succeeded", "failed"),
    [
        ({"status": "running", "attempt": 1}, None, None, None),  # not a fan-out
        ({"status": "waiting", "attempt": 1, "spawned": 3}, 3, None, None),  # its children run
        ({"status": "succeeded", "attempt": 1, "spawned": 3, "result": COUNTED}, 3, 2, 1),
        ({"status": "dead_lettered", "attempt": 1, "spawned": 3, "result": COUNTED}, 3, 2, 1),
        # Waiting again (its failed children redriven): the last fan-in's count is not shown as current.
        ({"status": "waiting", "attempt": 1, "spawned": 3, "result": COUNTED}, 3, None, None),
        # A plain step whose result happens to hold "children" is not a fan-out.
        ({"status": "succeeded", "attempt": 1, "result": {"children": {"succeeded": 5}}}, None, None, None),
    ],
)
def test_a_step_entry_counts_a_fan_outs_children_once_its_fan_in_ended_it(
    fields: dict[str, Any], children: int | None, succeeded: int | None, failed: int | None
) -> None:
    entry = pipeline_doc.step_entry(job(**fields))
    assert (entry["children"], entry["children_succeeded"], entry["children_failed"]) == (children, succeeded, failed)
    assert entry["status"] == fields["status"] and entry["job_id"] == "fan-0001"


def test_public_answers_promotion_links_with_rfc3339_times() -> None:
    link = {"env": "dev", "kind": "pipeline", "id": "p" * 24, "by": "ops", "at": AT}
    out = pipeline_doc.public({"id": "p1", "steps": {}, "order": [], "promoted_from": link, "promoted_to": [link]})
    assert out["promoted_from"]["at"] == out["promoted_to"][0]["at"] == "2026-01-01T00:00:00Z"
    assert out["promoted_from"]["id"] == "p" * 24


def stored_pipeline() -> tuple[dict[str, Any], dict[str, Job]]:
    jobs = {
        "p1-a": Job.model_validate(
            job_doc(
                "p1-a",
                type="report",
                payload={"collection": "orders"},
                labels={"team": "data", "schedule": "nightly"},
                status="succeeded",
            )
        ),
        "p1-b": Job.model_validate(
            job_doc("p1-b", type="report", payload={"collection": "users"}, allow_failed_children=2, status="succeeded")
        ),
    }
    data = {
        "id": "p1",
        "name": "nightly",
        "labels": {"team": "data"},
        "order": ["a", "b"],
        "steps": {
            "a": {"job_id": "p1-a", "status": "succeeded", "type": "report", "after": []},
            "b": {"job_id": "p1-b", "status": "succeeded", "type": "report", "after": ["a"]},
        },
    }
    return data, jobs


def test_a_pipelines_spec_is_its_steps_specs_with_their_after_in_order() -> None:
    data, jobs = stored_pipeline()
    spec = spec_of_pipeline(data, jobs)
    assert spec["name"] == "nightly" and spec["labels"] == {"team": "data"}
    assert list(spec["steps"]) == ["a", "b"]
    a, b = spec["steps"]["a"], spec["steps"]["b"]
    assert a["type"] == "report" and a["payload"] == {"collection": "orders"} and a["after"] == []
    assert a["labels"] == {"team": "data"}  # the `schedule` label stays behind, as a job's does
    assert "allow_failed_children" not in a
    assert b["after"] == ["a"] and b["allow_failed_children"] == 2
    check_spec(spec)  # what the source gives, the target takes


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "x", "steps": {}, "idempotency_key": "k"}, "spec.idempotency_key"),
        ({"name": "x", "steps": {"a": {"type": "report", "run_at": "2030-01-01T00:00:00Z"}}}, "spec.steps.a.run_at"),
        ({"name": "x", "steps": {"a": {"type": "report", "depends_on": ["abcdef"]}}}, "spec.steps.a.depends_on"),
        ({"name": "x", "steps": {"a": {"type": "report", "concurrency": {"key": "k"}}}}, "spec.steps.a.concurrency"),
    ],
)
def test_a_promoted_pipeline_carries_only_what_its_steps_are(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(Unprocessable) as exc:
        check_spec(spec)
    assert exc.value.message.startswith(f"{field}: a promoted pipeline holds only")
    assert exc.value.details[0] == {"field": field, "problem": "not promotable"}


def test_a_pipeline_schedules_spec_is_its_pipeline_named_after_it_without_its_timing() -> None:
    body = {
        "idempotency_key": "k",
        "labels": {"team": "data"},
        "steps": {
            "first": {"type": "report", "payload": {}, "delay_seconds": 5},
            "then": {"type": "report", "after": ["first"]},
        },
    }
    spec = PipelinePromoter.schedule_spec("nightly", body)
    assert spec == {
        "name": "nightly",
        "labels": {"team": "data", "promoted_schedule": "nightly"},
        "steps": {"first": {"type": "report", "payload": {}}, "then": {"type": "report", "after": ["first"]}},
    }
    check_spec(spec)


def test_a_refused_promoted_pipeline_echoes_no_long_name_back() -> None:
    long = "x" * 5000
    with pytest.raises(Unprocessable) as exc:
        check_spec({"name": "x", "steps": {long: {"type": "report", long: 1}}})
    assert exc.value.details[0]["field"] == f"spec.steps.{'x' * 40}.{'x' * 60}"
    assert len(exc.value.message) < 500
