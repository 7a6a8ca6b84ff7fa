"""A pipeline document's sync lost to contention is tried again shortly, and never fails the step's end."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from jobrelay import flow as flow_module
from jobrelay import pipeline_doc
from jobrelay.flow import Flow
from jobrelay.infra_files import load_infra
from jobrelay.models import Job
from tests.fakes import StaticStates


def _step() -> Job:
    return Job.model_validate(
        {
            "id": "p0123456789abcdef-step-a",
            "env": "dev",
            "type": "echo",
            "class": "A",
            "status": "succeeded",
            "owner": "alice",
            "pipeline_id": "p0123456789abcdef",
            "step": "a",
            "created_at": "2026-12-02T00:00:00Z",
            "max_attempts": 3,
            "timeout_seconds": 60,
        }
    )


def _flow() -> Flow:
    stores: Any = {"dev": SimpleNamespace(env="dev", client=None)}  # sync is replaced: no client is used
    return Flow(
        load_infra(), stores, dispatch=lambda env, job: None, publisher_for=lambda env: None, states=StaticStates()
    )


def test_a_lost_sync_is_tried_again_until_it_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []
    done = threading.Event()

    def sync(client: Any, pipeline_id: str, job_ids: list[str], retention_days: int) -> None:
        calls.append((pipeline_id, list(job_ids)))
        if len(calls) < 3:
            raise gexc.Aborted("Failed to commit transaction in 20 attempts")
        done.set()

    monkeypatch.setattr(pipeline_doc, "sync", sync)
    monkeypatch.setattr(flow_module, "SYNC_RETRY_SECONDS", (0.01, 0.01, 0.01))
    _flow().step_moved("dev", _step())  # returns at once: the step's end goes on
    assert done.wait(5)
    assert calls == [("p0123456789abcdef", ["p0123456789abcdef-step-a"])] * 3


def test_a_sync_lost_every_time_gives_up_to_the_maintenance_pass(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def sync(*args: Any) -> None:
        calls.append(1)
        raise gexc.Aborted("Failed to commit transaction in 20 attempts")

    monkeypatch.setattr(pipeline_doc, "sync", sync)
    monkeypatch.setattr(flow_module, "SYNC_RETRY_SECONDS", (0.01, 0.01))
    _flow().step_moved("dev", _step())
    for _ in range(500):
        if "maintenance will sync it" in caplog.text:
            break
        threading.Event().wait(0.01)
    assert len(calls) == 3 and "maintenance will sync it" in caplog.text
