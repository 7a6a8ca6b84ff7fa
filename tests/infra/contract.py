"""The contract between terraform/ and the code: each check returns the problems it finds.

The checks take parsed modules (tests/infra/tfmodel.py) so the tests can hand them a deliberately
broken copy and see them fail.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from jobrelay.local.cloudtasks import config as emulator_config
from jobrelay.process_settings import RuntimeSettings
from jobrelay.settings import RateLimits, RetrySettings
from tests.infra.tfmodel import INFRA, Module

QUEUE_RETRY = {
    # provider argument -> its expression: each YAML retry field, durations as "Ns" strings
    "max_attempts": "each.value.retry.max_attempts",
    "min_backoff": "${each.value.retry.min_backoff_seconds}s",
    "max_backoff": "${each.value.retry.max_backoff_seconds}s",
    "max_doublings": "each.value.retry.max_doublings",
    "max_retry_duration": "${try(each.value.retry.max_retry_duration_seconds, 0)}s",
}


def yaml_file(name: str) -> dict[str, Any]:
    return yaml.safe_load((INFRA / name).read_text())  # type: ignore[no-any-return]


def _single(m: Module, kind: str) -> tuple[str, Any] | None:
    found = m.of_type(kind)
    return next(iter(found.items())) if len(found) == 1 else None


# --- Cloud Tasks ------------------------------------------------------------------------------


# How tasks.tf makes one queue per shard of each class, named as jobrelay.settings.JobClass.queues
# names them: shard 0 the class's queue id, shard i > 0 "<queue>-<i>", each keyed by its queue id.
QUEUE_SHARDS = (
    "merge([for name, c in local.classes : {for i in range(try(c.shards, 1)) : "
    '(i == 0 ? c.queue : "${c.queue}-${i}") => merge(c, {class = name, shard = i, shards = try(c.shards, 1)})}] ...)'
)
# Each shard gets the class's limits divided by the shard count (the shards add up to the class's).
QUEUE_RATES = {
    "max_dispatches_per_second": "each.value.rate_limits.max_dispatches_per_second / each.value.shards",
    "max_concurrent_dispatches": "ceil(each.value.rate_limits.max_concurrent_dispatches / each.value.shards)",
}


def check_queues(m: Module) -> list[str]:
    p: list[str] = []
    if not (m.decodes("classes", "classes.yaml") and str(m.local("classes")).endswith(").classes")):
        p.append("local.classes must be yamldecode(file(.../infra/classes.yaml)).classes")
    one = _single(m, "google_cloud_tasks_queue")
    if one is None:
        return [*p, "expected exactly one google_cloud_tasks_queue resource (for_each over the classes' shards)"]
    _, q = one
    if m.local("queue_shards") != QUEUE_SHARDS:
        p.append(f"local.queue_shards must make one entry per shard of every class: {QUEUE_SHARDS}")
    if q.attr("for_each") != "local.queue_shards":
        p.append(f"queues: for_each must be local.queue_shards (every class's shards), not {q.attr('for_each')!r}")
    if q.attr("name") != "each.key":
        p.append("queues: name must be each.key (the shard's queue id)")
    if q.attr("location") != "local.region":
        p.append("queues: location must be the env's region")

    classes = yaml_file("classes.yaml")["classes"]
    rate_keys = {k for c in classes.values() for k in c["rate_limits"]}
    retry_keys = {k for c in classes.values() for k in c["retry"]}
    rl = q.blocks("rate_limits")
    rc = q.blocks("retry_config")
    if len(rl) != 1 or len(rc) != 1:
        return [*p, "queues: need one rate_limits and one retry_config block"]
    for key in sorted(rate_keys):
        if rl[0].attr(key) != QUEUE_RATES.get(key):
            p.append(f"queues: rate_limits.{key} must be {QUEUE_RATES.get(key)!r} (the class's share per shard)")
    for arg, expr in QUEUE_RETRY.items():
        if rc[0].attr(arg) != expr:
            p.append(f"queues: retry_config.{arg} must be {expr!r}, is {rc[0].attr(arg)!r}")
    used = " ".join(str(rc[0].attr(a)) for a in rc[0].names())
    for key in sorted(retry_keys):
        if f"each.value.retry.{key}" not in used:
            p.append(f"queues: classes.yaml retry field {key!r} reaches no retry_config argument")
    # The YAML, the code's model, the emulator and the provider all speak of the same fields.
    if rate_keys != set(RateLimits.model_fields):
        p.append(f"classes.yaml rate_limits {sorted(rate_keys)} != jobrelay.settings.RateLimits")
    if retry_keys - set(RetrySettings.model_fields):
        p.append(f"classes.yaml retry fields {sorted(retry_keys)} not all in jobrelay.settings.RetrySettings")
    emulator_rate = {f.name for f in dataclasses.fields(emulator_config.RateLimits)}
    emulator_retry = {f.name for f in dataclasses.fields(emulator_config.RetryPolicy)}
    if set(rl[0].names()) != emulator_rate:
        p.append(f"queues: rate_limits {sorted(rl[0].names())} != the emulator's {sorted(emulator_rate)}")
    if set(rc[0].names()) != emulator_retry:
        p.append(f"queues: retry_config {sorted(rc[0].names())} != the emulator's {sorted(emulator_retry)}")
    return p


def shard_queues(classes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """What QUEUE_SHARDS and QUEUE_RATES make of classes.yaml (the same arithmetic, in Python):
    queue id -> class, shard and the rates Terraform gives that queue."""
    out: dict[str, dict[str, Any]] = {}
    for name, c in classes.items():
        shards = c.get("shards", 1)
        for i in range(shards):
            out[c["queue"] if i == 0 else f"{c['queue']}-{i}"] = {
                "class": name,
                "shard": i,
                "max_dispatches_per_second": c["rate_limits"]["max_dispatches_per_second"] / shards,
                "max_concurrent_dispatches": math.ceil(c["rate_limits"]["max_concurrent_dispatches"] / shards),
            }
    return out


def queue_values(klass: Mapping[str, Any]) -> dict[str, Any]:
    """What Terraform's expressions make of one class (the same arithmetic, in Python)."""
    r = klass["retry"]
    return {
        "max_attempts": r["max_attempts"],
        "min_backoff": f"{r['min_backoff_seconds']}s",
        "max_backoff": f"{r['max_backoff_seconds']}s",
        "max_doublings": r["max_doublings"],
        "max_retry_duration": f"{r.get('max_retry_duration_seconds', 0)}s",
    }


