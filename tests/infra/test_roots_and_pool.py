"""The env roots, the Elastic Muscle pool and the monitoring module read the same infra/ files."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from jobrelay import logging as jlog
from jobrelay.infra_files import load_infra
from jobrelay.settings import ENV_NAMES
from tests.infra import tfmodel

INFRA = load_infra()
ROOTS = {env: tfmodel.load_module(tfmodel.TERRAFORM / "envs" / env) for env in ENV_NAMES}
ENV_MODULE = tfmodel.load_module(tfmodel.TERRAFORM / "modules" / "environment")
MUSCLE_DIR = tfmodel.TERRAFORM / "modules" / "muscle"
MONITORING = tfmodel.load_module(tfmodel.TERRAFORM / "modules" / "monitoring")


def check_root(env: str, root: tfmodel.Module) -> list[str]:
    p: list[str] = []
    project = INFRA.env(env).project
    if root.local("env") != env or not root.decodes("settings", "environments.yaml"):
        p.append(f"{env}: local.env must be {env!r} and settings must decode environments.yaml")
    backends = [b for tf in root.terraform for b in tf.raw.get("backend", [])]
    gcs = [tfmodel.plain(b.get('"gcs"', {})) for b in backends]
    if gcs != [{"bucket": f"{project}-jobrelay-tfstate", "prefix": "jobrelay"}]:
        p.append(f"{env}: backend must be gcs bucket {project}-jobrelay-tfstate, prefix jobrelay; is {gcs}")
    mod = root.modules.get("environment")
    if (
        mod is None
        or mod.attr("env") != "local.env"
        or mod.attr("image") != "var.image"
        or mod.attr("source") != "../../modules/environment"
    ):
        p.append(f"{env}: must call modules/environment with env = local.env and image = var.image")
    mon = root.modules.get("monitoring")
    if mon is None or mon.attr("env") != "local.env":
        p.append(f"{env}: must call modules/monitoring for its env")
    provider = root.providers.get("google")
    if provider is None or provider.attr("project") != "local.project":
        p.append(f"{env}: the google provider must default to the env's project")
    allowed = {"image", "source_repository"} if env == "prod" else {"image"}
    if set(root.variables) != allowed:
        p.append(
            f"{env}: root variables must be {sorted(allowed)} (the rest is in infra/), not {sorted(root.variables)}"
        )
    return p


@pytest.mark.parametrize("env", ENV_NAMES)
def test_each_env_root_is_thin_and_stores_state_in_its_own_project(env: str) -> None:
    assert check_root(env, ROOTS[env]) == []


def test_the_root_check_fails_on_a_wrong_state_bucket() -> None:
    d = tfmodel.TERRAFORM / "envs" / "stg"
    texts = {p.name: p.read_text() for p in d.glob("*.tf")}
    texts["versions.tf"] = texts["versions.tf"].replace("singular-dream-stg-jobrelay", "singular-dream-jobrelay")
    assert any("backend must be" in p for p in check_root("stg", tfmodel.load_module(d, texts)))


def test_the_pool_and_the_pipeline_live_in_the_prod_root_only() -> None:
    assert set(ROOTS["prod"].modules) == {"environment", "monitoring", "muscle", "pipeline"}
    assert set(ROOTS["dev"].modules) == set(ROOTS["stg"].modules) == {"environment", "monitoring"}
    assert INFRA.muscle.project == INFRA.env("prod").project


def check_muscle(m: tfmodel.Module) -> list[str]:
    p: list[str] = []
    if not m.decodes("environments", "environments.yaml") or m.local("muscle") != "local.environments.muscle":
        p.append("muscle settings must come from environments.yaml's muscle section")
    if m.local("project") != "local.muscle.project" or m.local("zone") != "local.muscle.zone":
        p.append("the pool lives in muscle.project, muscle.zone")
    scaler = m.one("google_compute_autoscaler", "pool").block("autoscaling_policy")
    if (
        scaler.attr("min_replicas") != "local.muscle.min_replicas"
        or scaler.attr("max_replicas") != "local.muscle.max_replicas"
    ):
        p.append("min/max replicas come from muscle.min_replicas/max_replicas")
    metrics = scaler.blocks("metric")
    if len(metrics) != 1:
        return [*p, "the autoscaler scales on one metric: the pool subscriptions' backlog"]
    metric = metrics[0]
    if metric.attr("name") != "pubsub.googleapis.com/subscription/num_undelivered_messages":
        p.append("the autoscaler metric must be num_undelivered_messages")
    if metric.attr("single_instance_assignment") != "local.muscle.backlog_per_vm":
        p.append("single_instance_assignment must be muscle.backlog_per_vm")
    if 'resource.labels.subscription_id = \\"${local.pool_subscription}\\"' not in str(metric.attr("filter")):
        p.append(f"the metric filter must select the pool subscription, is {metric.attr('filter')!r}")
    if m.local("pool_subscription") != INFRA.env("dev").muscle_subscription:
        p.append("the pool subscription name differs from the code's")
    template = m.one("google_compute_instance_template", "pool")
    if template.attr("machine_type") != "local.muscle.machine_type":
        p.append("machine_type comes from muscle.machine_type")
    if "cos-cloud" not in str(template.block("disk").attr("source_image")):
        p.append("the pool runs Container-Optimized OS")
    if template.block("network_interface").blocks("access_config"):
        p.append("pool VMs get no external address")
    config = str(m.local("cloud_config"))
    if "${var.image} python -m services.muscle" not in config:
        p.append("the VM must run the image with `python -m services.muscle`")
    if m.one("google_service_account", "vm").attr("account_id") != "jobrelay-muscle-vm":
        p.append("the pool VM account id must be jobrelay-muscle-vm")
    return p


def test_the_pool_scales_on_backlog_with_the_settings_of_environments_yaml() -> None:
    assert check_muscle(tfmodel.load_module(MUSCLE_DIR)) == []


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        (
            "single_instance_assignment = local.muscle.backlog_per_vm",
            "single_instance_assignment = 10",
            "backlog_per_vm",
        ),
        ("python -m services.muscle\n", "python -m services.pool\n", "services.muscle"),
        ("zone         = local.muscle.zone", 'zone         = "us-east1-b"', "muscle.zone"),
    ],
)
def test_the_pool_check_fails_on_a_broken_module(old: str, new: str, expect: str) -> None:
    texts = {p.name: p.read_text() for p in MUSCLE_DIR.glob("*.tf")}
    assert old in texts["main.tf"]
    texts["main.tf"] = texts["main.tf"].replace(old, new, 1)
    problems = check_muscle(tfmodel.load_module(MUSCLE_DIR, texts))
    assert any(expect in p for p in problems), problems


def test_each_env_lets_the_pool_vms_impersonate_only_its_muscle_account() -> None:
    assert (
        ENV_MODULE.local("pool_vm_sa")
        == "jobrelay-muscle-vm@${local.environments.muscle.project}.iam.gserviceaccount.com"
    )
    binding = ENV_MODULE.one("google_service_account_iam_member", "pool_impersonates_muscle")
    assert binding.attr("service_account_id") == 'google_service_account.sa["muscle"].name'
    assert binding.attr("role") == "roles/iam.serviceAccountTokenCreator"
    assert binding.attr("member") == "serviceAccount:${local.pool_vm_sa}"


# --- monitoring: the log-based metrics match what the code logs ------------------------------


def _format_string(path: Path, starts: str) -> str:
    """A logging format string of the code, found by its first words (it must exist)."""
    match = re.search(r'log\.\w+\(\s*"(' + re.escape(starts) + r'[^"]*)"', path.read_text())
    assert match, f"{path} no longer logs a line starting {starts!r}"
    return match.group(1)


def _entry(component: str, level: int, msg: str, args: tuple[Any, ...], labels: dict[str, Any]) -> dict[str, Any]:
    """The LogEntry Cloud Logging makes of one line of our JSON formatter."""
    record = logging.LogRecord("jobrelay.test", level, __file__, 1, msg, args, None)
    with jlog.labels(**labels):
        line = json.loads(jlog.CloudLoggingFormatter(component).format(record))
    special = {
        "severity",
        "logging.googleapis.com/labels",
        "logging.googleapis.com/trace",
        "logging.googleapis.com/spanId",
        "logging.googleapis.com/trace_sampled",
        "logging.googleapis.com/sourceLocation",
        "time",
    }
    return {
        "severity": line["severity"],
        "labels": line["logging.googleapis.com/labels"],
        "jsonPayload": {k: v for k, v in line.items() if k not in special},
    }


def matches(log_filter: str, entry: dict[str, Any]) -> bool:
    """Cloud Logging's query language, for the subset our metrics use: terms joined by AND."""
    for term in log_filter.split(" AND "):
        m = re.fullmatch(r'([\w.]+)(=|:)(?:"(.*)"|(\*))', term.strip())
        assert m, f"term outside the supported subset: {term!r}"
        path, op, text, star = m.groups()
        value: Any = entry
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if star:
            ok = value is not None
        elif op == "=":
            ok = value == text.replace('\\"', '"')
        else:
            ok = isinstance(value, str) and text.replace('\\"', '"').lower() in value.lower()
        if not ok:
            return False
    return True


