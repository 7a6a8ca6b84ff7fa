"""The official Node client, `@google-cloud/tasks`, unchanged: over gRPC and with `fallback: true` (REST).

node/check.cjs walks queues and tasks through the client and prints what it saw; both transports must
see the same resources, the same refusals (gRPC status names; for REST the HTTP code and the status
of Google's JSON error), and dispatch the same request. node/node_modules comes from `make test-deps`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import PROJECTS

NODE_DIR = Path(__file__).with_name("node")
HTTP_FOR = {"ALREADY_EXISTS": 409, "NOT_FOUND": 404, "INVALID_ARGUMENT": 400}


def _walk(mode: str, port: int, target_url: str) -> dict:
    node = shutil.which("node")
    assert node, "Node.js must be on PATH"
    assert (NODE_DIR / "node_modules" / "@google-cloud" / "tasks").is_dir(), (
        "the Node client is not installed: run `make test-deps` (tests/cloudtasks/node/install.sh)"
    )
    done = subprocess.run(
        [node, "check.cjs", mode, str(port), PROJECTS[0], target_url],
        cwd=NODE_DIR,
        env={**os.environ, "METADATA_SERVER_DETECTION": "none"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("mode", ["grpc", "rest"])
def test_the_node_client_works_unchanged(emulator, target, mode):
    port = emulator.grpc_port if mode == "grpc" else emulator.http_port
    seen = _walk(mode, port, target.url + "/node")
    queue = seen["queue"]
    assert seen["created"] == {"name": queue, "state": "RUNNING", "rate": 5, "attempts": 3, "minBackoff": 2}
    assert seen["listedQueue"] is True
    assert (seen["paused"], seen["resumed"], seen["purged"]) == ("PAUSED", "RUNNING", True)
    assert seen["task"] == {
        "name": f"{queue}/tasks/node-1",
        "view": "FULL",
        "body": '{"from":"node"}',
        "method": "POST",
        "deadline": 30,
        "scheduled": True,
    }
    assert seen["fetchedBody"] == '{"from":"node"}' and seen["basicHasBody"] is False
    assert seen["listedTasks"] == [f"{queue}/tasks/node-1"]
    assert seen["ranDispatchCount"] == 1
    assert seen["generatedId"].isdigit()
    refusals = {
        "duplicateQueue": "ALREADY_EXISTS",
        "duplicateTask": "ALREADY_EXISTS",
        "deletedGet": "NOT_FOUND",
        "missingQueue": "NOT_FOUND",
        "badName": "INVALID_ARGUMENT",
        "badDeadline": "INVALID_ARGUMENT",
        "deletedQueue": "NOT_FOUND",
    }
    for key, status in refusals.items():
        assert seen[key]["status"] == status, (key, seen[key])
        if mode == "rest":
            assert seen[key]["http"] == seen[key]["code"] == HTTP_FOR[status], (key, seen[key])
    assert seen["deletedGet"]["message"].startswith("The task no longer exists")
    (request,) = target.wait_for(1)  # runTask on the paused queue
    assert (request.method, request.path, request.body) == ("POST", "/node", b'{"from":"node"}')
    assert request.header("X-CloudTasks-TaskName") == "node-1"
