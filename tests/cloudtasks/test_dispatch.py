"""What reaches the target: headers, retries with backoff, limits, deadlines, throttling, OIDC, projects."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import google.auth.transport.requests
import pytest
from google.api_core.exceptions import NotFound
from google.cloud import tasks_v2
from google.oauth2 import id_token

from jobrelay.backoff import backoff_seconds
from jobrelay.local.procs import free_port

from .helpers import PROJECTS, eventually, http_task

GOLDEN = json.loads((Path(__file__).parent / "golden" / "dispatch_headers.json").read_text())
RPC_UNAVAILABLE, RPC_DEADLINE_EXCEEDED = 14, 4


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def _gone(client, name: str) -> bool:
    try:
        client.get_task(name=name)
    except NotFound:
        return True
    return False


def _normalized(seen) -> dict[str, str]:
    placeholders = {"Host": "<target>", "X-CloudTasks-QueueName": "<queue>", "X-CloudTasks-TaskETA": "<eta>"}
    return {k: placeholders.get(k, v) for k, v in seen.headers.items()}


def test_each_attempt_carries_the_cloud_tasks_headers(client, make_queue, target):
    queue = make_queue(retry_config={"min_backoff": _seconds(1), "max_backoff": _seconds(1)})
    target.answer(404)
    spoofed = {"User-Agent": "mine", "X-CloudTasks-TaskName": "spoofed", "X-Google-Internal": "no"}
    headers = {"Content-Type": "application/json", "X-Custom": "kept", **spoofed}
    task = client.create_task(
        parent=queue,
        task=http_task(
            target.url + "/run?x=1", name=f"{queue}/tasks/headers-task", body=b'{"job":"j1"}', headers=headers
        ),
    )
    first, retry = target.wait_for(2, timeout=5)
    assert _normalized(first) == GOLDEN["first_attempt"]
    assert _normalized(retry) == GOLDEN["retry"]
    for seen in (first, retry):
        assert len(seen.names) == len(set(seen.names)), "no header is sent twice"
        assert (seen.method, seen.path, seen.body) == ("POST", "/run?x=1", b'{"job":"j1"}')
        assert seen.header("X-CloudTasks-QueueName") == queue.rsplit("/", 1)[1]
        assert float(seen.header("X-CloudTasks-TaskETA")) <= seen.at
    assert float(first.header("X-CloudTasks-TaskETA")) == pytest.approx(task.schedule_time.timestamp(), abs=1e-3)


@pytest.mark.parametrize(("headers", "sent"), [({}, None), ({"Content-Type": "text/csv"}, "text/csv")])
def test_content_type_is_sent_only_when_the_creator_gave_one(client, make_queue, target, headers, sent):
    queue = make_queue()
    client.create_task(parent=queue, task=http_task(target.url, body=b"a,b", headers=headers))
    (seen,) = target.wait_for(1)
    assert seen.header("Content-Type") == sent


@pytest.mark.parametrize(("first_status", "execution_count"), [(404, 1), (503, 0)])
def test_execution_count_skips_5xx_answers(client, make_queue, target, first_status, execution_count):
    queue = make_queue(retry_config={"min_backoff": _seconds(1), "max_backoff": _seconds(1)})
    target.answer(first_status)
    client.create_task(parent=queue, task=http_task(target.url))
    _, retry = target.wait_for(2, timeout=5)
    assert retry.header("X-CloudTasks-TaskRetryCount") == "1"
    assert retry.header("X-CloudTasks-TaskExecutionCount") == str(execution_count)
    assert retry.header("X-CloudTasks-TaskPreviousResponse") == str(first_status)


def test_failures_retry_after_the_queues_backoff_until_max_attempts(client, make_queue, target):
    retry = {"max_attempts": 3, "min_backoff": _seconds(1), "max_backoff": _seconds(10), "max_doublings": 4}
    queue = make_queue(retry_config=retry)
    target.answer(500, 500, 500, 500)
    task = client.create_task(parent=queue, task=http_task(target.url))
    seen = target.wait_for(3, timeout=8)
    eventually(lambda: _gone(client, task.name), what="the task to be dropped after 3 attempts")
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
    expected = [backoff_seconds(k, min_backoff=1, max_backoff=10, max_doublings=4) for k in (1, 2)]
    assert expected == [1.0, 2.0]
    for gap, backoff in zip(gaps, expected, strict=True):
        assert backoff <= gap <= backoff + 0.5  # never early; well short of the next backoff step
    assert [s.header("X-CloudTasks-TaskRetryCount") for s in seen] == ["0", "1", "2"]
    assert len(target.requests) == 3


@pytest.mark.parametrize(
    ("max_attempts", "max_retry_duration", "backoff", "attempts"),
    [
        (1, 3, 2, 3),  # the duration is not over after 1 attempt: keep going until it is (t = 0, 2, 4)
        (3, 1, 1, 3),  # the duration is over after 2 attempts, but the attempts are not used up yet
    ],
)
def test_retries_stop_only_when_both_limits_are_reached(
    client, make_queue, target, max_attempts, max_retry_duration, backoff, attempts
):
    retry = {
        "max_attempts": max_attempts,
        "max_retry_duration": _seconds(max_retry_duration),
        "min_backoff": _seconds(backoff),
        "max_backoff": _seconds(backoff),
    }
    queue = make_queue(retry_config=retry)
    target.answer(*[500] * 10)
    task = client.create_task(parent=queue, task=http_task(target.url))
    target.wait_for(attempts, timeout=attempts * backoff + 3)
    eventually(lambda: _gone(client, task.name), timeout=3, what="the task to be dropped")
    assert len(target.requests) == attempts


def test_a_refused_connection_is_a_failed_attempt(client, make_queue):
    queue = make_queue(retry_config={"max_attempts": 2, "min_backoff": _seconds(1), "max_backoff": _seconds(1)})
    task = client.create_task(parent=queue, task=http_task(f"http://127.0.0.1:{free_port()}/nobody"))
    eventually(
        lambda: client.get_task(name=task.name).last_attempt.response_status.code != 0,
        what="the first attempt",
    )
    failed = client.get_task(name=task.name)
    assert (failed.dispatch_count, failed.response_count) == (1, 0)
    assert failed.last_attempt.response_status.code == RPC_UNAVAILABLE
    assert failed.last_attempt.schedule_time <= failed.last_attempt.dispatch_time <= failed.last_attempt.response_time
    assert failed.schedule_time > failed.last_attempt.response_time  # the retry waits for its backoff
    eventually(lambda: _gone(client, task.name), timeout=4, what="the task to be dropped after 2 attempts")


def test_a_target_slower_than_the_dispatch_deadline_fails_the_attempt(client, make_queue, target):
    queue = make_queue(retry_config={"min_backoff": _seconds(1), "max_backoff": _seconds(1)})
    target.script = lambda n: (200, 30.0 if n == 0 else 0.0)
    task = client.create_task(parent=queue, task=http_task(target.url, dispatch_deadline=_seconds(15)))
    first, retry = target.wait_for(2, timeout=25)
    assert 15 <= retry.at - first.at <= 15 + 1 + 1.0
    assert retry.header("X-CloudTasks-TaskRetryCount") == "1"
    assert retry.header("X-CloudTasks-TaskRetryReason") == "DEADLINE_EXCEEDED"
    assert retry.header("X-CloudTasks-TaskPreviousResponse") is None
    eventually(lambda: _gone(client, task.name), what="the retried task to finish")


def test_concurrent_dispatches_never_exceed_the_queues_limit(client, make_queue, target):
    queue = make_queue(paused=True, rate_limits={"max_concurrent_dispatches": 2})
    target.answer(delay=0.3)
    for _ in range(8):
        client.create_task(parent=queue, task=http_task(target.url))
    client.resume_queue(name=queue)
    target.wait_for(8, timeout=5)
    assert target.max_in_flight == 2


def test_dispatch_rate_stays_within_the_token_bucket(client, make_queue, target):
    queue = make_queue(paused=True, rate_limits={"max_dispatches_per_second": 10})
    burst = client.get_queue(name=queue).rate_limits.max_burst_size
    assert burst == 2
    for _ in range(12):
        client.create_task(parent=queue, task=http_task(target.url))
    client.resume_queue(name=queue)
    times = [s.at for s in target.wait_for(12, timeout=5)]
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            allowed = burst + 10 * (times[j] - times[i]) + 1  # one token of arrival jitter
            assert j - i + 1 <= allowed, f"{j - i + 1} dispatches within {times[j] - times[i]:.3f}s"


@pytest.mark.parametrize("audience", ["https://worker.example/run", None])
def test_oidc_token_verifies_against_the_emulators_certs(client, make_queue, target, emulator, audience):
    queue = make_queue()
    email = "tasks-invoker@proj-a.iam.gserviceaccount.com"
    oidc = {"service_account_email": email, **({"audience": audience} if audience else {})}
    client.create_task(parent=queue, task=http_task(target.url + "/work", oidc_token=oidc))
    (seen,) = target.wait_for(1)
    scheme, token = seen.header("Authorization").split(" ", 1)
    assert scheme == "Bearer"
    expected_audience = audience or target.url + "/work"
    claims = id_token.verify_token(
        token,
        google.auth.transport.requests.Request(),
        audience=expected_audience,
        certs_url=emulator.certs_url,
    )
    assert claims["email"] == email
    assert claims["email_verified"] is True
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["sub"].isdigit()


def test_projects_with_the_same_queue_id_stay_apart(client, target):
    names = [f"projects/{p}/locations/us-central1/queues/jobrelay-a" for p in PROJECTS[1:]]
    for name in names:
        client.pause_queue(name=name)
    try:
        tasks = [client.create_task(parent=name, task=http_task(target.url, body=name.encode())) for name in names]
        for name, task in zip(names, tasks, strict=True):
            assert [t.name for t in client.list_tasks(parent=name)] == [task.name]
        client.resume_queue(name=names[0])
        (seen,) = target.wait_for(1)
        assert seen.body == names[0].encode()
        assert [t.name for t in client.list_tasks(parent=names[1])] == [tasks[1].name]
    finally:
        for name in names:
            client.resume_queue(name=name)
    target.wait_for(2)


def test_run_task_reports_the_dispatch_it_started(client, make_queue, target):
    queue = make_queue(paused=True)
    task = client.create_task(parent=queue, task=http_task(target.url))
    ran = client.run_task(request={"name": task.name, "response_view": tasks_v2.Task.View.FULL})
    assert ran.first_attempt.dispatch_time == ran.last_attempt.dispatch_time
    assert ran.view == tasks_v2.Task.View.FULL
    target.wait_for(1)