# --- Pub/Sub ----------------------------------------------------------------------------------


def _topic_name(m: Module, ref: str) -> str | None:
    match = re.fullmatch(r'google_pubsub_topic\.topic\["(\w+)"\]\.(id|name)', str(ref))
    return m.local("topics").get(match.group(1)) if match else None


def _value(m: Module, expr: Any) -> Any:
    """A literal, or the literal a `local.x` names."""
    if isinstance(expr, str) and re.fullmatch(r"local\.\w+", expr):
        return m.local(expr.split(".", 1)[1])
    return expr


def _seconds(duration: Any) -> float | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(duration))
    return float(match.group(1)) if match else None


def check_pubsub(m: Module, expected: Mapping[str, Mapping[str, Any]], topics: set[str]) -> list[str]:
    """`expected`: subscription name -> what the local stack creates (jobrelay/local/provision.py)."""
    p: list[str] = []
    declared_topics = set(m.local("topics").values())
    if declared_topics != topics:
        p.append(f"topics {sorted(declared_topics)} != the code's {sorted(topics)}")
    topic_res = m.of_type("google_pubsub_topic")
    if {b.attr("for_each") for b in topic_res.values()} != {"local.topics"}:
        p.append("google_pubsub_topic must be for_each over local.topics")
    subs = {str(_value(m, b.attr("name"))): b for b in m.of_type("google_pubsub_subscription").values()}
    for name, want in expected.items():
        sub = subs.get(name)
        if sub is None:
            p.append(f"subscription {name!r} is not declared")
            continue
        if _topic_name(m, sub.attr("topic")) != want["topic"]:
            p.append(f"{name}: topic must be {want['topic']!r}")
        if _value(m, sub.attr("ack_deadline_seconds")) != want["ack_deadline_seconds"]:
            p.append(f"{name}: ack_deadline_seconds must be {want['ack_deadline_seconds']}")
        push = sub.blocks("push_config")
        if "push_path" in want:
            endpoint = str(push[0].attr("push_endpoint")) if push else ""
            if endpoint != "${local.urls.deadletter}" + want["push_path"]:
                p.append(f"{name}: push_endpoint must be the dead-letter service's {want['push_path']}")
            oidc = push[0].blocks("oidc_token") if push else []
            if (
                not oidc
                or oidc[0].attr("audience") != "local.urls.deadletter"
                or "pubsub_push" not in str(oidc[0].attr("service_account_email"))
            ):
                p.append(f"{name}: push needs an OIDC token of pubsub_push for the dead-letter service")
        elif push:
            p.append(f"{name}: must be a pull subscription")
        dlp = sub.blocks("dead_letter_policy")
        if "dead_letter_topic" in want:
            if not dlp:
                p.append(f"{name}: needs its dead_letter_policy")
            else:
                if _topic_name(m, dlp[0].attr("dead_letter_topic")) != want["dead_letter_topic"]:
                    p.append(f"{name}: dead-letter topic must be {want['dead_letter_topic']!r}")
                if _value(m, dlp[0].attr("max_delivery_attempts")) != want["max_delivery_attempts"]:
                    p.append(f"{name}: max_delivery_attempts must be {want['max_delivery_attempts']}")
        if "retry" in want:
            rp = sub.blocks("retry_policy")
            got = (_seconds(rp[0].attr("minimum_backoff")), _seconds(rp[0].attr("maximum_backoff"))) if rp else None
            if got != want["retry"]:
                p.append(f"{name}: retry_policy must be {want['retry']}, is {got}")
    # Dead-lettering needs the Pub/Sub service agent on both ends.
    agent = str(m.local("pubsub_agent"))
    if agent != "serviceAccount:service-${local.number}@gcp-sa-pubsub.iam.gserviceaccount.com":
        p.append("local.pubsub_agent must be the project's Pub/Sub service agent")
    publishers = m.local("topic_publishers")
    if not any(
        v["topic"] == "muscle_dead_letters" and v["member"] == "local.pubsub_agent" for v in publishers.values()
    ):
        p.append("the Pub/Sub service agent needs publisher on the pool's dead-letter topic")
    sub_members = [
        b
        for b in m.of_type("google_pubsub_subscription_iam_member").values()
        if b.attr("role") == "roles/pubsub.subscriber"
    ]
    if not any(
        "local.pubsub_agent" in str(b.attr("for_each")) and "pool" in str(b.attr("subscription")) for b in sub_members
    ):
        p.append("the Pub/Sub service agent needs subscriber on the pool subscription")
    return p


