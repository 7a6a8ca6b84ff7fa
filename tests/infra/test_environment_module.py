"""modules/environment declares what the code expects, from the same infra/ files the code reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobrelay.infra_files import load_infra
from jobrelay.local import provision
from jobrelay.settings import ENV_NAMES
from tests.infra import contract, tfmodel

ENV_DIR = tfmodel.TERRAFORM / "modules" / "environment"
MODULE = tfmodel.load_module(ENV_DIR)
INFRA = load_infra()


def mutated(directory: Path, file_name: str, old: str, new: str) -> tfmodel.Module:
    """The module with one edit, to prove a check can fail."""
    texts = {p.name: p.read_text() for p in sorted(directory.glob("*.tf"))}
    assert old in texts[file_name], f"{old!r} not in {file_name}"
    texts[file_name] = texts[file_name].replace(old, new, 1)
    return tfmodel.load_module(directory, texts)


class _Recorder:
    """Stands in for the Pub/Sub clients: records what the local stack would create."""

    def __init__(self) -> None:
        self.topics: list[str] = []
        self.subscriptions: list[dict[str, Any]] = []

    def topic_path(self, project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def subscription_path(self, project: str, sub: str) -> str:
        return f"projects/{project}/subscriptions/{sub}"

    def create_topic(self, name: str) -> None:
        self.topics.append(name.rsplit("/", 1)[1])

    def create_subscription(self, request: dict[str, Any]) -> None:
        self.subscriptions.append(request)


def local_stack_pubsub(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Subscription name -> settings, and the topics, as jobrelay/local/provision.py creates them."""
    rec = _Recorder()

    monkeypatch.setattr(provision, "PublisherClient", lambda: rec)
    monkeypatch.setattr(provision, "SubscriberClient", lambda: rec)
    deadletter_url = "http://deadletter.test"
    provision.provision_env(INFRA.env("dev"), deadletter_url=deadletter_url)
    out: dict[str, dict[str, Any]] = {}
    for req in rec.subscriptions:
        want: dict[str, Any] = {
            "topic": req["topic"].rsplit("/", 1)[1],
            "ack_deadline_seconds": req["ack_deadline_seconds"],
        }
        if "push_config" in req:
            want["push_path"] = req["push_config"]["push_endpoint"].removeprefix(deadletter_url)
        if "dead_letter_policy" in req:
            want["dead_letter_topic"] = req["dead_letter_policy"]["dead_letter_topic"].rsplit("/", 1)[1]
            want["max_delivery_attempts"] = req["dead_letter_policy"]["max_delivery_attempts"]
        if "retry_policy" in req:
            rp = req["retry_policy"]
            want["retry"] = (float(rp["minimum_backoff"].seconds), float(rp["maximum_backoff"].seconds))
        out[req["name"].rsplit("/", 1)[1]] = want
    return out, set(rec.topics)


def test_queues_cover_every_class_with_its_rate_limits_and_retry_policy() -> None:
    assert contract.check_queues(MODULE) == []


@pytest.mark.parametrize("name", sorted(INFRA.classes))
def test_each_class_becomes_a_valid_queue(name: str) -> None:
    klass = contract.yaml_file("classes.yaml")["classes"][name]
    values = contract.queue_values(klass)
    assert klass["queue"] == INFRA.classes[name].queue
    for arg in ("min_backoff", "max_backoff", "max_retry_duration"):
        assert contract._seconds(values[arg]) is not None, values  # "Ns", the provider's duration format
    assert contract._seconds(values["min_backoff"]) == INFRA.classes[name].retry.min_backoff_seconds
    assert values["max_attempts"] == INFRA.classes[name].retry.max_attempts


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("for_each = local.queue_shards", "for_each = local.classes", "for_each must be local.queue_shards"),
        ("range(try(c.shards, 1))", "range(1)", "one entry per shard"),
        ("name     = each.key", "name     = each.value.queue", "name must be each.key"),
        (
            "max_dispatches_per_second = each.value.rate_limits.max_dispatches_per_second / each.value.shards",
            "max_dispatches_per_second = each.value.rate_limits.max_dispatches_per_second",
            "rate_limits.max_dispatches_per_second",
        ),
        (
            "max_concurrent_dispatches = ceil(each.value.rate_limits.max_concurrent_dispatches / each.value.shards)",
            "max_concurrent_dispatches = each.value.rate_limits.max_concurrent_dispatches",
            "rate_limits.max_concurrent_dispatches",
        ),
        (
            'max_backoff        = "${each.value.retry.max_backoff_seconds}s"',
            "max_backoff        = each.value.retry.max_backoff_seconds",
            "retry_config.max_backoff",
        ),
    ],
)
def test_the_queue_check_fails_on_a_broken_module(old: str, new: str, expect: str) -> None:
    problems = contract.check_queues(mutated(ENV_DIR, "tasks.tf", old, new))
    assert any(expect in p for p in problems), problems


