"""The REST face's JSON reader and writer on their own (no emulator): proto3 JSON as the front end reads it."""

from __future__ import annotations

import datetime as dt

import pytest
from google.cloud.tasks_v2.types import cloudtasks, queue, task

from jobrelay.local.cloudtasks import jsonpb

CreateTask = cloudtasks.CreateTaskRequest.pb()
UpdateQueue = cloudtasks.UpdateQueueRequest.pb()
ListTasks = cloudtasks.ListTasksRequest.pb()


def _task(**fields: object):
    request = CreateTask()
    jsonpb.merge({"task": {"httpRequest": {"url": "http://x"}, **fields}}, request)
    return request.task


@pytest.mark.parametrize(
    ("text", "seconds", "nanos"),
    [("10s", 10, 0), ("0.100s", 0, 100_000_000), ("1.5s", 1, 500_000_000), ("-2.000000001s", -2, -1), ("0s", 0, 0)],
)
def test_durations_read_like_the_front_end(text, seconds, nanos):
    deadline = _task(dispatchDeadline=text).dispatch_deadline
    assert (deadline.seconds, deadline.nanos) == (seconds, nanos)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10", "Illegal duration format; duration must end with 's'"),
        ("x1s", "Invalid duration format, failed to parse seconds"),
        ("1.1234567890s", "Invalid duration format, failed to parse nano seconds"),
        ("315576000001s", "Duration value exceeds limits"),
        ("9" * 5000 + "s", "Duration value exceeds limits"),
    ],
)
def test_bad_durations_say_why(text, reason):
    with pytest.raises(jsonpb.BadRequest) as caught:
        _task(dispatchDeadline=text)
    assert caught.value.message.endswith(f"Field 'dispatchDeadline', {reason}")


@pytest.mark.parametrize(
    "text", ["2030-01-02T03:04:05.123456Z", "2030-01-02T05:04:05.123456+02:00", "2030-01-01T22:04:05.123456-05:00"]
)
def test_timestamps_with_any_offset_are_the_same_instant(text):
    when = _task(scheduleTime=text).schedule_time
    assert when.ToDatetime(tzinfo=dt.UTC) == dt.datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)


def test_bytes_accept_both_base64_alphabets_with_or_without_padding():
    for text in ("+/8=", "-_8", "-_8="):
        assert _task(httpRequest={"url": "http://x", "body": text}).http_request.body == b"\xfb\xff"


def test_numbers_and_enums_may_come_as_strings_or_numbers():
    request = ListTasks()
    jsonpb.bind_query([("pageSize", "25"), ("responseView", "2")], request)
    assert (request.page_size, request.response_view) == (25, task.Task.View.FULL)
    jsonpb.merge({"responseView": "BASIC", "pageSize": 3.0}, request)
    assert (request.page_size, request.response_view) == (3, task.Task.View.BASIC)


@pytest.mark.parametrize("value", [2**31, 1.5, True])
def test_an_int32_out_of_range_or_not_whole_is_refused(value):
    with pytest.raises(jsonpb.BadRequest, match=r"Invalid value at 'page_size' \(TYPE_INT32\)"):
        jsonpb.merge({"pageSize": value}, ListTasks())


def test_an_update_mask_in_the_query_becomes_snake_case_paths():
    request = UpdateQueue()
    jsonpb.bind_query([("updateMask", "rateLimits.maxDispatchesPerSecond,retryConfig")], request)
    assert list(request.update_mask.paths) == ["rate_limits.max_dispatches_per_second", "retry_config"]


def test_an_empty_message_is_still_present():
    request = UpdateQueue()
    jsonpb.merge({"queue": {"retryConfig": {}}}, request)
    assert request.queue.HasField("retry_config")


def test_broken_json_points_at_the_spot():
    with pytest.raises(jsonpb.BadRequest) as caught:
        jsonpb.loads(b'{"a": 1 "b": 2}')
    first, snippet, caret = caught.value.message.split("\n")
    assert first == "Invalid JSON payload received. Expected , or } after key:value pair."
    assert snippet[caret.index("^")] == '"'


@pytest.mark.parametrize("raw", [b"NaN", b'{"a": Infinity}', b'{"a": [1 2]}'])
def test_non_json_constants_and_bad_arrays_are_refused(raw):
    with pytest.raises(jsonpb.BadRequest, match="Invalid JSON payload received"):
        jsonpb.loads(raw)


def test_writing_is_proto3_json_with_integral_doubles_as_integers():
    pb = queue.Queue.pb()(name="projects/p/locations/l/queues/q", state=queue.Queue.State.PAUSED)
    pb.rate_limits.max_dispatches_per_second = 500.0
    pb.retry_config.min_backoff.FromMilliseconds(100)
    assert jsonpb.to_json(pb) == {
        "name": "projects/p/locations/l/queues/q",
        "rateLimits": {"maxDispatchesPerSecond": 500},
        "retryConfig": {"minBackoff": "0.100s"},
        "state": "PAUSED",
    }
    assert jsonpb.to_json(pb, int_enums=True)["state"] == 2