# --- Cloud Scheduler --------------------------------------------------------------------------


def check_scheduler(m: Module) -> list[str]:
    p: list[str] = []
    if not (m.decodes("schedules", "schedules.yaml") and ").schedules" in str(m.local("schedules"))):
        p.append("local.schedules must decode infra/schedules.yaml")
    flt = re.sub(r"\s+", " ", str(m.local("env_schedules")))
    if "for name, s in local.schedules" not in flt or "contains(try(s.envs, local.env_names), var.env)" not in flt:
        p.append("local.env_schedules must keep every schedule listing this env (all envs by default)")
    one = _single(m, "google_cloud_scheduler_job")
    if one is None:
        return [*p, "expected exactly one google_cloud_scheduler_job resource"]
    _, job = one
    want = {
        "for_each": "local.env_schedules",
        "name": "jobrelay-${each.key}",
        "schedule": "each.value.cron",
        "time_zone": 'try(each.value.time_zone, "Etc/UTC")',
        "paused": "!try(each.value.enabled, true)",
        "region": "local.region",
    }
    for arg, expr in want.items():
        if job.attr(arg) != expr:
            p.append(f"scheduler: {arg} must be {expr!r}, is {job.attr(arg)!r}")
    if not job.blocks("retry_config"):
        p.append("scheduler: needs a retry_config")
    targets = job.blocks("http_target")
    if len(targets) != 1:
        return [*p, "scheduler: needs one http_target"]
    t = targets[0]
    if t.attr("uri") != "${local.urls.api}/v1/cron/${each.key}":
        p.append(f"scheduler: uri must be the API's /v1/cron/<name>, is {t.attr('uri')!r}")
    if t.attr("http_method") != "POST":
        p.append("scheduler: http_method must be POST")
    oidc = t.blocks("oidc_token")
    if (
        not oidc
        or oidc[0].attr("audience") != "local.urls.api"
        or 'sa["scheduler"]' not in str(oidc[0].attr("service_account_email"))
    ):
        p.append("scheduler: needs an OIDC token of the scheduler account with the API URL as audience")
    return p