def _metric_filter(name: str) -> str:
    bodies = [b for b in MONITORING.of_type("google_logging_metric").values()]
    for b in bodies:
        if b.attr("name") == name:
            return str(b.attr("filter")).replace('\\"', '"')
        fe = tfmodel.plain(b.raw.get("for_each"))
        if isinstance(fe, dict) and name.startswith("jobrelay/job_attempts_"):
            return str(fe[name.removeprefix("jobrelay/job_attempts_")]["filter"]).replace('\\"', '"')
    raise AssertionError(f"no log metric {name}")


REPO = tfmodel.REPO
JOB = {"env": "dev", "job_id": "j1", "type": "report", "class": "B", "attempt": 2}


def test_the_dead_letter_metric_counts_what_the_dead_letter_service_logs() -> None:
    fmt = _format_string(REPO / "services" / "deadletter" / "main.py", "dead letter %s")
    flt = _metric_filter("jobrelay/dead_letters")
    recorded = _entry(
        "deadletter",
        logging.WARNING,
        fmt,
        ("recorded", "j1", "report", "fp"),
        {"env": "dev", "job_id": "j1", "type": "report"},
    )
    repeat = _entry(
        "deadletter",
        logging.WARNING,
        fmt,
        ("already recorded", "j1", "report", "fp"),
        {"env": "dev", "job_id": "j1", "type": "report"},
    )
    assert matches(flt, recorded) and not matches(flt, repeat)
    assert {"env", "type"} <= set(recorded["labels"])


