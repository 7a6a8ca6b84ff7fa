"""One job's story in the logs: the trace id from submit to the worker, and stats that match."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import requests

from jobrelay.local.stack import Stack
from tests.support import ApiUser


def log_entries(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_one_trace_id_follows_a_job_through_api_and_worker_logs(stack: Stack, alice: ApiUser) -> None:
    trace_id = secrets.token_hex(16)
    r = alice.submit(
        {"type": "flaky", "payload": {"fail_times": 1}},
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    assert r.status_code == 202 and r.headers["X-Trace-Id"] == trace_id
    job = r.json()
    assert job["trace_id"] == trace_id
    alice.wait(job["id"])
    wanted = f"projects/singular-dream-dev/traces/{trace_id}"
    api = [e for e in log_entries(stack.logs / "api.log") if e.get("logging.googleapis.com/trace") == wanted]
    worker = [e for e in log_entries(stack.logs / "worker.log") if e.get("logging.googleapis.com/trace") == wanted]
    assert any("submitted" in e["message"] for e in api)
    messages = [e["message"] for e in worker]
    assert any("started (attempt 1" in m for m in messages) and any("started (attempt 2" in m for m in messages)
    assert any("succeeded" in m for m in messages)
    for e in worker:
        assert e["severity"] in ("INFO", "WARNING", "ERROR") and e["time"].endswith("Z")
        labels = e["logging.googleapis.com/labels"]
        assert labels["job_id"] == job["id"] and labels["env"] == "dev"
    run_lines = [e for e in worker if "started" in e["message"] or "succeeded" in e["message"]]
    assert all({"type", "class", "attempt"} <= set(e["logging.googleapis.com/labels"]) for e in run_lines)
    assert all(e.get("logging.googleapis.com/spanId") for e in api + worker)
    succeeded = next(e for e in worker if "succeeded" in e["message"])
    assert isinstance(succeeded["duration_seconds"], float)


def stats(admin: ApiUser) -> dict:
    r = requests.get(admin.url("/stats"), headers=admin.headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_stats_match_what_was_submitted(stack: Stack) -> None:
    # stg runs no test job types and few tests use it: compare before and after our own jobs.
    admin = ApiUser(stack, "stg", "stg-admin", admin=True, roles=("reporter",))
    before = stats(admin)
    ok = [
        admin.submit(
            {
                "type": "script",
                "payload": {"script": "selfcheck", "args": {"lines": "1", "pause": "0", "exit_code": "0"}},
            }
        ).json()["id"]
        for _ in range(3)
    ]
    bad = admin.submit(
        {
            "type": "script",
            "payload": {"script": "selfcheck", "args": {"lines": "1", "pause": "0", "exit_code": "4"}},
        }
    ).json()["id"]
    reports = [
        admin.submit({"type": "report", "payload": {"collection": "nothing-here"}}).json()["id"] for _ in range(2)
    ]
    waiting = admin.submit({"type": "report", "payload": {"collection": "later"}, "delay_seconds": 900}).json()
    for job_id in [*ok, bad, *reports]:
        admin.wait(job_id, timeout=60)
    after = stats(admin)
    d = lambda *path: _get(after, path) - _get(before, path)  # noqa: E731
    assert d("counts", "by_status_and_class", "succeeded", "D") == 3
    assert d("counts", "by_status_and_class", "succeeded", "B") == 2
    assert d("counts", "by_status_and_class", "dead_lettered", "D") == 1
    assert d("counts", "by_status_and_class", "queued", "B") == 1
    assert d("counts", "total") == 7
    assert d("recent", "succeeded") == 5 and d("recent", "dead_lettered") == 1
    assert after["recent"]["duration_seconds"]["p50"] is not None
    assert after["recent"]["duration_seconds"]["p95"] >= after["recent"]["duration_seconds"]["p50"]
    assert after["oldest_queued"] is not None and after["oldest_queued"]["age_seconds"] >= 0
    assert waiting["id"]


def _get(data: dict, path: tuple) -> int:
    for key in path:
        data = data[key]
    return int(data)  # type: ignore[arg-type]


def test_stats_are_for_operators(alice: ApiUser) -> None:
    r = requests.get(alice.url("/stats"), headers=alice.headers, timeout=30)
    assert r.status_code == 403