def schedules_for(env: str) -> set[str]:
    """The schedules Terraform's filter keeps for `env` (envs default to all)."""
    data = yaml_file("schedules.yaml").get("schedules") or {}
    envs = list(yaml_file("environments.yaml")["environments"])
    return {name for name, s in data.items() if env in s.get("envs", envs)}


# --- Cloud Run --------------------------------------------------------------------------------

SERVICES = {
    "api": ["functions-framework", "--target=api", "--source=functions/main.py"],
    "worker": ["python", "-m", "services.worker"],
    "deadletter": ["python", "-m", "services.deadletter"],
}
REQUIRED_ENV = {
    "JOBRELAY_MODE",
    "JOBRELAY_ENVS",
    "JOBRELAY_WORKER_URL",
    "JOBRELAY_WORKER_AUDIENCE",
    "JOBRELAY_API_URL",
    "JOBRELAY_DEADLETTER_URL",
    "JOBRELAY_SECRETS_BACKEND",
    "JOBRELAY_LOG_LEVEL",
}


def check_run(m: Module) -> list[str]:
    p: list[str] = []
    services = m.local("services")
    for name, argv in SERVICES.items():
        s = services.get(name)
        if s is None:
            p.append(f"service {name} is not declared")
        elif s["command"] + s["args"] != argv:
            p.append(f"service {name}: runs {s['command'] + s['args']}, the contract says {argv}")
    env = m.local("runtime_env")
    fields = set(RuntimeSettings.model_fields)
    for key in env:
        if not key.startswith("JOBRELAY_") or key[len("JOBRELAY_") :].lower() not in fields:
            p.append(f"{key} is no setting of jobrelay.process_settings.RuntimeSettings")
    p += [f"{key} is not set on the services" for key in sorted(REQUIRED_ENV - set(env))]
    if env.get("JOBRELAY_MODE") != "cloud" or env.get("JOBRELAY_SECRETS_BACKEND") != "secretmanager":
        p.append("services must run with JOBRELAY_MODE=cloud and JOBRELAY_SECRETS_BACKEND=secretmanager")
    if env.get("JOBRELAY_ENVS") != "var.env":
        p.append("JOBRELAY_ENVS must be the one env of this deployment")
    for key, url in (
        ("JOBRELAY_WORKER_URL", "worker"),
        ("JOBRELAY_WORKER_AUDIENCE", "worker"),
        ("JOBRELAY_API_URL", "api"),
        ("JOBRELAY_DEADLETTER_URL", "deadletter"),
    ):
        if env.get(key) != f"local.urls.{url}":
            p.append(f"{key} must be local.urls.{url}")
    urls = str(m.local("urls"))
    if (
        "https://jobrelay-${s}-${local.number}.${local.region}.run.app" not in urls
        or m.local("number") != "data.google_project.this.number"
    ):
        p.append("local.urls must be the deterministic https://SERVICE-PROJECT_NUMBER.REGION.run.app")
    svc = m.one("google_cloud_run_v2_service", "svc")
    if svc.attr("for_each") != "local.services" or svc.attr("name") != "jobrelay-${each.key}":
        p.append("Cloud Run services must be jobrelay-<name> for each of local.services")
    container = svc.block("template").block("containers")
    if container.attr("image") != "var.image":
        p.append("every service runs var.image")
    if container.dynamic_for_each("env") != ["local.runtime_env"]:
        p.append("every service gets local.runtime_env")
    worker_timeout = services.get("worker", {}).get("timeout")
    if worker_timeout != "${local.longest_dispatch_seconds + 60}s":
        p.append(f"worker timeout must cover the longest dispatch deadline, is {worker_timeout!r}")
    # Who may invoke what: the worker only by Cloud Tasks, the dead-letter service only by Pub/Sub.
    invokers = re.findall(r'service = "(\w+)", member = "serviceAccount:\$\{([^}]+)\}"', str(m.locals["invokers"]))
    by_service: dict[str, set[str]] = {}
    for service, member in invokers:
        by_service.setdefault(service, set()).add(member)
    want = {
        "worker": {"local.sa.tasks_invoker"},
        "deadletter": {"local.sa.pubsub_push"},
        "api": {"local.sa.scheduler", "local.sa.eventarc", "op"},
    }
    if by_service != want:
        p.append(f"run.invoker grants {by_service} != {want}")
    public = {name for name, s in services.items() if s.get("public")}
    if public != {"api"}:
        p.append(f"only the API (Firebase tokens, checked in code) may skip the IAM invoker check, not {public}")
    return p


