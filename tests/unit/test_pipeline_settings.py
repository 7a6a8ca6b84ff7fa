"""A schedule that starts a pipeline: checked when the settings load (its graph) and when the API starts
(each step's type and payload), with the file, key and reason."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import jobrelay.builtin  # noqa: F401  (registers the housekeeping types the built-in schedules run)
import jobs  # noqa: F401  (registers the offered job types)
from jobrelay.cron import check_schedules
from jobrelay.errors import SettingsError
from jobrelay.infra_files import load_infra
from jobrelay.registry import registry
from jobrelay.settings import DEFAULT_INFRA_DIR

STEPS = {
    "first": {"type": "echo", "payload": {"message": "a"}},
    "then": {"type": "echo", "payload": {"message": "b"}, "after": ["first"]},
}


def infra_with(tmp_path: Path, schedule: dict[str, Any]) -> Path:
    d = tmp_path / "infra"
    shutil.copytree(DEFAULT_INFRA_DIR, d)
    data = yaml.safe_load((d / "schedules.yaml").read_text())
    data["schedules"]["nightly"] = {"cron": "0 2 * * *", "envs": ["dev"], **schedule}
    (d / "schedules.yaml").write_text(yaml.safe_dump(data))
    return d


def test_a_schedule_with_a_pipeline_loads_and_its_steps_pass_the_start_up_check(tmp_path: Path) -> None:
    infra = load_infra(infra_with(tmp_path, {"pipeline": {"steps": STEPS}}))
    assert infra.schedules["nightly"].type is None and infra.schedules["nightly"].pipeline == {"steps": STEPS}
    check_schedules(infra, registry)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ({"type": "echo", "payload": {"message": "x"}, "pipeline": {"steps": STEPS}}, "exactly one"),
        ({}, "exactly one"),
        ({"pipeline": {"steps": STEPS}, "payload": {"message": "x"}}, "payload and class belong to a job schedule"),
        ({"pipeline": {"steps": "nope"}}, "a pipeline is"),
        (
            {"pipeline": {"steps": {"a": {"type": "echo", "after": ["b"]}, "b": {"type": "echo", "after": ["a"]}}}},
            "pipeline: steps form a cycle: a -> b -> a",
        ),
        ({"pipeline": {"steps": {"a": {"type": "echo", "after": ["zz"]}}}}, "no step 'zz'"),
    ],
)
def test_a_bad_pipeline_schedule_fails_when_the_settings_load(
    tmp_path: Path, schedule: dict[str, Any], reason: str
) -> None:
    with pytest.raises(SettingsError) as exc:
        load_infra(infra_with(tmp_path, schedule))
    assert exc.value.key.startswith("schedules.nightly") and reason in exc.value.reason
    assert exc.value.file.endswith("schedules.yaml")


@pytest.mark.parametrize(
    ("step", "key", "reason"),
    [
        ({"type": "nope"}, "schedules.nightly.pipeline.steps.then.type", "unknown job type 'nope'"),
        ({"type": "echo", "payload": {}}, "schedules.nightly.pipeline.steps.then.payload.message", "Field required"),
    ],
)
def test_a_pipeline_schedules_step_is_checked_as_a_job_schedule_at_start_up(
    tmp_path: Path, step: dict[str, Any], key: str, reason: str
) -> None:
    infra = load_infra(infra_with(tmp_path, {"pipeline": {"steps": {**STEPS, "then": {**step, "after": ["first"]}}}}))
    with pytest.raises(SettingsError) as exc:
        check_schedules(infra, registry)
    assert (exc.value.key, exc.value.reason) == (key, reason)
