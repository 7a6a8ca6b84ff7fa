"""`gcloud tasks` unchanged against the emulator's REST face (CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDTASKS).

One walk through the commands an operator types, in order (each gcloud start costs about a second),
checked against what the gRPC client and the HTTP target see.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from google.cloud import tasks_v2

from .helpers import LOCATION, PROJECTS, gcloud_tasks

PROJECT = PROJECTS[2]


@pytest.fixture
def gcloud(emulator, tmp_path):
    def run(*args: str, token_file: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = gcloud_tasks(emulator.rest_url, PROJECT, tmp_path / "gcloud", *args, token_file=token_file)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    return run


def test_gcloud_tasks_commands_work_unchanged(gcloud, client, target, tmp_path):
    queue_id = f"gcloud-{uuid.uuid4().hex[:8]}"
    queue = f"projects/{PROJECT}/locations/{LOCATION}/queues/{queue_id}"
    client.create_queue(
        parent=queue.rsplit("/queues/", 1)[0], queue={"name": queue, "retry_config": {"max_attempts": 3}}
    )

    listed = json.loads(gcloud("queues", "list").stdout)
    assert queue in [q["name"] for q in listed]
    described = json.loads(gcloud("queues", "describe", queue_id).stdout)
    assert described["retryConfig"]["maxAttempts"] == 3 and described["state"] == "RUNNING"

    gcloud("queues", "pause", queue_id)
    assert client.get_queue(name=queue).state == tasks_v2.Queue.State.PAUSED

    created = json.loads(
        gcloud(
            "create-http-task", "t1", f"--queue={queue_id}", f"--url={target.url}/from-gcloud", "--method=POST",
            '--body-content={"x": 1}', "--header=Content-Type:application/json",
        ).stdout
    )  # fmt: skip
    assert created["name"] == f"{queue}/tasks/t1"
    assert client.get_task(name=f"{queue}/tasks/t1").http_request.url == f"{target.url}/from-gcloud"

    assert [t["name"] for t in json.loads(gcloud("list", f"--queue={queue_id}").stdout)] == [f"{queue}/tasks/t1"]
    full = json.loads(gcloud("describe", "t1", f"--queue={queue_id}", "--response-view=full").stdout)
    assert base64.b64decode(full["httpRequest"]["body"]) == b'{"x": 1}'

    ran = json.loads(gcloud("run", "t1", f"--queue={queue_id}").stdout)
    assert ran["dispatchCount"] == 1
    (seen,) = target.wait_for(1)
    assert (seen.method, seen.path, seen.body) == ("POST", "/from-gcloud", b'{"x": 1}')
    assert seen.header("X-CloudTasks-QueueName") == queue_id

    client.create_task(parent=queue, task={"name": f"{queue}/tasks/t2", "http_request": {"url": target.url}})
    gcloud("delete", "t2", f"--queue={queue_id}")
    gcloud("queues", "purge", queue_id)
    assert list(client.list_tasks(parent=queue)) == []
    assert client.get_queue(name=queue).purge_time

    gcloud("queues", "resume", queue_id)
    assert client.get_queue(name=queue).state == tasks_v2.Queue.State.RUNNING

    missing = gcloud("queues", "describe", "no-such-queue", ok=False)
    assert missing.returncode != 0 and "NOT_FOUND: Queue does not exist." in missing.stderr

    token = tmp_path / "token"
    token.write_text("another-local-token\n")
    gcloud("queues", "delete", queue_id, token_file=token)
    assert queue not in [q.name for q in client.list_queues(parent=queue.rsplit("/queues/", 1)[0])]
