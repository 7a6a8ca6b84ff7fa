"""The OpenAPI document is current, valid, covers every route, and real answers match it."""

from __future__ import annotations

import json
import re
import time

import jsonschema
import pytest
import requests
from openapi_spec_validator import validate

from jobrelay import openapi
from jobrelay.api import Api
from jobrelay.local.stack import Stack
from jobrelay.routes import CONSOLE_ROUTES
from tests.e2e.test_cron import minute, tick
from tests.support import ApiUser

DOC = json.loads(openapi.OUT.read_text())
SAMPLE = {
    "env": "dev",
    "job_id": "abc123def456",
    "name": "maintenance",
    "kind": "job",
    "source_id": "abc123def456",
    "pipeline_id": "p0123456789abcdef",
    "job_type": "echo",
    "operation_id": "op-0123456789abcdef0123",
}


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], template)


def test_committed_document_is_what_the_models_build() -> None:
    assert openapi.OUT.read_text() == openapi.render(), "run: python -m jobrelay.openapi"


def test_document_is_valid_openapi() -> None:
    validate(DOC)


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    documented = {(m.upper(), concrete(p)) for p, ops in DOC["paths"].items() for m in ops if m != "parameters"}
    api = Api(None)  # type: ignore[arg-type]  # the routes need no deployment
    console = [r.pattern().pattern for r in CONSOLE_ROUTES]  # the console's files: docs/console.md, not the API
    routes = [(m, rx) for m, rx, _ in api.routes if rx.pattern not in console]
    for method, path in documented:
        assert any(m == method and rx.fullmatch(path) for m, rx in routes), (method, path)
    for method, rx in routes:
        assert any(m == method and rx.fullmatch(p) for m, p in documented), (method, rx.pattern)


