"""Test helpers: the emulator launcher wrapper and the recording HTTP target."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import requests
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from jobrelay.local.cloudtasks import launch
from jobrelay.local.procs import Proc, free_port

REPO = Path(__file__).resolve().parents[2]
PROJECTS = ("proj-a", "proj-b", "proj-c")
LOCATION = "us-central1"


@dataclass(frozen=True)
class Emulator:
    proc: Proc
    grpc_port: int
    http_port: int
    key_file: Path
    log_path: Path

    @property
    def certs_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/certs"

    @property
    def rest_url(self) -> str:
        """The REST face: what CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDTASKS and CLOUD_TASKS_EMULATOR_HOST name."""
        return f"http://127.0.0.1:{self.http_port}"

    def client(self) -> tasks_v2.CloudTasksClient:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


def start_emulator(tmp: Path, **options: Any) -> Emulator:
    grpc_port, http_port = free_port(), free_port()
    key_file, log_path = tmp / "oidc-key.pem", tmp / "cloudtasks.log"
    proc = launch(
        grpc_port,
        http_port,
        config=REPO / "infra" / "classes.yaml",
        projects=PROJECTS,
        location=LOCATION,
        key_file=key_file,
        log_path=log_path,
        **options,
    )
    return Emulator(proc, grpc_port, http_port, key_file, log_path)


@dataclass(frozen=True)
class Rest:
    """Plain HTTP calls to the REST face: `rest.call("GET", "/v2/projects/p/locations/l/queues")`."""

    base: str
    session: requests.Session

    def call(
        self, verb: str, path: str, body: Any = None, *, raw: bytes | None = None, **params: Any
    ) -> requests.Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"} if data is not None else {}
        return self.session.request(verb, self.base + path, data=data, params=params or None, headers=headers,
                                    timeout=10)  # fmt: skip

    def ok(self, verb: str, path: str, body: Any = None, **params: Any) -> Any:
        answer = self.call(verb, path, body, **params)
        assert answer.status_code == 200, answer.text
        return answer.json()


def gcloud_tasks(
    rest_url: str, project: str, config_dir: Path, *args: str, token_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`gcloud tasks ARGS --location=... --format=json` against `rest_url`, with a token nobody checks."""
    binary = shutil.which("gcloud")
    assert binary, "the Google Cloud CLI (gcloud) must be on PATH"
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(config_dir),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDTASKS": rest_url + "/",
        "CLOUDSDK_AUTH_ACCESS_TOKEN": "any-local-token",
        "CLOUDSDK_CORE_PROJECT": project,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
    }
    argv = [binary, "tasks", *args, f"--location={LOCATION}", "--format=json"]
    if token_file is not None:
        del env["CLOUDSDK_AUTH_ACCESS_TOKEN"]
        argv.append(f"--access-token-file={token_file}")
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


# -- the HTTP target ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the target received it."""

    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    names: tuple[str, ...] = ()  # header names in arrival order, duplicates kept

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


Script = Callable[[int], tuple[int, float]]  # request number (0-based) -> (status, delay seconds)


@dataclass
class Target:
    """A local HTTP server that records requests and answers what its script says."""

    script: Script = lambda _n: (200, 0.0)
    requests: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    cond: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, *statuses: int, delay: float = 0.0) -> None:
        """Answer these statuses in order, then 200; each after `delay` seconds."""
        self.script = lambda n: (statuses[n] if n < len(statuses) else 200, delay)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Seen]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} requests within {timeout}s, got {len(self.requests)}")
            return list(self.requests)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        seen = Seen(
            time.time(),
            handler.command,
            handler.path,
            dict(handler.headers.items()),
            handler.rfile.read(length),
            tuple(handler.headers.keys()),
        )
        with self.cond:
            number = len(self.requests)
            self.requests.append(seen)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.cond.notify_all()
        status, delay = self.script(number)
        if delay:
            self.released.wait(delay)
        with self.cond:
            self.in_flight -= 1
        # After a missed dispatch deadline the emulator has closed the connection: nobody hears the answer.
        with contextlib.suppress(OSError):
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()


def serve_target(target: Target) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            target.handle(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    target.port = server.server_port
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


QueueFactory = Callable[..., str]


def http_task(url: str, **fields: object) -> dict[str, object]:
    """A task dict for the client: an http_request to `url` plus any other Task fields."""
    request = {
        "url": url,
        **{k: fields.pop(k) for k in ("body", "headers", "http_method", "oidc_token") if k in fields},
    }
    return {"http_request": request, **fields}


def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s")
