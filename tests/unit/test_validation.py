"""The id, key, path and nesting rules every edge applies (issue 14), checked without emulators."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from jobrelay import namespace
from jobrelay.api import Api
from jobrelay.deadletters import DeadLetterMessage, RedriveRequest
from jobrelay.dispatch import TaskMessage
from jobrelay.errors import SettingsError
from jobrelay.infra_files import load_infra
from jobrelay.models import JOB_ID, LABEL_KEY, MAX_PAYLOAD_DEPTH, JobSpec, depth_over, is_job_id
from jobrelay.settings import DEFAULT_INFRA_DIR, QUEUE_ID, SCHEDULE_NAME
from jobs.report import FIELD, ReportPayload
from tests.unit.test_settings import edit


@pytest.fixture
def infra_copy(tmp_path: Path) -> Path:
    d = tmp_path / "infra"
    shutil.copytree(DEFAULT_INFRA_DIR, d)
    return d


PACKAGES = [Path(__file__).resolve().parents[2] / d for d in ("jobrelay", "jobs", "services", "functions")]


@pytest.mark.parametrize(
    ("pattern", "good"),
    [
        (JOB_ID, "abcdef123456"),
        (LABEL_KEY, "team"),
        (QUEUE_ID, "jobrelay-a"),
        (SCHEDULE_NAME, "nightly"),
        (FIELD, "a.b"),
    ],
)
def test_validators_refuse_a_trailing_newline(pattern: re.Pattern[str], good: str) -> None:
    assert pattern.match(good)
    assert not pattern.match(good + "\n")


def test_no_validator_in_the_code_ends_in_a_bare_dollar() -> None:
    """`$` also matches before a trailing newline: patterns end in \\Z, or are used with fullmatch."""
    offenders = []
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            if "local/cloudtasks" in path.as_posix():  # the emulator's own names (not jobrelay's ids)
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"""re\.compile\(r?["'][^"']*\$["']""", line):
                    offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []


def test_routes_are_matched_whole() -> None:
    api = Api(None)  # type: ignore[arg-type]  # the routes need no deployment
    for path in ("/v1/envs/dev/jobs", "/v1/envs/dev/jobs/abcdef123456", "/v1/cron/maintenance"):
        assert any(rx.fullmatch(path) for _, rx, _ in api.routes)
        assert not any(rx.fullmatch(path + "\n") for _, rx, _ in api.routes)


@pytest.mark.parametrize("value", ["__x__", "a/b", "../x", ".", "..", "ABCDEF123456", "short", "x" * 101, "ok-id-1\n"])
def test_ids_the_store_cannot_hold_are_not_job_ids(value: str) -> None:
    assert not is_job_id(value)
    with pytest.raises(ValidationError, match="job id"):
        TaskMessage.model_validate({"env": "dev", "job_id": value})
    with pytest.raises(ValidationError, match="job id"):
        DeadLetterMessage.model_validate({"env": "dev", "job_id": value})


def nested(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = {"n": value} if i % 2 else [value]
    return value


def test_depth_is_counted_without_recursion() -> None:
    assert not depth_over(nested(20), 20)
    assert depth_over(nested(21), 20)
    assert depth_over(nested(100_000), 20)  # no RecursionError
    assert not depth_over({"a": 1, "b": [1, 2], "c": "x"}, 2)


def test_payload_deeper_than_firestore_holds_is_refused() -> None:
    JobSpec.model_validate({"type": "x", "payload": {"a": nested(MAX_PAYLOAD_DEPTH - 1)}})
    with pytest.raises(ValidationError, match="more than 20 levels"):
        JobSpec.model_validate({"type": "x", "payload": {"a": nested(MAX_PAYLOAD_DEPTH)}})


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"fingerprint": ""}, "fingerprint"),
        ({"fingerprint": " "}, "fingerprint"),
        ({"fingerprint": "a" * 65}, "fingerprint"),
        ({"fingerprint": "abc\n"}, "fingerprint"),
        ({"job_ids": []}, "empty list"),
        ({"job_ids": ["__x__"]}, "not a job id"),
        ({"job_ids": ["abcdef123456"] * 501}, "at most 500"),
        ({"all": "true"}, "all"),
        ({"all": 1}, "all"),
    ],
)
def test_redrive_selectors_never_mean_everything_by_accident(body: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        RedriveRequest.model_validate(body)


def test_only_an_explicit_all_selects_everything() -> None:
    assert RedriveRequest.model_validate({"all": True}).selectors() == 1
    assert RedriveRequest.model_validate({"all": False}).selectors() == 0
    assert RedriveRequest.model_validate({"fingerprint": "3f78a1b2c3d4e5f6"}).selectors() == 1


@pytest.mark.parametrize(
    "path",
    ["jobs", "job_results", "dead_letters", "schedules", "pipelines", "job_requests", "access_log", "jobrelay_x"],
)
def test_jobrelays_own_collections_are_owned(path: str) -> None:
    assert namespace.owned(path) and namespace.owned(f"{path}/doc/sub")
    assert not namespace.owned(f"teams/t1/{path}")  # a team's own subcollection of that name is not ours


def test_every_collection_jobrelay_writes_is_owned() -> None:
    from jobrelay import cron, deadletters, store

    for name in (store.JOBS, store.RESULTS, deadletters.DEAD_LETTERS, cron.SCHEDULES, "jobrelay_flaky_runs"):
        assert namespace.owned(name), name


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"collection": "orders", "output": "jobs"}, "jobrelay owns"),
        ({"collection": "jobs"}, "jobrelay owns"),
        ({"collection": "orders", "output": "other"}, "report_outputs"),
        ({"collection": "orders", "output": "__x__"}, "reserved"),
        ({"collection": "a/b"}, "collection path"),
        ({"collection": "orders", "group_by": "status\n"}, "field path"),
    ],
)
def test_report_payload_refuses_what_it_may_not_read_or_write(payload: dict[str, Any], says: str) -> None:
    infra = load_infra()
    with pytest.raises(ValidationError, match=says):
        ReportPayload.model_validate(payload, context={"infra": infra, "env": "dev"})
    ReportPayload.model_validate({"collection": "orders"}, context={"infra": infra, "env": "dev"})


def test_settings_refuse_a_report_output_jobrelay_owns(infra_copy: Path) -> None:
    edit(infra_copy / "environments.yaml", lambda d: d["defaults"].update(report_outputs=["reports", "jobs"]))
    with pytest.raises(SettingsError, match="jobrelay owns") as err:
        load_infra(infra_copy)
    assert err.value.key.endswith("report_outputs")


def test_every_script_says_who_may_run_it_and_dangerous_ones_are_for_operators() -> None:
    scripts = load_infra().scripts
    assert scripts["firestore-export"].operators_only and scripts["app-build"].operators_only
    assert scripts["selfcheck"].any_user
    assert scripts["app-tests"].roles == ("developer",)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["scripts"]["selfcheck"].pop("envs"), "Field required"),
        (lambda d: d["scripts"]["selfcheck"].update(roles=["x"]), "not both"),
    ],
)
def test_script_access_rules_are_explicit(infra_copy: Path, change: Any, reason: str) -> None:
    edit(infra_copy / "scripts.yaml", change)
    with pytest.raises(SettingsError, match=reason):
        load_infra(infra_copy)


def test_a_script_that_names_no_access_is_for_operators_only(infra_copy: Path) -> None:
    edit(infra_copy / "scripts.yaml", lambda d: d["scripts"]["selfcheck"].pop("any_user"))
    assert load_infra(infra_copy).scripts["selfcheck"].operators_only