def worker_timeout_seconds() -> int:
    classes = yaml_file("classes.yaml")["classes"].values()
    return max(c["dispatch_deadline_seconds"] for c in classes) + 60


# --- Firestore --------------------------------------------------------------------------------


def check_firestore(m: Module) -> list[str]:
    p: list[str] = []
    if not m.decodes("firestore", "firestore.indexes.json"):
        p.append("local.firestore must jsondecode infra/firestore.indexes.json")
    db = m.one("google_firestore_database", "default")
    if db.attr("type") != "FIRESTORE_NATIVE" or db.attr("name") != "(default)":
        p.append("the (default) database must be FIRESTORE_NATIVE")
    ix = m.one("google_firestore_index", "composite")
    if "local.firestore.indexes" not in str(ix.attr("for_each")):
        p.append("google_firestore_index must be for_each over the JSON's indexes")
    field = m.one("google_firestore_field", "override")
    if "local.firestore.fieldOverrides" not in str(field.attr("for_each")) or "each.value.ttl" not in " ".join(
        field.dynamic_for_each("ttl_config")
    ):
        p.append("google_firestore_field must be for_each over fieldOverrides, ttl_config when ttl is set")
    rules = m.one("google_firebaserules_ruleset", "firestore")
    content = str(rules.block("source").block("files").attr("content"))
    if INFRA / "firestore.rules" not in m.files_read(content):
        p.append("the ruleset must be file(infra/firestore.rules)")
    if m.one("google_firebaserules_release", "firestore").attr("name") != "cloud.firestore":
        p.append("the rules release must be cloud.firestore")
    return p


# --- service accounts and roles ---------------------------------------------------------------

LEAST = {
    # firebaseauth.admin: the access routes set custom claims (jobrelay.access, ADR 0016).
    "api": {"roles/datastore.user", "roles/cloudtasks.enqueuer", "roles/cloudtasks.viewer", "roles/firebaseauth.admin"},
    "worker": {"roles/datastore.user", "roles/cloudtasks.enqueuer", "roles/secretmanager.secretAccessor"},
    "muscle": {"roles/datastore.user", "roles/secretmanager.secretAccessor"},
    # The Eventarc trigger's identity: it receives events and holds no data access (ADR 0020).
    "eventarc": {"roles/eventarc.eventReceiver"},
}
BROAD = (
    "roles/owner",
    "roles/editor",
    "roles/viewer",
    "roles/iam.serviceAccountAdmin",
    "roles/resourcemanager.projectIamAdmin",
    "roles/pubsub.admin",
    "roles/run.admin",
)


