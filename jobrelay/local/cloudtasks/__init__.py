"""A local Cloud Tasks emulator with the real service's semantics, for tests and the local stack.

Google ships no Cloud Tasks emulator. This one serves the v2 API over gRPC (the official
`google-cloud-tasks` clients) and over REST on its HTTP port (`gcloud tasks`, firebase-admin's task
queues, the Node client's `fallback: true`), one engine behind both, and reproduces delays,
task-name de-duplication, retries with backoff, per-queue throttling, pause/resume/purge, the
X-CloudTasks-* headers and OIDC tokens (see docs/cloudtasks-emulator.md for what it does not do).

    proc = launch(grpc_port, http_port, config=Path("infra/classes.yaml"), projects=["p1"])
    client = tasks_v2.CloudTasksClient(
        transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(f"127.0.0.1:{grpc_port}")))
    ...
    proc.stop()

Importing this package is cheap: the server modules load only in the emulator's own process.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import requests

from jobrelay.local.procs import Proc, port_open, start, wait_until

__all__ = ["launch"]


def launch(
    grpc_port: int,
    http_port: int,
    *,
    config: Path | str | None = None,
    projects: Sequence[str] = (),
    location: str = "us-central1",
    key_file: Path | str | None = None,
    log_path: Path | None = None,
    name_reservation_seconds: float | None = None,
    queue_reservation_seconds: float | None = None,
    queues_file: Path | str | None = None,
    create_queues_on_demand: bool = False,
    functions_url: str | None = None,
    timeout: float = 30.0,
) -> Proc:
    """Start the emulator as a subprocess and wait until its gRPC and HTTP ports answer.

    Stop it with `proc.stop()` (SIGTERM to its process group; it exits 0).
    """
    argv = [
        sys.executable, "-m", "jobrelay.local.cloudtasks",
        "--host-port", f"127.0.0.1:{grpc_port}",
        "--http-port", str(http_port),
        "--location", location,
    ]  # fmt: skip
    if config is not None:
        argv += ["--config", str(config), "--projects", ",".join(projects)]
    if key_file is not None:
        argv += ["--signing-key", str(key_file)]
    if name_reservation_seconds is not None:
        argv += ["--name-reservation-seconds", str(name_reservation_seconds)]
    if queue_reservation_seconds is not None:
        argv += ["--queue-reservation-seconds", str(queue_reservation_seconds)]
    if queues_file is not None:
        argv += ["--queues", str(queues_file)]
    if create_queues_on_demand:
        argv.append("--create-queues-on-demand")
    if functions_url is not None:
        argv += ["--functions-url", functions_url]
    proc = start("cloudtasks", argv, env={"PYTHONUNBUFFERED": "1"}, log_path=log_path)
    try:
        wait_until(
            lambda: (
                port_open("127.0.0.1", grpc_port)
                and requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).ok
            ),
            timeout=timeout,
            what="Cloud Tasks emulator",
            proc=proc,
        )
    except BaseException:
        proc.stop()
        raise
    return proc
