"""checkov finds nothing in terraform/ that is not skipped with a written reason."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra import tfmodel

SCRIPT = Path(__file__).resolve().parent / "checkov.sh"


def run_checkov(directory: Path) -> dict[str, Any]:
    """checkov's JSON report for one directory (checkov is installed on first use)."""
    proc = subprocess.run(
        [str(SCRIPT), str(directory), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tfmodel.REPO,
    )
    # checkov exits 1 when a check fails; anything else without a report is a broken run.
    start = proc.stdout.find("{")
    assert start != -1, f"checkov gave no report (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout[start:])
    return (
        report
        if isinstance(report, dict)
        else {
            "results": {
                "failed_checks": [c for r in report for c in r["results"]["failed_checks"]],
                "skipped_checks": [c for r in report for c in r["results"]["skipped_checks"]],
                "passed_checks": [c for r in report for c in r["results"]["passed_checks"]],
            }
        }
    )


def unexplained(report: dict[str, Any]) -> list[str]:
    """Failed checks, and skips whose `#checkov:skip=ID:reason` gives no reason."""
    res = report.get("results", {})
    out = [f"FAILED {c['check_id']} {c['resource']} ({c['file_path']})" for c in res.get("failed_checks", [])]
    for c in res.get("skipped_checks", []):
        reason = (c.get("check_result") or {}).get("suppress_comment") or ""
        if len(reason.strip()) < 20 or reason.strip().lower() == "no comment provided":
            out.append(f"SKIPPED WITHOUT A REASON {c['check_id']} {c['resource']}")
    return out


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_checkov(tfmodel.TERRAFORM)


# The first run installs checkov into .venv-checkov (a minute or two), hence the longer timeout.
@pytest.mark.timeout(900)
def test_checkov_reports_no_unexplained_failure(report: dict[str, Any]) -> None:
    assert unexplained(report) == []
    assert report["results"]["passed_checks"], "checkov ran no check at all"


BROKEN = """
resource "google_pubsub_topic" "plain" {
  name = "t"
}

resource "google_pubsub_topic" "lazy" {
  #checkov:skip=CKV_GCP_83
  name = "u"
}
"""


@pytest.mark.timeout(900)
def test_the_checkov_gate_fails_on_a_broken_sample(tmp_path: Path) -> None:
    shutil.rmtree(tmp_path, ignore_errors=True)
    tmp_path.mkdir()
    (tmp_path / "main.tf").write_text(BROKEN)
    problems = unexplained(run_checkov(tmp_path))
    assert any(p.startswith("FAILED CKV_GCP_83 google_pubsub_topic.plain") for p in problems), problems
    assert any(p.startswith("SKIPPED WITHOUT A REASON CKV_GCP_83 google_pubsub_topic.lazy") for p in problems), problems
