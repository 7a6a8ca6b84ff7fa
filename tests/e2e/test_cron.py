"""Cron through (the local stand-in for) Cloud Scheduler, and schedule health."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import requests

from jobrelay import cron
from jobrelay.local.oidc import LocalSigner
from jobrelay.local.scheduler import LocalScheduler
from jobrelay.local.stack import Stack
from tests.support import ApiUser, count_jobs, wait_for


def tick(
    stack: Stack,
    name: str,
    scheduled: datetime | None,
    *,
    env: str = "dev",
    email: str | None = None,
    token: str | None = None,
    audience: str | None = None,
) -> requests.Response:
    email = email or stack.infra.env(env).service_accounts.scheduler
    if token is None:
        token = LocalSigner(stack.key_file).mint(audience or stack.url("api"), email)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if scheduled is not None:
        headers["X-CloudScheduler-ScheduleTime"] = scheduled.isoformat().replace("+00:00", "Z")
    return requests.post(f"{stack.url('api')}/v1/cron/{name}", params={"env": env}, headers=headers, timeout=30)


def schedules(stack: Stack) -> tuple[int, dict[tuple[str, str], dict]]:
    r = requests.get(f"{stack.url('api')}/v1/schedules", timeout=30)
    return r.status_code, {(s["name"], s["env"]): s for s in r.json()["schedules"]}


def minute(offset: int = 0) -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=offset)


def own_minutes() -> int:
    """An offset for minute(): long ago, random, so a tick on the session's shared stack names a job no
    other module's tick (made minutes earlier or later) can name."""
    return -secrets.randbelow(500_000) - 100_000


def test_tick_creates_a_job_that_runs(stack: Stack, admin: ApiUser) -> None:
    at = minute(-1)
    r = tick(stack, "test-echo", at)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["id"] == cron.job_id("test-echo", at)
    assert job["labels"] == {"schedule": "test-echo", "scheduled_for": at.strftime("%Y%m%d%H%M")}
    done = admin.wait(job["id"])
    assert done["status"] == "succeeded" and done["result"] == {"message": "tick"}
    _, by_name = schedules(stack)
    s = by_name[("test-echo", "dev")]
    assert s["last_job_id"] == job["id"] and s["last_outcome"] == "succeeded" and s["healthy"] is True
    assert s["last_success"] is not None and s["next_run"] > s["last_run"]


def test_same_tick_twice_gives_one_job(stack: Stack) -> None:
    at = minute(-2)
    first = tick(stack, "test-echo", at)
    before = count_jobs(stack, "dev")
    second = tick(stack, "test-echo", at)
    assert first.status_code in (200, 202) and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert count_jobs(stack, "dev") == before


def test_tick_without_a_valid_scheduler_token_is_refused_and_creates_nothing(stack: Stack, alice: ApiUser) -> None:
    at = minute(-3)
    before = count_jobs(stack, "dev")
    cases = [
        (tick(stack, "test-echo", at, token=""), 401),
        (tick(stack, "test-echo", at, token=alice.token()), 401),
        (tick(stack, "test-echo", at, email=stack.infra.env("dev").service_accounts.tasks_invoker), 403),
        (tick(stack, "test-echo", at, email=stack.infra.env("prod").service_accounts.scheduler), 403),
        (tick(stack, "test-echo", at, audience="https://elsewhere.example"), 401),
    ]
    for r, status in cases:
        assert r.status_code == status, r.text
        assert r.json()["error"]["message"]
    assert count_jobs(stack, "dev") == before


def test_unknown_schedule_is_404_and_a_disabled_one_409(stack: Stack) -> None:
    r = tick(stack, "no-such-schedule", minute())
    assert r.status_code == 404 and "no schedule 'no-such-schedule'" in r.json()["error"]["message"]
    assert tick(stack, "daily-user-report", minute(), env="dev").status_code == 404  # not a dev schedule
    assert tick(stack, "test-paused", minute()).status_code == 409


def test_health_reports_overdue_and_failing_schedules(stack: Stack, admin: ApiUser) -> None:
    # The maintenance schedule runs every minute; its last tick ten minutes ago makes it overdue.
    r = tick(stack, "maintenance", minute(-10))
    assert r.status_code in (200, 202)
    admin.wait(r.json()["id"])
    failing = tick(stack, "test-failing", minute(-1))
    admin.wait(failing.json()["id"])
    status, by_name = wait_for(
        lambda: (res := schedules(stack))[1][("test-failing", "dev")]["last_outcome"] == "dead_lettered" and res,
        what="failing outcome recorded",
    )
    assert status == 503
    assert by_name[("maintenance", "dev")]["healthy"] is False
    assert "overdue" in by_name[("maintenance", "dev")]["reason"]
    assert by_name[("test-failing", "dev")]["healthy"] is False
    assert "dead_lettered" in by_name[("test-failing", "dev")]["reason"]
    assert by_name[("test-paused", "dev")]["reason"] == "disabled"
    # A fresh tick on time makes maintenance healthy again.
    fresh = tick(stack, "maintenance", minute())
    admin.wait(fresh.json()["id"])
    assert schedules(stack)[1][("maintenance", "dev")]["healthy"] is True


def test_local_scheduler_fires_what_fell_due(stack: Stack, admin: ApiUser) -> None:
    boundary = minute(-30)
    boundary -= timedelta(minutes=boundary.minute % 5)  # test-echo fires every 5 minutes, on the 5s
    start = boundary - timedelta(seconds=1)
    sched = LocalScheduler(stack.infra, ["dev"], stack.url("api"), LocalSigner(stack.key_file), start=start)
    fired = sched.tick(at=boundary + timedelta(minutes=4, seconds=1))
    test_echo = [f for f in fired if f[0] == "test-echo"]
    assert len(test_echo) == 1 and test_echo[0][2] == 202
    assert len([f for f in fired if f[0] == "maintenance"]) == 5
    assert all(status in (200, 202) for _, _, status in fired)
    assert not any(f[0] == "test-paused" for f in fired)
