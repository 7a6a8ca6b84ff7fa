"""bench: figures recorded by each benchmark and gathered into bench/results.json and results.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.__main__ as runner
from bench import common


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(runner, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(runner, "SUMMARY_JSON", tmp_path / "results.json")
    monkeypatch.setattr(runner, "SUMMARY_TABLE", tmp_path / "results.md")
    monkeypatch.setattr(runner, "REPO", tmp_path)
    return tmp_path


def test_a_figure_passes_or_misses_its_budget(results: Path) -> None:
    rep = common.Report("latency", "test")
    assert rep.figure("e2e_latency_ratio.p50", 1.29, budget=1.3)
    assert rep.figure("e2e_latency_ratio.p99", 1.5, budget=1.5)  # at the budget is within it
    assert not rep.figure("submit_latency_ratio.p50", 1.72, budget=1.3)
    assert rep.figure("throughput.single_jobs_per_s", 158.0, unit="jobs/s")  # no budget: context only
    assert rep.figure("cloudtasks_emulator.dispatch_per_s", 600, at_least=500)
    assert not rep.figure("cloudtasks_emulator.dispatch_per_s_low", 499, at_least=500)
    rep.write()
    written = json.loads((results / "results" / "latency.json").read_text())
    assert [f["passed"] for f in written["figures"]] == [True, True, False, None, True, False]
    assert (results / "results" / "latency.txt").read_text().startswith("test, ")


def test_gather_nests_metrics_and_marks_misses_in_the_table(results: Path) -> None:
    cost = common.Report("cost", "cost")
    cost.figure("ops_per_job.single.firestore_writes", 3.0, unit="per job", budget=3.0)
    cost.write()
    cold = common.Report("coldstart", "cold")
    cold.figure("cold_start_ratio.api", 1.47, budget=1.3, note="359 ms / 244 ms")
    cold.write()

    summary = runner.gather()

    on_disk = json.loads((results / "results.json").read_text())
    assert on_disk["metrics"] == summary["metrics"]
    assert summary["metrics"]["ops_per_job"]["single.firestore_writes"]["passed"] is True
    api = summary["metrics"]["cold_start_ratio"]["api"]
    assert (api["value"], api["budget"], api["passed"], api["benchmark"]) == (1.47, 1.3, False, "coldstart")
    assert set(summary["runs"]) == {"cost", "coldstart"}
    table = (results / "results.md").read_text()
    assert "| cold_start_ratio | api | 1.47 | 1.3 | **MISS** |" in table
    assert "| ops_per_job | single.firestore_writes | 3 per job | 3.0 | pass |" in table


def test_a_missed_budget_is_reported_and_only_a_benchmark_that_could_not_run_fails(
    results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import time

    class Done:
        def __init__(self, returncode: int) -> None:
            self.returncode = returncode

    real_run = subprocess.run

    def fake_run(argv: list[str], **kwargs: object) -> object:
        if argv[0] == "git":  # the report's commit
            return real_run(argv, **kwargs)  # type: ignore[call-overload]
        name = argv[-1].removeprefix("bench.")
        if name == "cost":  # ran, and missed a budget
            rep = common.Report("cost", "cost")
            rep.figure("ops_per_job.single.firestore_writes", 4.0, budget=3.0)
            rep.write()
            return Done(1)
        return Done(2)  # crashed before writing anything

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert runner.main(["cost"]) == 0
    table = (results / "results.md").read_text()
    assert "| ops_per_job | single.firestore_writes | 4 | 3.0 | **MISS** |" in table
    assert runner.main(["cost", "latency"]) == 1  # latency wrote no results of this run
    assert runner.outcome("latency", 2, time.time()).startswith(runner.COULD_NOT_RUN)