def check(resp: requests.Response, template: str, method: str) -> None:
    op = DOC["paths"][template][method.lower()]
    assert str(resp.status_code) in op["responses"], (template, method, resp.status_code, resp.text[:300])
    schema = op["responses"][str(resp.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(resp.json(), {**schema, "components": DOC["components"]}, cls=jsonschema.Draft202012Validator)


def test_real_answers_match_the_document(stack: Stack, alice: ApiUser, bob: ApiUser, admin: ApiUser) -> None:
    base = stack.url("api")
    jobs = "/v1/envs/{env}/jobs"
    one = "/v1/envs/{env}/jobs/{job_id}"
    key = f"openapi-{time.time_ns()}"
    r = alice.submit({"type": "echo", "payload": {"message": "doc"}, "idempotency_key": key})
    check(r, jobs, "POST")
    check(alice.submit({"type": "echo", "payload": {"message": "doc"}, "idempotency_key": key}), jobs, "POST")
    job = r.json()
    check(alice.submit({"type": "echo", "payload": {}}), jobs, "POST")
    check(requests.post(alice.url("/jobs"), data=b"{", headers=alice.headers, timeout=10), jobs, "POST")
    check(requests.post(alice.url("/jobs"), json={}, timeout=10), jobs, "POST")
    check(alice.batch([{"type": "echo", "payload": {"message": "b"}}]), jobs + ":batch", "POST")
    alice.wait(job["id"])
    check(alice.get(job["id"]), one, "GET")
    check(bob.get(job["id"]), one, "GET")
    check(alice.get("nope-not-a-job"), one, "GET")
    check(alice.list(page_size=2), jobs, "GET")
    check(alice.cancel(job["id"]), one + ":cancel", "POST")
    waiting = alice.submit({"type": "sleep", "payload": {"seconds": 30}, "delay_seconds": 60}).json()
    check(alice.cancel(waiting["id"]), one + ":cancel", "POST")
    dead = alice.submit({"type": "flaky", "payload": {"fail_times": 1, "fatal": True}}).json()
    alice.wait(dead["id"])
    deadline = time.monotonic() + 30
    while requests.get(admin.url(f"/dead-letters/{dead['id']}"), headers=admin.headers, timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    check(
        requests.get(admin.url("/dead-letters"), headers=admin.headers, timeout=10),
        "/v1/envs/{env}/dead-letters",
        "GET",
    )
    check(
        requests.get(admin.url(f"/dead-letters/{dead['id']}"), headers=admin.headers, timeout=10),
        "/v1/envs/{env}/dead-letters/{job_id}",
        "GET",
    )
    check(
        requests.post(
            admin.url("/dead-letters:redrive"),
            json={"job_ids": [dead["id"]], "dry_run": True},
            headers=admin.headers,
            timeout=10,
        ),
        "/v1/envs/{env}/dead-letters:redrive",
        "POST",
    )
    check(requests.get(admin.url("/stats"), headers=admin.headers, timeout=30), "/v1/envs/{env}/stats", "GET")
    check(requests.get(admin.url("/queues"), headers=admin.headers, timeout=30), "/v1/envs/{env}/queues", "GET")
    check(requests.get(alice.url("/queues"), headers=alice.headers, timeout=30), "/v1/envs/{env}/queues", "GET")
    check(requests.get(admin.url("/types"), headers=admin.headers, timeout=30), "/v1/envs/{env}/types", "GET")
    source = "/v1/envs/{env}/promotions/{kind}/{source_id}"
    for to in ("stg", "prod"):  # the spec; a skipped env (422)
        r = requests.get(
            admin.url(f"/promotions/job/{job['id']}"), params={"to": to}, headers=admin.headers, timeout=30
        )
        check(r, source, "GET")
    promoted = requests.post(
        f"{base}/v1/envs/stg/promotions",
        json={"from": {"env": "dev", "kind": "job", "id": job["id"]}, "spec": {"type": "echo", "payload": {}}},
        headers=ApiUser(stack, "stg", "root", admin=True).headers,
        timeout=30,
    )
    check(promoted, "/v1/envs/{env}/promotions", "POST")  # stg offers no echo: 422
    record = requests.post(
        admin.url(f"/promotions/job/{job['id']}:record"),
        json={"to": {"env": "stg", "id": "p" * 24}},
        headers=admin.headers,
        timeout=30,
    )
    check(record, source + ":record", "POST")
    check(tick(stack, "test-echo", minute(-50)), "/v1/cron/{name}", "POST")
    check(tick(stack, "nope", minute(-50)), "/v1/cron/{name}", "POST")
    check(requests.get(f"{base}/v1/schedules", timeout=30), "/v1/schedules", "GET")
    r = requests.get(f"{base}/v1/openapi.json", timeout=10)
    assert r.status_code == 200 and r.json() == DOC


@pytest.mark.parametrize("bad", ["/v1/envs/dev/jobs/x:cancel"])
def test_unknown_job_answers_documented_404(alice: ApiUser, bad: str) -> None:
    r = requests.post(f"{alice.stack.url('api')}{bad}", headers=alice.headers, timeout=10)
    check(r, "/v1/envs/{env}/jobs/{job_id}:cancel", "POST")


def test_flow_control_answers_match_the_document(alice: ApiUser, admin: ApiUser) -> None:
    """Pause, resume, types, a bulk cancel (dry run, started, nothing matched), its operation, a waiting job."""
    types, pause, resume = (
        "/v1/envs/{env}/types",
        "/v1/envs/{env}/types/{job_type}:pause",
        "/v1/envs/{env}/types/{job_type}:resume",
    )
    bulk, operation = "/v1/envs/{env}/jobs:cancel", "/v1/envs/{env}/operations/{operation_id}"

    def post(user: ApiUser, path: str, body: object) -> requests.Response:
        return requests.post(user.url(path), json=body, headers=user.headers, timeout=30)

    check(requests.get(admin.url("/types"), headers=admin.headers, timeout=30), types, "GET")
    check(requests.get(alice.url("/types"), headers=alice.headers, timeout=30), types, "GET")
    check(post(admin, "/types/flaky:pause", {"reason": "openapi check"}), pause, "POST")
    check(post(admin, "/types/flaky:pause", {"reason": "again"}), pause, "POST")
    check(post(admin, "/types/nope:pause", {"reason": "x"}), pause, "POST")
    check(requests.post(admin.url("/types/flaky:resume"), headers=admin.headers, timeout=30), resume, "POST")
    check(post(admin, "/types/flaky:resume", {}), resume, "POST")
    label = f"openapi-{time.time_ns()}"
    keyed = {
        "type": "sleep",
        "payload": {"seconds": 5},
        "labels": {"doc": label},
        "concurrency": {"key": label, "limit": 1},
    }
    alice.submit(keyed)
    waiting = alice.submit(keyed)
    check(waiting, "/v1/envs/{env}/jobs", "POST")
    assert waiting.json()["waiting_for"]["kind"] == "concurrency"
    flt = {"labels": {"doc": label}}
    check(post(alice, "/jobs:cancel", {"filter": flt, "dry_run": True}), bulk, "POST")
    started = post(alice, "/jobs:cancel", {"filter": flt})
    check(started, bulk, "POST")
    check(post(alice, "/jobs:cancel", {"filter": {"labels": {"doc": "nothing-has-this"}}}), bulk, "POST")
    check(post(alice, "/jobs:cancel", {"filter": {}}), bulk, "POST")
    op_id = started.json()["operation"]["id"]
    check(requests.get(alice.url(f"/operations/{op_id}"), headers=alice.headers, timeout=30), operation, "GET")
    check(
        requests.get(alice.url("/operations/op-0123456789abcdef0123"), headers=alice.headers, timeout=30),
        operation,
        "GET",
    )
