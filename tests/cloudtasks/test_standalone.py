"""The emulator on its own, as a team without the rest of jobrelay runs it, driven by firebase-admin.

`jobrelay-cloudtasks-emulator` (the console script) with queues from a YAML file, queues created on
demand, and `--functions-url` pointing at a local HTTP target that stands in for the functions
emulator. firebase-admin's `functions.task_queue()` talks to it through CLOUD_TASKS_EMULATOR_HOST
exactly as it would talk to the Firebase emulator suite.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from pathlib import Path

import firebase_admin
import grpc
import pytest
import requests
from firebase_admin import exceptions as fb_errors
from firebase_admin import functions
from google.api_core.exceptions import NotFound
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from jobrelay.local import procs

from .helpers import Target, serve_target

PROJECT = "fb-proj"
LOCATION = "us-central1"
SCRIPT = Path(sys.executable).with_name("jobrelay-cloudtasks-emulator")
QUEUES_YAML = f"""
project: {PROJECT}
queues:
  - name: hello
    retryConfig: {{maxAttempts: 2, minBackoff: 1s, maxBackoff: 5s}}
    rateLimits: {{maxDispatchesPerSecond: 20}}
  - name: projects/other-proj/locations/europe-west1/queues/reports
"""


def _start(tmp: Path, *args: str) -> tuple[procs.Proc, int, int]:
    grpc_port, http_port = procs.free_port(), procs.free_port()
    argv = [str(SCRIPT), "--host-port", f"127.0.0.1:{grpc_port}", "--http-port", str(http_port),
            "--signing-key", str(tmp / "key.pem"), *args]  # fmt: skip
    proc = procs.start("cloudtasks-standalone", argv, env={"PYTHONUNBUFFERED": "1"}, log_path=tmp / "emulator.log")
    try:
        procs.wait_until(
            lambda: requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).ok,
            timeout=30,
            what="jobrelay-cloudtasks-emulator",
            proc=proc,
        )
    except BaseException:
        proc.stop()
        raise
    return proc, grpc_port, http_port


@pytest.fixture(scope="module")
def functions_target():
    target = Target()
    server = serve_target(target)
    yield target
    target.released.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, functions_target):
    tmp = tmp_path_factory.mktemp("standalone")
    (tmp / "queues.yaml").write_text(QUEUES_YAML)
    proc, grpc_port, http_port = _start(
        tmp, "--queues", str(tmp / "queues.yaml"), "--create-queues-on-demand",
        "--functions-url", f"{functions_target.url}/functions",
    )  # fmt: skip
    try:
        yield grpc_port, http_port
    finally:
        assert proc.stop() == 0


@pytest.fixture
def task_queue(standalone, monkeypatch):
    """firebase-admin's task_queue(name) in emulator mode, on a fresh app."""
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", f"127.0.0.1:{standalone[1]}")
    app = firebase_admin.initialize_app(options={"projectId": PROJECT}, name=f"tasks-{uuid.uuid4().hex[:8]}")
    yield lambda name: functions.task_queue(name, app=app)
    firebase_admin.delete_app(app)


@pytest.fixture
def grpc_client(standalone):
    channel = grpc.insecure_channel(f"127.0.0.1:{standalone[0]}")
    yield tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    channel.close()


def test_the_console_script_creates_the_queues_of_the_yaml_file(standalone, grpc_client):
    hello = grpc_client.get_queue(name=f"projects/{PROJECT}/locations/{LOCATION}/queues/hello")
    assert (hello.retry_config.max_attempts, hello.rate_limits.max_dispatches_per_second) == (2, 20)
    assert hello.retry_config.min_backoff.total_seconds() == 1
    reports = grpc_client.get_queue(name="projects/other-proj/locations/europe-west1/queues/reports")
    assert reports.retry_config.max_attempts == 100  # the service's default
    over_rest = requests.get(f"http://127.0.0.1:{standalone[1]}/v2/{hello.name}", timeout=5).json()
    assert over_rest["retryConfig"]["minBackoff"] == "1s"


