"""Create what Terraform creates in the cloud, on the local emulators: topics and subscriptions.

Cloud Tasks queues come from the emulator's own `--config infra/classes.yaml`. Names and settings
are the ones `terraform/modules/environment` declares from the same `infra/` files.
"""

from __future__ import annotations

import contextlib
import logging

from google.api_core import exceptions as gexc
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
from google.protobuf import duration_pb2

from jobrelay.settings import Environment, Infra

log = logging.getLogger("jobrelay.local.provision")

POOL_MAX_DELIVERY_ATTEMPTS = 5
POOL_ACK_DEADLINE = 60


def _topic(pub: PublisherClient, project: str, topic: str) -> str:
    path = str(pub.topic_path(project, topic))
    with contextlib.suppress(gexc.AlreadyExists):
        pub.create_topic(name=path)
    return path


def _subscription(sub: SubscriberClient, request: dict[str, object]) -> None:
    with contextlib.suppress(gexc.AlreadyExists):
        sub.create_subscription(request=request)


def provision_env(env: Environment, *, deadletter_url: str, pool_min_backoff: int = 10) -> None:
    """Topics and subscriptions of one env: dead letters (push) and the pool (pull, with DLQ)."""
    pub = PublisherClient()
    sub = SubscriberClient()
    project = env.project
    dl_topic = _topic(pub, project, env.dead_letter_topic)
    _subscription(
        sub,
        {
            "name": sub.subscription_path(project, "jobrelay-dead-letters-push"),
            "topic": dl_topic,
            "push_config": {"push_endpoint": deadletter_url.rstrip("/") + "/v1/push"},
            "ack_deadline_seconds": 30,
        },
    )
    pool_topic = _topic(pub, project, env.muscle_topic)
    pool_dl_topic = _topic(pub, project, env.muscle_dead_letter_topic)
    _subscription(
        sub,
        {
            "name": sub.subscription_path(project, env.muscle_subscription),
            "topic": pool_topic,
            "ack_deadline_seconds": POOL_ACK_DEADLINE,
            "dead_letter_policy": {
                "dead_letter_topic": pool_dl_topic,
                "max_delivery_attempts": POOL_MAX_DELIVERY_ATTEMPTS,
            },
            "retry_policy": {
                "minimum_backoff": duration_pb2.Duration(seconds=pool_min_backoff),
                "maximum_backoff": duration_pb2.Duration(seconds=600),
            },
        },
    )
    _subscription(
        sub,
        {
            "name": sub.subscription_path(project, "jobrelay-muscle-dead-letters-push"),
            "topic": pool_dl_topic,
            "push_config": {"push_endpoint": deadletter_url.rstrip("/") + "/v1/push/pool"},
            "ack_deadline_seconds": 30,
        },
    )
    log.info("provisioned Pub/Sub for env %s (%s)", env.name, project)


def provision(infra: Infra, envs: list[str], *, deadletter_url: str, pool_min_backoff: int = 10) -> None:
    """`pool_min_backoff` is the cloud's 10 s; tests shorten it so poison messages dead-letter quickly."""
    for name in envs:
        provision_env(infra.env(name), deadletter_url=deadletter_url, pool_min_backoff=pool_min_backoff)
