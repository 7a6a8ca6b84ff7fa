"""Every argument in terraform/ is one the pinned hashicorp/google provider documents."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.infra import tfmodel
from tests.infra.schema_check import check_module, load_schema, pinned_versions

SCHEMA = load_schema()
MODULES = tfmodel.all_modules()


def test_the_allow_list_is_for_the_pinned_version() -> None:
    assert SCHEMA["provider"] == {"name": "registry.terraform.io/hashicorp/google", "version": "6.50.0"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_pins_the_provider_the_allow_list_was_built_from(name: str) -> None:
    pins = pinned_versions(MODULES[name])
    assert pins == [("hashicorp/google", SCHEMA["provider"]["version"])], pins


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_argument_is_in_the_provider_schema(name: str) -> None:
    assert check_module(MODULES[name], SCHEMA) == []


def test_terraform_has_every_expected_module_and_root() -> None:
    assert set(MODULES) == {
        "modules/environment",
        "modules/monitoring",
        "modules/muscle",
        "modules/pipeline",
        "envs/dev",
        "envs/stg",
        "envs/prod",
    }


BROKEN = """
resource "google_cloud_tasks_queue" "q" {
  name = "x"
  rate_limit {
    max_dispatches_per_second = 1
  }
  retry_config {
    max_retries = 3
    min_backoff = "1s"
  }
  lifecycle {
    ignore_change = [name]
  }
}
resource "google_pubsub_subscription" "s" {
  name  = "s"
  topic = "t"
  push_config = { push_endpoint = "https://x" }
  dynamic "dead_letter" {
    for_each = []
    content {}
  }
}
resource "google_made_up_thing" "m" {
  name = "m"
}
"""


def test_the_checker_names_each_wrong_argument() -> None:
    module = tfmodel.load_module(tfmodel.TERRAFORM / "broken", {"main.tf": BROKEN})
    problems = check_module(module, SCHEMA)
    expected = [
        r"google_cloud_tasks_queue\.q: unknown block 'rate_limit'",
        r"google_cloud_tasks_queue\.q\.retry_config: unknown argument 'max_retries'",
        r"google_cloud_tasks_queue\.q: lifecycle has no 'ignore_change'",
        r"google_pubsub_subscription\.s: unknown argument 'push_config' \(it is a block",
        r"google_pubsub_subscription\.s: dynamic 'dead_letter' is not a block",
        r"google_made_up_thing\.m: resource type not in the allow-list",
    ]
    for pattern in expected:
        assert any(re.search(pattern, p) for p in problems), (pattern, problems)
    assert len(problems) == len(expected), problems


def test_no_terraform_file_is_hidden_by_gitignore() -> None:
    """A module git ignores (say one named build/) would be missing from every clean clone."""
    files = [str(p.relative_to(tfmodel.REPO)) for p in tfmodel.TERRAFORM.rglob("*.tf")]
    proc = subprocess.run(
        ["git", "check-ignore", "--no-index", *files],
        capture_output=True,
        text=True,
        cwd=tfmodel.REPO,
        timeout=30,
    )
    assert proc.stdout == "", f"ignored by .gitignore:\n{proc.stdout}"