def test_firebase_admin_enqueue_reaches_the_function(task_queue, functions_target, grpc_client):
    functions_target.requests.clear()
    task_id = task_queue("hello").enqueue({"order": 42})
    assert task_id.isdigit()
    (seen,) = functions_target.wait_for(1)
    assert seen.path == f"/functions/{PROJECT}/{LOCATION}/hello"
    assert json.loads(seen.body) == {"order": 42}
    assert seen.header("Content-Type") == "application/json"
    assert seen.header("X-CloudTasks-QueueName") == "hello"
    assert seen.header("X-CloudTasks-TaskName") == task_id
    assert (seen.header("Authorization") or "").startswith("Bearer ")  # OIDC for emulated-service-acct@email.com


def test_firebase_admin_named_task_delete_and_duplicate(task_queue, grpc_client):
    queue = task_queue("hello")
    options = functions.TaskOptions(task_id=f"order-{uuid.uuid4().hex[:8]}", schedule_delay_seconds=3600,
                                    dispatch_deadline_seconds=60, headers={"X-Tenant": "t1"})  # fmt: skip
    assert queue.enqueue({"order": 7}, options) == options.task_id
    name = f"projects/{PROJECT}/locations/{LOCATION}/queues/hello/tasks/{options.task_id}"
    stored = grpc_client.get_task(request={"name": name, "response_view": tasks_v2.Task.View.FULL})
    assert stored.dispatch_deadline.total_seconds() == 60
    assert stored.http_request.headers["X-Tenant"] == "t1"
    assert base64.b64encode(stored.http_request.body)  # the payload, as firebase-admin encoded it
    with pytest.raises(fb_errors.AlreadyExistsError):
        queue.enqueue({"order": 7}, options)
    queue.delete(options.task_id)
    with pytest.raises(NotFound):
        grpc_client.get_task(name=name)
    with pytest.raises(fb_errors.NotFoundError):
        queue.delete(options.task_id)


def test_a_queue_is_created_on_demand_by_its_first_task(task_queue, grpc_client, functions_target):
    function = f"fn-{uuid.uuid4().hex[:6]}"
    name = f"projects/{PROJECT}/locations/{LOCATION}/queues/{function}"
    with pytest.raises(NotFound):
        grpc_client.get_queue(name=name)
    task_queue(function).enqueue({"hi": True})
    assert grpc_client.get_queue(name=name).rate_limits.max_dispatches_per_second == 500


def test_an_invalid_task_creates_no_queue_on_demand(standalone, grpc_client):
    queue = f"projects/{PROJECT}/locations/{LOCATION}/queues/never-made"
    answer = requests.post(
        f"http://127.0.0.1:{standalone[1]}/v2/{queue}/tasks",
        json={"task": {"httpRequest": {"url": "ftp://nowhere"}}},
        timeout=5,
    )
    assert answer.status_code == 400
    with pytest.raises(NotFound):
        grpc_client.get_queue(name=queue)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("queues: {}", "expected a mapping with a 'queues' list"),
        ("queues:\n  - name: q1\n", "'q1' needs a project"),
        (f"project: {PROJECT}\nqueues:\n  - name: bad_queue\n", "Queue name must be formatted"),
        (f"project: {PROJECT}\nqueues:\n  - name: q\n    rateLimits: {{maxDispatchesPerSecond: 900}}\n",
         "must be less than or equal to 500"),
        (f"project: {PROJECT}\nqueues:\n  - name: q\n    retryConfig: {{minBackof: 1s}}\n",
         "Unknown name \"min_backof\" at 'queue.retry_config': Cannot find field."),
    ],
)  # fmt: skip
def test_a_bad_queue_file_stops_the_start_with_the_reason(tmp_path, content, words):
    path = tmp_path / "queues.yaml"
    path.write_text(content)
    grpc_port, http_port = procs.free_port(), procs.free_port()
    argv = [str(SCRIPT), "--host-port", f"127.0.0.1:{grpc_port}", "--http-port", str(http_port),
            "--queues", str(path)]  # fmt: skip
    proc = procs.start("cloudtasks-bad-file", argv, log_path=tmp_path / "emulator.log")
    try:
        assert proc.popen.wait(timeout=30) == 2
    finally:
        proc.stop()
    log = (tmp_path / "emulator.log").read_text()
    assert str(path) in log and words in log
