"""Task lifecycle through the official client: names, schedule, views, delete, run, errors."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from .helpers import LOCATION, eventually, http_task

BASIC, FULL = tasks_v2.Task.View.BASIC, tasks_v2.Task.View.FULL


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("first_task_state", ["waiting", "finished", "deleted"])
def test_a_used_task_name_is_already_exists(client, make_queue, target, first_task_state):
    queue = make_queue(paused=first_task_state != "finished")
    name = f"{queue}/tasks/order-42"
    client.create_task(parent=queue, task=http_task(target.url, name=name))
    if first_task_state == "finished":
        target.wait_for(1)
        eventually(lambda: list(client.list_tasks(parent=queue)) == [], what="the task to finish")
    elif first_task_state == "deleted":
        client.delete_task(name=name)
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue, task=http_task(target.url, name=name))


def test_unnamed_tasks_get_distinct_generated_ids(client, make_queue, target):
    queue = make_queue(paused=True)
    first = client.create_task(parent=queue, task=http_task(target.url))
    second = client.create_task(parent=queue, task=http_task(target.url))
    ids = [t.name.rsplit("/tasks/", 1)[1] for t in (first, second)]
    assert ids[0] != ids[1]
    assert all(i.isdigit() for i in ids)
    assert all(t.name.startswith(queue + "/tasks/") for t in (first, second))


def test_a_task_is_never_dispatched_before_its_schedule_time(client, make_queue, target):
    queue = make_queue()
    task = client.create_task(parent=queue, task=http_task(target.url, schedule_time=_in(1.2)))
    scheduled = task.schedule_time.timestamp()
    (seen,) = target.wait_for(1, timeout=5)
    assert seen.at >= scheduled
    assert float(seen.header("X-CloudTasks-TaskETA")) == pytest.approx(scheduled, abs=1e-3)


def test_a_deleted_task_never_dispatches(client, make_queue, target):
    queue = make_queue()
    task = client.create_task(parent=queue, task=http_task(target.url, schedule_time=_in(0.8)))
    client.delete_task(name=task.name)
    time.sleep(1.3)
    assert target.requests == []
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=task.name)


def test_run_task_dispatches_at_once_even_on_a_paused_queue(client, make_queue, target):
    queue = make_queue(paused=True)
    task = client.create_task(parent=queue, task=http_task(target.url, schedule_time=_in(3600)))
    ran = client.run_task(name=task.name)
    assert ran.dispatch_count == 1
    assert ran.last_attempt.dispatch_time
    (seen,) = target.wait_for(1, timeout=3)
    assert seen.header("X-CloudTasks-TaskName") == task.name.rsplit("/", 1)[1]
    eventually(lambda: list(client.list_tasks(parent=queue)) == [], what="the run task to be removed")


def _read_with_view(client, queue, url, how, view):
    if how == "create":
        return client.create_task(
            request={"parent": queue, "task": http_task(url, body=b"payload"), "response_view": view}
        )
    task = client.create_task(parent=queue, task=http_task(url, body=b"payload", headers={"X-Trace": "t1"}))
    if how == "get":
        return client.get_task(request={"name": task.name, "response_view": view})
    (listed,) = client.list_tasks(request={"parent": queue, "response_view": view})
    return listed


@pytest.mark.parametrize("how", ["create", "get", "list"])
@pytest.mark.parametrize(("view", "body"), [(BASIC, b""), (FULL, b"payload")])
def test_the_body_is_shown_only_in_the_full_view(client, make_queue, target, how, view, body):
    queue = make_queue(paused=True)
    task = _read_with_view(client, queue, target.url, how, view)
    assert task.view == view
    assert task.http_request.body == body
    assert task.http_request.url == target.url
    assert task.http_request.headers["User-Agent"] == "Google-Cloud-Tasks"


def test_list_tasks_pages_through_every_task(client, make_queue, target):
    queue = make_queue(paused=True)
    created = {client.create_task(parent=queue, task=http_task(target.url)).name for _ in range(5)}
    pages = list(client.list_tasks(request={"parent": queue, "page_size": 2}).pages)
    assert [len(p.tasks) for p in pages] == [2, 2, 1]
    assert {t.name for p in pages for t in p.tasks} == created


def test_a_waiting_task_shows_its_output_fields(client, make_queue, target):
    queue = make_queue(paused=True)
    task = client.create_task(parent=queue, task=http_task(target.url, dispatch_deadline=dt.timedelta(seconds=20)))
    assert task.create_time and task.schedule_time
    assert task.dispatch_deadline.total_seconds() == 20
    assert (task.dispatch_count, task.response_count) == (0, 0)
    assert task.http_request.http_method == tasks_v2.HttpMethod.POST
    default = client.create_task(parent=queue, task=http_task(target.url))
    assert default.dispatch_deadline.total_seconds() == 600


def _queue_in(queue: str, queue_id: str) -> str:
    return queue.rsplit("/queues/", 1)[0] + f"/queues/{queue_id}"


BAD_CREATES = {
    "malformed queue name": (
        exceptions.InvalidArgument,
        lambda q, url: ("projects/p/queues/x", http_task(url)),
    ),
    "unknown queue": (exceptions.NotFound, lambda q, url: (_queue_in(q, "no-such-queue"), http_task(url))),
    "task named in another queue": (
        exceptions.InvalidArgument,
        lambda q, url: (q, http_task(url, name=_queue_in(q, "other") + "/tasks/t1")),
    ),
    "bad task id": (
        exceptions.InvalidArgument,
        lambda q, url: (q, http_task(url, name=q + "/tasks/not%20ok")),
    ),
    "over 100 KB": (exceptions.InvalidArgument, lambda q, url: (q, http_task(url, body=b"x" * 102_401))),
    "app engine target": (
        exceptions.MethodNotImplemented,
        lambda q, url: (q, {"app_engine_http_request": {"relative_uri": "/x"}}),
    ),
    "url without scheme": (exceptions.InvalidArgument, lambda q, url: (q, http_task("example.com/x"))),
    "body on GET": (
        exceptions.InvalidArgument,
        lambda q, url: (q, http_task(url, http_method=tasks_v2.HttpMethod.GET, body=b"x")),
    ),
    "deadline under 15 s": (
        exceptions.InvalidArgument,
        lambda q, url: (q, http_task(url, dispatch_deadline=dt.timedelta(seconds=5))),
    ),
    "schedule over 30 days ahead": (
        exceptions.InvalidArgument,
        lambda q, url: (q, http_task(url, schedule_time=_in(31 * 86400))),
    ),
    "oidc token without account": (
        exceptions.InvalidArgument,
        lambda q, url: (q, http_task(url, oidc_token={"audience": "x"})),
    ),
}


@pytest.mark.parametrize("case", BAD_CREATES)
def test_a_bad_create_task_gets_the_real_error_code(client, make_queue, target, case):
    error, build = BAD_CREATES[case]
    queue = make_queue(paused=True)
    parent, task = build(queue, target.url)
    with pytest.raises(error):
        client.create_task(parent=parent, task=task)
    assert list(client.list_tasks(parent=queue)) == []


BAD_CALLS = {
    "get unknown task": (exceptions.NotFound, lambda c, q: c.get_task(name=q + "/tasks/nope")),
    "delete unknown task": (exceptions.NotFound, lambda c, q: c.delete_task(name=q + "/tasks/nope")),
    "run unknown task": (exceptions.NotFound, lambda c, q: c.run_task(name=q + "/tasks/nope")),
    "get unknown queue": (exceptions.NotFound, lambda c, q: c.get_queue(name=_queue_in(q, "nope"))),
    "malformed task name": (exceptions.InvalidArgument, lambda c, q: c.get_task(name=q + "/task/x")),
    "rate over 500": (
        exceptions.InvalidArgument,
        lambda c, q: c.create_queue(
            parent=f"projects/p/locations/{LOCATION}",
            queue={
                "name": f"projects/p/locations/{LOCATION}/queues/fast",
                "rate_limits": {"max_dispatches_per_second": 501},
            },
        ),
    ),
    "min backoff over max backoff": (
        exceptions.InvalidArgument,
        lambda c, q: c.create_queue(
            parent=f"projects/p/locations/{LOCATION}",
            queue={
                "name": f"projects/p/locations/{LOCATION}/queues/odd",
                "retry_config": {
                    "min_backoff": dt.timedelta(seconds=9),
                    "max_backoff": dt.timedelta(seconds=2),
                },
            },
        ),
    ),
    "queue id with underscore": (
        exceptions.InvalidArgument,
        lambda c, q: c.create_queue(
            parent=f"projects/p/locations/{LOCATION}",
            queue={"name": f"projects/p/locations/{LOCATION}/queues/a_b"},
        ),
    ),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_a_bad_call_gets_the_real_error_code(client, make_queue, case):
    error, call = BAD_CALLS[case]
    with pytest.raises(error):
        call(client, make_queue())
