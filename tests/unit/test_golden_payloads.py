"""The payloads Google sends, as golden files: Pub/Sub push envelopes and a Cloud Scheduler call."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobrelay import cron, deadletters

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def test_dead_letter_push_envelope_is_read() -> None:
    msg, message_id = deadletters.parse_push(golden("pubsub_push_dead_letter.json"))
    assert message_id == "13264998391748190"
    assert (msg.env, msg.job_id, msg.type, msg.attempt) == ("dev", "5c646f8f4315250b6d625738", "flaky", 1)
    assert msg.error is not None and msg.error.fingerprint == "3f783397c4f402a1" and msg.error.retryable is False


def test_pool_poison_envelope_names_the_job_and_the_deliveries() -> None:
    msg, message_id = deadletters.parse_pool_push(golden("pubsub_push_pool_poison.json"))
    assert message_id == "4412000388123"
    assert (msg.env, msg.job_id, msg.source) == ("dev", "9461457edbd5aa11bb22cc33", "pool")
    assert msg.error is not None and "after 5 deliveries" in msg.error.message


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("message"),
        lambda e: e["message"].update(data="not base64!"),
        lambda e: e["message"].update(data="bm90IGpzb24="),  # "not json"
        lambda e: e["message"].pop("data"),
    ],
)
def test_broken_envelopes_are_refused_with_a_reason(mutate) -> None:  # type: ignore[no-untyped-def]
    envelope = json.loads(golden("pubsub_push_dead_letter.json"))
    mutate(envelope)
    with pytest.raises(ValueError):
        deadletters.parse_push(json.dumps(envelope).encode())


def test_scheduler_call_carries_the_scheduled_time() -> None:
    call = json.loads(golden("cloud_scheduler_call.json"))
    headers = {k.lower(): v for k, v in call["headers"].items()}
    scheduled = cron.parse_schedule_time(headers["x-cloudscheduler-scheduletime"], datetime.now(UTC))
    assert scheduled == datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
    name = call["path"].rsplit("/", 1)[1]
    assert cron.job_id(name, scheduled) == cron.job_id(name, scheduled.replace(second=0))
    assert cron.job_id(name, scheduled).endswith("-daily-user-report-202611260500")


def test_a_manual_run_without_the_header_uses_the_current_minute() -> None:
    at = datetime(2026, 11, 26, 5, 0, 42, 1234, tzinfo=UTC)
    assert cron.parse_schedule_time(None, at) == datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="RFC 3339"):
        cron.parse_schedule_time("yesterday", at)
