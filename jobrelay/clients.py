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
    from google.cloud import firestore, tasks_v2
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

_lock = threading.Lock()
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


@cache
def credentials(impersonate: str | None) -> Any:
    """None (the process's own identity) or short-lived credentials of the service account `impersonate`.

    The Elastic Muscle VMs run as an account that may only mint tokens for each env's `muscle`
    account, so one env's job never holds another env's credentials.
    """
    if impersonate is None:
        return None
    import google.auth
    from google.auth import impersonated_credentials

    source, _ = google.auth.default(scopes=list(SCOPES))
    return impersonated_credentials.Credentials(
        source_credentials=source, target_principal=impersonate, target_scopes=list(SCOPES), lifetime=3600
    )


@cache
def firestore_client(project: str, impersonate: str | None = None) -> firestore.Client:
    """The Firestore client of one env's project (one per project and identity, shared by threads)."""
    from google.cloud import firestore

    with _lock:
        return firestore.Client(project=project, credentials=credentials(impersonate))


@cache
def tasks_client(impersonate: str | None = None) -> tasks_v2.CloudTasksClient:
    from google.cloud import tasks_v2

    host = os.environ.get("CLOUD_TASKS_EMULATOR_HOST")
    if host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        channel = grpc.insecure_channel(host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient(credentials=credentials(impersonate))


@cache
def publisher_client(impersonate: str | None = None) -> PublisherClient:
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(credentials=credentials(impersonate))


@cache
def subscriber_client(impersonate: str | None = None) -> SubscriberClient:
    from google.cloud import pubsub_v1

    return pubsub_v1.SubscriberClient(credentials=credentials(impersonate))


def reset() -> None:
    """Forget cached clients (tests that change emulator hosts)."""
    for fn in (firestore_client, tasks_client, publisher_client, subscriber_client, credentials):
        fn.cache_clear()