def check_identities(m: Module) -> list[str]:
    p: list[str] = []
    sa = m.local("sa")
    if "local.defaults.service_accounts" not in str(sa) or 'replace(template, "{project}", local.project)' not in str(
        sa
    ):
        p.append("local.sa must be environments.yaml's templates with {project} replaced")
    accounts = m.one("google_service_account", "sa")
    if accounts.attr("for_each") != "local.sa" or accounts.attr("account_id") != 'split("@", each.value)[0]':
        p.append("service accounts must be created from local.sa")
    roles = m.local("project_roles")
    for who, need in LEAST.items():
        missing = need - set(roles.get(who, []))
        p += [f"{who} lacks {r}" for r in sorted(missing)]
    if set(roles) - {"api", "worker", "muscle", "eventarc"}:
        p.append(f"only api, worker, muscle and eventarc get project roles, not {sorted(set(roles))}")
    if set(roles.get("eventarc", [])) != LEAST["eventarc"]:
        p.append(f"eventarc may hold only {sorted(LEAST['eventarc'])}, not {roles.get('eventarc')}")
    for who, granted in roles.items():
        p += [f"{who} must not hold {r}" for r in granted if r in BROAD]
    if sorted(m.local("task_creators")) != ["api", "muscle", "worker"]:
        p.append("api, worker and muscle need actAs on tasks_invoker to set OIDC on tasks")
    return p


# --- Eventarc (job requests) -----------------------------------------------------------------


def check_eventarc(m: Module, *, collection: str, path: str, content_types: tuple[str, ...]) -> list[str]:
    """The trigger that turns job requests into jobs matches what the code reads.

    `collection`: jobrelay.namespace.REQUESTS; `path`: the event route of jobrelay.routes;
    `content_types`: what jobrelay.cloudevents parses.
    """
    p: list[str] = []
    one = _single(m, "google_eventarc_trigger")
    if one is None:
        return ["expected exactly one google_eventarc_trigger (job requests)"]
    _, t = one
    settings = m.local("job_requests")
    if settings.get("collection") != collection:
        p.append(f"local.job_requests.collection must be {collection!r} (jobrelay.namespace.REQUESTS)")
    if settings.get("path") != path:
        p.append(f"local.job_requests.path must be {path!r}, the API's event route")
    if settings.get("content_type") not in content_types or (
        t.attr("event_data_content_type") != "local.job_requests.content_type"
    ):
        p.append(f"event_data_content_type must be one of {content_types}, what jobrelay.cloudevents reads")
    criteria = {str(c.attr("attribute")): c for c in t.blocks("matching_criteria")}
    if set(criteria) != {"type", "database", "document"}:
        p.append(f"matching_criteria must be type, database and document, not {sorted(criteria)}")
    else:
        if criteria["type"].attr("value") != "google.cloud.firestore.document.v1.created":
            p.append("the trigger must match google.cloud.firestore.document.v1.created")
        if criteria["database"].attr("value") != "google_firestore_database.default.name":
            p.append("the trigger must match the env's (default) database")
        doc = criteria["document"]
        if (
            doc.attr("operator") != "match-path-pattern"
            or doc.attr("value") != "${local.job_requests.collection}/{request}"
        ):
            p.append("the document filter must be the match-path-pattern <collection>/{request}")
    if t.attr("location") != "google_firestore_database.default.location_id":
        p.append("a Firestore trigger must live in the database's location")
    if 'sa["eventarc"]' not in str(t.attr("service_account")):
        p.append("the trigger must run as the env's eventarc service account")
    run = t.block("destination").block("cloud_run_service")
    if (
        run.attr("service") != 'google_cloud_run_v2_service.svc["api"].name'
        or run.attr("path") != "local.job_requests.path"
    ):
        p.append("the trigger must call the API's event route")
    minters = [
        b
        for b in m.of_type("google_service_account_iam_member").values()
        if 'sa["eventarc"]' in str(b.attr("service_account_id"))
        and b.attr("role") == "roles/iam.serviceAccountTokenCreator"
        and b.attr("member") == "local.pubsub_agent"
    ]
    if not minters:
        p.append("the Pub/Sub service agent needs serviceAccountTokenCreator on the eventarc account")
    if "eventarc.googleapis.com" not in m.local("apis"):
        p.append("eventarc.googleapis.com must be enabled")
    return p
