"""Google clients, built once per process from the standard settings.

Nothing here knows about the local stack except through the standard variables: the Google
libraries read FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST themselves; Cloud Tasks has no
official one, so CLOUD_TASKS_EMULATOR_HOST points the official client at an insecure channel.
Imports are lazy so that each entry point pays only for the clients it uses.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import firestore, pubsub_v1, tasks_v2

_lock = threading.Lock()


@cache
def firestore_client(project: str) -> firestore.Client:
    """The Firestore client of one env's project (one per project, shared by threads)."""
    from google.cloud import firestore

    with _lock:
        return firestore.Client(project=project)


@cache
def tasks_client() -> tasks_v2.CloudTasksClient:
    from google.cloud import tasks_v2

    host = os.environ.get("CLOUD_TASKS_EMULATOR_HOST")
    if host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        channel = grpc.insecure_channel(host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


@cache
def publisher_client() -> pubsub_v1.PublisherClient:
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()


@cache
def subscriber_client() -> pubsub_v1.SubscriberClient:
    from google.cloud import pubsub_v1

    return pubsub_v1.SubscriberClient()


def reset() -> None:
    """Forget cached clients (tests that change emulator hosts)."""
    for fn in (firestore_client, tasks_client, publisher_client, subscriber_client):
        fn.cache_clear()


def describe() -> dict[str, Any]:
    return {
        "firestore": os.environ.get("FIRESTORE_EMULATOR_HOST", "google"),
        "pubsub": os.environ.get("PUBSUB_EMULATOR_HOST", "google"),
        "cloudtasks": os.environ.get("CLOUD_TASKS_EMULATOR_HOST", "google"),
    }
