"""Create what Terraform creates in the cloud, on the local emulators: topics and subscriptions.

Cloud Tasks queues come from the emulator's own `--config infra/classes.yaml`. Names and settings
are the ones `terraform/modules/environment` declares from the same `infra/` files.
"""

from __future__ import annotations

import logging

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from jobrelay.settings import Environment, Infra

log = logging.getLogger("jobrelay.local.provision")

POOL_MAX_DELIVERY_ATTEMPTS = 5
POOL_ACK_DEADLINE = 60


def _topic(pub: pubsub_v1.PublisherClient, project: str, topic: str) -> str:
    path = pub.topic_path(project, topic)
    try:
        pub.create_topic(name=path)
    except gexc.AlreadyExists:
        pass
    return path


def _subscription(sub: pubsub_v1.SubscriberClient, request: dict[str, object]) -> None:
    try:
        sub.create_subscription(request=request)
    except gexc.AlreadyExists:
        pass


def provision_env(env: Environment, *, deadletter_url: str, pool_min_backoff: int = 1) -> None:
    """Topics and subscriptions of one env: dead letters (push) and the pool (pull, with DLQ)."""
    pub = pubsub_v1.PublisherClient()
    sub = pubsub_v1.SubscriberClient()
    project = env.project
    dl_topic = _topic(pub, project, env.dead_letter_topic)
    _subscription(sub, {
        "name": sub.subscription_path(project, "jobrelay-dead-letters-push"),
        "topic": dl_topic,
        "push_config": {"push_endpoint": deadletter_url.rstrip("/") + "/v1/push"},
        "ack_deadline_seconds": 30,
    })
    pool_topic = _topic(pub, project, env.muscle_topic)
    pool_dl_topic = _topic(pub, project, env.muscle_dead_letter_topic)
    _subscription(sub, {
        "name": sub.subscription_path(project, env.muscle_subscription),
        "topic": pool_topic,
        "ack_deadline_seconds": POOL_ACK_DEADLINE,
        "dead_letter_policy": {"dead_letter_topic": pool_dl_topic,
                               "max_delivery_attempts": POOL_MAX_DELIVERY_ATTEMPTS},
        "retry_policy": {"minimum_backoff": duration_pb2.Duration(seconds=pool_min_backoff),
                         "maximum_backoff": duration_pb2.Duration(seconds=600)},
    })
    _subscription(sub, {
        "name": sub.subscription_path(project, "jobrelay-muscle-dead-letters-push"),
        "topic": pool_dl_topic,
        "push_config": {"push_endpoint": deadletter_url.rstrip("/") + "/v1/push/pool"},
        "ack_deadline_seconds": 30,
    })
    log.info("provisioned Pub/Sub for env %s (%s)", env.name, project)


def provision(infra: Infra, envs: list[str], *, deadletter_url: str) -> None:
    for name in envs:
        provision_env(infra.env(name), deadletter_url=deadletter_url)
