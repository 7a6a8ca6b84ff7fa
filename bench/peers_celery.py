"""The Celery side of `bench.peers`: one no-op task, and the app its worker and its caller share.

The worker runs as its own process, started by `bench.peers`:

    python -m celery -A bench.peers_celery worker --pool=threads --concurrency=64 ...

with the Redis URL in `JOBRELAY_PEERS_REDIS_URL` (broker on db 0, results on db 1). The configuration
is the one a team would pick to get what jobrelay gives by default: `acks_late` with
`reject_on_worker_lost` (a worker that dies mid-task leaves the message to be delivered again instead
of losing it), a Redis result backend (the caller can see "succeeded" and the return value), and
`track_started` (the caller can see "running", as a jobrelay document shows it). Everything else is
Celery's default. This module imports nothing of jobrelay, so the worker pays only for Celery.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("peers")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)


def use(redis_url: str) -> None:
    """Point the app at one Redis server (before the first task is sent or received)."""
    app.conf.update(broker_url=f"{redis_url}/0", result_backend=f"{redis_url}/1")


use(os.environ.get("JOBRELAY_PEERS_REDIS_URL", "redis://127.0.0.1:6379"))


@app.task(name="peers.noop")
def noop(message: str) -> dict[str, str]:
    """Returns its argument, like jobrelay's `echo` job type."""
    return {"message": message}