def test_the_attempt_metrics_count_what_the_runtime_logs() -> None:
    runtime, attempt = REPO / "jobrelay" / "runtime.py", REPO / "jobrelay" / "attempt.py"
    started = _entry("worker", logging.INFO, _format_string(runtime, "job %s started"), ("j1", 2, 5), JOB)
    failed = _entry(
        "worker",
        logging.WARNING,
        _format_string(attempt, "job %s attempt %d failed"),
        ("j1", 2, "ValueError", "boom", "retrying"),
        JOB,
    )
    assert matches(_metric_filter("jobrelay/job_attempts_started"), started)
    assert not matches(_metric_filter("jobrelay/job_attempts_started"), failed)
    assert matches(_metric_filter("jobrelay/job_attempts_failed"), failed)
    assert not matches(_metric_filter("jobrelay/job_attempts_failed"), started)
    for entry in (started, failed):
        assert {"env", "type", "class"} <= set(entry["labels"])


def test_the_filter_matcher_can_say_no() -> None:
    entry = _entry("api", logging.INFO, "job %s submitted", ("j1",), {"env": "dev"})
    assert not matches('labels.component="deadletter"', entry)
    assert not matches("jsonPayload.duration_seconds:*", entry)
    assert matches('labels.component="api" AND jsonPayload.message:"submitted"', entry)


def test_the_alerts_cover_dead_letters_failures_waiting_jobs_and_duration() -> None:
    assert set(MONITORING.of_type("google_monitoring_alert_policy")) == {
        "breaker_opened",
        "dead_letters",
        "failure_rate",
        "oldest_queued",
        "p95_duration",
    }
    assert (
        MONITORING.one("google_monitoring_dashboard", "jobrelay").attr("dashboard_json")
        == "jsonencode(local.dashboard)"
    )
    assert MONITORING.decodes("environments", "environments.yaml")
    assert MONITORING.decodes("classes", "classes.yaml")