def test_topics_and_subscriptions_match_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    expected, topics = local_stack_pubsub(monkeypatch)
    env = INFRA.env("dev")
    assert topics == {env.dead_letter_topic, env.muscle_topic, env.muscle_dead_letter_topic}
    assert set(expected) == {
        "jobrelay-dead-letters-push",
        env.muscle_subscription,
        "jobrelay-muscle-dead-letters-push",
    }
    assert expected[env.muscle_subscription]["max_delivery_attempts"] == 5
    assert contract.check_pubsub(MODULE, expected, topics) == []


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        (
            "max_delivery_attempts = local.pool_max_delivery",
            "max_delivery_attempts = 10",
            "max_delivery_attempts must be 5",
        ),
        (
            'push_endpoint = "${local.urls.deadletter}/v1/push/pool"',
            'push_endpoint = "${local.urls.deadletter}/v1/push"',
            "push_endpoint",
        ),
        (
            'local.pool_max_delivery\n  }\n\n  retry_policy {\n    minimum_backoff = "10s"\n'
            '    maximum_backoff = "600s"',
            'local.pool_max_delivery\n  }\n\n  retry_policy {\n    minimum_backoff = "10s"\n'
            '    maximum_backoff = "60s"',
            "retry_policy",
        ),
        ('muscle              = "jobrelay-muscle"', 'muscle              = "jobrelay-heavy"', "topics"),
    ],
)
def test_the_pubsub_check_fails_on_a_broken_module(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str, expect: str
) -> None:
    expected, topics = local_stack_pubsub(monkeypatch)
    file_name = "locals.tf" if 'jobrelay-muscle"' in old else "pubsub.tf"
    problems = contract.check_pubsub(mutated(ENV_DIR, file_name, old, new), expected, topics)
    assert any(expect in p for p in problems), problems


def test_every_schedule_becomes_a_scheduler_job_calling_the_cron_route() -> None:
    assert contract.check_scheduler(MODULE) == []


@pytest.mark.parametrize("env", ENV_NAMES)
def test_terraform_keeps_the_schedules_the_code_runs_in_each_env(env: str) -> None:
    assert contract.schedules_for(env) == {n for n, s in INFRA.schedules.items() if env in s.envs}


@pytest.mark.parametrize(
    ("file_name", "old", "new", "expect"),
    [
        (
            "scheduler.tf",
            'uri         = "${local.urls.api}/v1/cron/${each.key}"',
            'uri         = "${local.urls.api}/cron/${each.key}"',
            "uri must be",
        ),
        (
            "scheduler.tf",
            "audience              = local.urls.api",
            "audience              = local.urls.worker",
            "OIDC",
        ),
        (
            "scheduler.tf",
            "paused           = !try(each.value.enabled, true)",
            "paused           = false",
            "paused",
        ),
        (
            "scheduler.tf",
            "contains(try(s.envs, local.env_names), var.env)",
            "contains(s.envs, var.env)",
            "all envs by default",
        ),
    ],
)
def test_the_scheduler_check_fails_on_a_broken_module(file_name: str, old: str, new: str, expect: str) -> None:
    problems = contract.check_scheduler(mutated(ENV_DIR, file_name, old, new))
    assert any(expect in p for p in problems), problems


def test_cloud_run_services_run_the_contracted_entry_points_and_settings() -> None:
    assert contract.check_run(MODULE) == []


def test_the_worker_timeout_covers_the_longest_tasks_route_job() -> None:
    seconds = contract.worker_timeout_seconds()
    tasks_route = [c for c in INFRA.classes.values() if c.route.value == "tasks"]
    assert seconds >= 1800
    assert all(seconds > c.timeout_seconds and seconds >= c.dispatch_deadline_seconds for c in tasks_route)


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        (
            "JOBRELAY_WORKER_AUDIENCE = local.urls.worker",
            "JOBRELAY_WORKER_AUD = local.urls.worker",
            "JOBRELAY_WORKER_AUD is no setting",
        ),
        (
            '"worker tasks_invoker" = { service = "worker", member = "serviceAccount:${local.sa.tasks_invoker}" }',
            '"worker tasks_invoker" = { service = "worker", member = "serviceAccount:${local.sa.api}" }',
            "run.invoker grants",
        ),
        (
            'command = ["python", "-m", "services.worker"]',
            'command = ["python", "-m", "services.work"]',
            "service worker: runs",
        ),
    ],
)
def test_the_cloud_run_check_fails_on_a_broken_module(old: str, new: str, expect: str) -> None:
    problems = contract.check_run(mutated(ENV_DIR, "run.tf", old, new))
    assert any(expect in p for p in problems), problems


def test_firestore_gets_the_rules_indexes_and_ttl_of_infra() -> None:
    assert contract.check_firestore(MODULE) == []
    overrides = contract.yaml_file("firestore.indexes.json")["fieldOverrides"]
    assert {"collectionGroup": "jobs", "fieldPath": "expire_at", "ttl": True, "indexes": []} in overrides


def test_service_accounts_come_from_the_templates_with_least_privilege() -> None:
    assert contract.check_identities(MODULE) == []


@pytest.mark.parametrize("env", ENV_NAMES)
def test_every_service_account_template_lands_in_its_own_project(env: str) -> None:
    e = INFRA.env(env)
    for email in e.service_accounts.model_dump().values():
        assert email.endswith(f"@{e.project}.iam.gserviceaccount.com"), email
        assert 6 <= len(email.split("@")[0]) <= 30  # GCP account id length


def test_the_identity_check_fails_on_a_broken_module() -> None:
    problems = contract.check_identities(
        mutated(
            ENV_DIR,
            "iam.tf",
            '"roles/cloudtasks.viewer",\n    ]',
            '"roles/cloudtasks.viewer",\n      "roles/editor",\n    ]',
        )
    )
    assert any("must not hold roles/editor" in p for p in problems), problems


def test_every_api_the_env_needs_is_enabled() -> None:
    apis = set(MODULE.local("apis"))
    need = {
        f"{a}.googleapis.com"
        for a in (
            "run",
            "cloudtasks",
            "pubsub",
            "firestore",
            "firebaserules",
            "cloudscheduler",
            "secretmanager",
            "monitoring",
            "logging",
            "artifactregistry",
            "iam",
            "compute",
        )
    }
    assert need <= apis, need - apis


def test_nothing_in_terraform_points_at_an_emulator() -> None:
    texts: list[Callable[[], str]] = [p.read_text for p in tfmodel.TERRAFORM.rglob("*.tf")]
    assert not [t for t in texts if "EMULATOR_HOST" in t()]
