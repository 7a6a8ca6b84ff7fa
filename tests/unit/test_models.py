from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

import jobrelay
from jobrelay.models import JobSpec


def test_public_surface_is_listed_in_all() -> None:
    assert set(jobrelay.__all__) == {
        "ClientError",
        "Fatal",
        "Job",
        "JobCancelled",
        "JobContext",
        "JobError",
        "JobSpec",
        "JobType",
        "JobrelayClient",
        "Progress",
        "Retry",
        "Status",
        "job_type",
    }
    for name in jobrelay.__all__:
        assert getattr(jobrelay, name) is not None


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"type": "x", "payload": []}, "payload"),
        ({"type": ""}, "type"),
        ({"type": "x", "extra": 1}, "extra"),
        ({"type": "x", "delay_seconds": -1}, "delay_seconds"),
        ({"type": "x", "labels": {"Bad Key": "v"}}, "label key"),
        ({"type": "x", "depends_on": ["../etc"]}, "not a job id"),
        ({"type": "x", "run_at": "2030-01-01T00:00:00"}, "time zone"),
        ({"type": "x", "max_attempts": 0}, "max_attempts"),
    ],
)
def test_bad_specs_name_the_field(spec: dict, problem: str) -> None:
    with pytest.raises(ValidationError) as err:
        JobSpec.model_validate(spec)
    assert problem in str(err.value)


def test_due_time_from_delay_or_run_at() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert JobSpec(type="x").due_at(at) is None
    assert JobSpec(type="x", delay_seconds=30).due_at(at) == at + timedelta(seconds=30)
    assert JobSpec(type="x", run_at=at - timedelta(seconds=1)).due_at(at) is None
    with pytest.raises(ValueError, match="30 days"):
        JobSpec(type="x", run_at=at + timedelta(days=31)).due_at(at)
