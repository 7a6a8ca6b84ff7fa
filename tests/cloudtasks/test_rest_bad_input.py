"""Bad input over REST: the real API's codes and words, Google's JSON error shape, never a 500, nothing made.

Each case is sent to a paused queue; the queues of the project and the tasks of that queue are
counted (over gRPC) before and after.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from jobrelay.local.cloudtasks.rest import MAX_REQUEST_BYTES

from .helpers import LOCATION, PROJECTS

PARENT = f"projects/{PROJECTS[1]}/locations/{LOCATION}"
QUEUE = f"{PARENT}/queues/bad-input"
URL = "http://127.0.0.1:9/never"


def _task(**fields: object) -> dict:
    return {"task": {"httpRequest": {"url": URL}, **fields}}


def _http(**fields: object) -> dict:
    return {"task": {"httpRequest": {"url": URL, **fields}}}


TASKS = f"/v2/{QUEUE}/tasks"
# (id, verb, path, body (dict, or bytes sent as is), query, HTTP status, status, words in the message)
CASES = [
    ("broken-json", "POST", TASKS, b'{"task": {"httpRequest": ', {}, 400, "INVALID_ARGUMENT",
     "Invalid JSON payload received. Unexpected end of string."),
    ("missing-comma", "POST", TASKS, b'{"task": {} "x": 1}', {}, 400, "INVALID_ARGUMENT",
     "Invalid JSON payload received. Expected , or } after key:value pair."),
    ("not-utf8", "POST", TASKS, b'{"task": "\xff"}', {}, 400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
    ("nested-too-deep", "POST", TASKS, b"[" * 100_000, {}, 400, "INVALID_ARGUMENT",
     "Invalid JSON payload received. Message too deep. Max recursion depth reached."),
    ("number-too-long", "POST", TASKS, b'{"responseView": ' + b"1" * 5000 + b"}", {}, 400, "INVALID_ARGUMENT",
     "Invalid JSON payload received. Number is too long."),
    ("root-array", "POST", TASKS, b"[]", {}, 400, "INVALID_ARGUMENT",
     'Invalid JSON payload received. Unknown name "": Root element must be a message.'),
    ("unknown-top", "POST", TASKS, {"tusk": {}}, {}, 400, "INVALID_ARGUMENT",
     'Invalid JSON payload received. Unknown name "tusk": Cannot find field.'),
    ("unknown-nested", "POST", TASKS, _http(colourCode=1), {}, 400, "INVALID_ARGUMENT",
     "Invalid JSON payload received. Unknown name \"colour_code\" at 'task.http_request': Cannot find field."),
    ("string-gets-number", "POST", TASKS, {"task": {"httpRequest": {"url": 5}}}, {}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'task.http_request.url' (TYPE_STRING), 5"),
    ("scalar-gets-object", "POST", TASKS, {"task": {"httpRequest": {"url": {}}}}, {}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'task.http_request' (url), Starting an object on a scalar field"),
    ("message-gets-list", "POST", TASKS, {"task": []}, {}, 400, "INVALID_ARGUMENT",
     'Invalid JSON payload received. Unknown name "task": Proto field is not repeating, cannot start list.'),
    ("message-gets-string", "POST", TASKS, {"task": "t"}, {}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'task' (type.googleapis.com/google.cloud.tasks.v2.Task), \"t\""),
    ("duration-without-s", "POST", TASKS, _task(dispatchDeadline="30"), {}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'task.dispatch_deadline' (type.googleapis.com/google.protobuf.Duration), "
     "Field 'dispatchDeadline', Illegal duration format; duration must end with 's'"),
    ("duration-as-number", "POST", TASKS, _task(dispatchDeadline=30), {}, 400, "INVALID_ARGUMENT",
     "Field 'dispatchDeadline', Invalid data type for duration, value is 30"),
    ("timestamp-without-zone", "POST", TASKS, _task(scheduleTime="2030-01-01T00:00:00"), {}, 400,
     "INVALID_ARGUMENT", "Illegal timestamp format; timestamps must end with 'Z' or have a valid timezone offset."),
    ("timestamp-garbage", "POST", TASKS, _task(scheduleTime="tomorrowZ"), {}, 400, "INVALID_ARGUMENT",
     "Field 'scheduleTime', Invalid time format: tomorrowZ"),
    ("bad-base64", "POST", TASKS, _http(body="not base64!"), {}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'task.http_request.body' (TYPE_BYTES), Base64 decoding failed for \"not base64!\""),
    ("bad-enum", "POST", TASKS, _http(httpMethod="FETCH"), {}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'task.http_request.http_method' (TYPE_ENUM), \"FETCH\""),
    ("header-not-string", "POST", TASKS, _http(headers={"X-A": 1}), {}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'task.http_request.headers[0].value' (TYPE_STRING), 1"),
    ("two-targets", "POST", TASKS, {"task": {"httpRequest": {"url": URL}, "appEngineHttpRequest": {}}}, {}, 400,
     "INVALID_ARGUMENT", "oneof field 'message_type' is already set. Cannot set 'appEngineHttpRequest'"),
    ("several-at-once", "POST", TASKS, {"task": {"httpRequest": {"url": 1}, "nope": 2}, "responseView": "X"}, {},
     400, "INVALID_ARGUMENT", "(TYPE_STRING), 1\nInvalid JSON payload received. Unknown name \"nope\" at 'task'"),
    ("no-target", "POST", TASKS, {"task": {}}, {}, 400, "INVALID_ARGUMENT", "Task.http_request is required."),
    ("url-without-scheme", "POST", TASKS, _http(url="ftp://x"), {}, 400, "INVALID_ARGUMENT",
     "HttpTarget.url must start with 'http://' or 'https://'."),
    ("body-on-get", "POST", TASKS, _http(httpMethod="GET", body="eA=="), {}, 400, "INVALID_ARGUMENT",
     "HttpRequest.body is only allowed for POST, PUT and PATCH"),
    ("deadline-too-short", "POST", TASKS, _task(dispatchDeadline="5s"), {}, 400, "INVALID_ARGUMENT",
     "Task.dispatchDeadline must be between 15 seconds and 30 minutes."),
    ("task-too-large", "POST", TASKS, _http(body=base64.b64encode(b"x" * (100 * 1024 + 1)).decode()), {}, 400,
     "INVALID_ARGUMENT", "Task size too large"),
    ("bad-task-id", "POST", TASKS, _task(name=f"{QUEUE}/tasks/no spaces"), {}, 400, "INVALID_ARGUMENT",
     "can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), or underscores (_)"),
    ("task-of-another-queue", "POST", TASKS, _task(name=f"{PARENT}/queues/other/tasks/t1"), {}, 400,
     "INVALID_ARGUMENT", "must be the same as the queue name in the named task"),
    ("bad-queue-in-path", "POST", f"/v2/{PARENT}/queues/bad_queue!/tasks", _task(), {}, 400, "INVALID_ARGUMENT",
     'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>".'),
    ("encoded-slash-in-queue", "POST", f"/v2/{PARENT}/queues/a%2Fb/tasks", _task(), {}, 400, "INVALID_ARGUMENT",
     "Queue name must be formatted"),
    ("missing-queue", "POST", f"/v2/{PARENT}/queues/no-such-queue/tasks", _task(), {}, 404, "NOT_FOUND",
     "Queue does not exist."),
    ("query-on-body-star", "POST", TASKS, _task(), {"responseView": "FULL"}, 400, "INVALID_ARGUMENT",
     "Unknown name \"responseView\": Cannot bind query parameter. Field 'responseView' could not be found"),
    ("unknown-query", "GET", TASKS, None, {"color": "red"}, 400, "INVALID_ARGUMENT",
     "Unknown name \"color\": Cannot bind query parameter."),
    ("page-size-text", "GET", TASKS, None, {"pageSize": "ten"}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'page_size' (TYPE_INT32), \"ten\""),
    ("page-size-huge", "GET", TASKS, None, {"pageSize": "9" * 5000}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'page_size' (TYPE_INT32), \"999"),
    ("page-size-negative", "GET", TASKS, None, {"pageSize": "-1"}, 400, "INVALID_ARGUMENT",
     "page_size cannot be negative."),
    ("view-unknown", "GET", TASKS, None, {"responseView": "HUGE"}, 400, "INVALID_ARGUMENT",
     "Invalid value at 'response_view' (TYPE_ENUM), \"HUGE\""),
    ("queue-outside-parent", "POST", f"/v2/{PARENT}/queues", {"name": f"projects/x/locations/{LOCATION}/queues/q"},
     {}, 400, "INVALID_ARGUMENT", "must be inside the parent"),
    ("queue-rate-too-high", "POST", f"/v2/{PARENT}/queues",
     {"name": f"{PARENT}/queues/too-fast", "rateLimits": {"maxDispatchesPerSecond": 501}}, {}, 400,
     "INVALID_ARGUMENT", "RateLimits.maxDispatchesPerSecond must be less than or equal to 500."),
    ("queue-rate-nan", "POST", f"/v2/{PARENT}/queues",
     {"name": f"{PARENT}/queues/nan-rate", "rateLimits": {"maxDispatchesPerSecond": "NaN"}}, {}, 400,
     "INVALID_ARGUMENT", "RateLimits.maxDispatchesPerSecond must be a number."),
    ("queue-exists", "POST", f"/v2/{PARENT}/queues", {"name": QUEUE}, {}, 409, "ALREADY_EXISTS",
     "Queue already exists"),
    ("update-mask-unknown", "PATCH", f"/v2/{PARENT}/queues/made-by-patch", {"retryConfig": {"maxAttempts": 2}},
     {"updateMask": "colour"}, 400, "INVALID_ARGUMENT", "Invalid update_mask path(s) for Queue: colour."),
    ("unknown-route", "GET", f"/v2/{PARENT}/widgets", None, {}, 404, "NOT_FOUND", "was not found on this server"),
    ("wrong-verb", "PUT", f"/v2/{QUEUE}", {}, {}, 404, "NOT_FOUND", "was not found on this server"),
    ("no-version", "GET", f"/{QUEUE}", None, {}, 404, "NOT_FOUND", "was not found on this server"),
    ("iam-not-emulated", "POST", f"/v2/{QUEUE}:getIamPolicy", {}, {}, 501, "UNIMPLEMENTED", "is not emulated"),
    ("app-engine-not-emulated", "POST", TASKS, {"task": {"appEngineHttpRequest": {"relativeUri": "/x"}}}, {}, 501,
     "UNIMPLEMENTED", "App Engine targets are not emulated"),
]  # fmt: skip


@pytest.fixture(scope="module")
def bad_input_queue(client):
    client.create_queue(parent=PARENT, queue={"name": QUEUE})
    client.pause_queue(name=QUEUE)
    yield QUEUE
    client.delete_queue(name=QUEUE)


def _counts(client) -> tuple[int, int]:
    return len(list(client.list_queues(parent=PARENT))), len(list(client.list_tasks(parent=QUEUE)))


@pytest.mark.parametrize(
    ("verb", "path", "body", "query", "http", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_the_real_code_and_changes_nothing(
    rest, client, bad_input_queue, verb, path, body, query, http, status, words
):
    before = _counts(client)
    raw = body if isinstance(body, bytes) else None
    answer = rest.call(verb, path, None if raw is not None else body, raw=raw, **query)
    assert answer.status_code == http, answer.text
    assert answer.headers["Content-Type"] == "application/json; charset=UTF-8"
    error = answer.json()["error"]
    assert (error["code"], error["status"]) == (http, status)
    assert words in error["message"]
    assert _counts(client) == before


def test_a_json_error_names_each_field_in_its_details(rest, bad_input_queue):
    answer = rest.call("POST", TASKS, {"task": {"httpRequest": {"url": 1}, "nope": 2}})
    (details,) = answer.json()["error"]["details"]
    assert details["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert [v["field"] for v in details["fieldViolations"]] == ["task.http_request.url", "task"]


def test_a_request_over_the_front_ends_limit_is_refused_unread(rest, client, bad_input_queue):
    before = _counts(client)
    oversized = json.dumps(_http(body="A" * (MAX_REQUEST_BYTES + 16))).encode()
    answer = rest.session.post(rest.base + TASKS, data=oversized, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": 400,
        "message": "Request payload size exceeds the limit: 10485760 bytes.",
        "status": "INVALID_ARGUMENT",
    }
    assert _counts(client) == before


def test_an_unparsable_content_length_is_a_400(emulator, client, bad_input_queue):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", emulator.http_port, timeout=5)
    conn.putrequest("POST", TASKS)
    conn.putheader("Content-Length", "lots")
    conn.endheaders()
    answer = conn.getresponse()
    assert answer.status == 400
    assert json.loads(answer.read())["error"]["status"] == "INVALID_ARGUMENT"
    conn.close()


def test_null_fields_are_unset_not_errors(rest, client, bad_input_queue):
    name = f"{QUEUE}/tasks/nulls-{uuid.uuid4().hex[:6]}"
    task = {"name": name, "httpRequest": {"url": URL, "body": None}, "scheduleTime": None, "dispatchDeadline": None}
    made = rest.ok("POST", TASKS, {"task": task, "responseView": None})
    assert made["name"] == name and made["dispatchDeadline"] == "600s"
    client.delete_task(name=name)
