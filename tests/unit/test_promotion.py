"""Promotion between envs on in-memory fakes: the direction rule, the three steps, and refusals that write nothing.

The same steps run against the real emulators through the CLI in tests/e2e/test_promote.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobrelay.api import Api
from jobrelay.errors import Unprocessable
from jobrelay.promotion import check_direction, next_env
from jobrelay.wsgi import Request, Response
from tests.fakes import fake_deployment

REPORT = {"type": "report", "payload": {"collection": "orders"}, "labels": {"team": "data", "schedule": "nightly"}}
REPORT_STEP = {"type": "report", "payload": {"collection": "orders"}}
PIPELINE = {"name": "nightly", "labels": {}, "steps": {"a": REPORT_STEP, "b": {**REPORT_STEP, "after": ["a"]}}}


@pytest.fixture
def d() -> Any:
    return fake_deployment(("dev", "stg", "prod"))


@pytest.fixture
def api(d: Any) -> Api:
    return Api(d)


def call(api: Api, method: str, path: str, body: Any = None, token: str = "root+admin", **query: str) -> Response:
    data = b"" if body is None else json.dumps(body).encode()
    headers = {"authorization": f"Bearer {token}"}
    return api.handle(Request(method=method, path=path, headers=headers, query=query, body=data))


def docs(d: Any) -> dict[str, int]:
    return {env: len(store.docs) for env, store in d.stores.items()}


def source_job(api: Api) -> str:
    r = call(api, "POST", "/v1/envs/dev/jobs", REPORT)
    assert r.status == 202, r.body
    return str(r.body["id"])


@pytest.mark.parametrize(
    ("source", "target", "says"),
    [
        ("dev", "prod", "dev -> prod skips stg: promote to stg first, then promote that stg job to prod"),
        ("stg", "dev", "stg -> dev goes backwards"),
        ("prod", "dev", "goes backwards"),
        ("dev", "dev", "goes to another env"),
        ("dev", "qa", "unknown env 'qa'"),
    ],
)
def test_only_the_next_env_is_a_promotion(source: str, target: str, says: str) -> None:
    with pytest.raises(Unprocessable, match=says):
        check_direction(source, target)


def test_the_chain_is_dev_stg_prod() -> None:
    assert [next_env(e) for e in ("dev", "stg", "prod")] == ["stg", "prod", None]
    check_direction("dev", "stg")
    check_direction("stg", "prod")


def test_three_steps_run_the_spec_in_the_next_env_and_link_both(api: Api, d: Any) -> None:
    job_id = source_job(api)
    src = call(api, "GET", f"/v1/envs/dev/promotions/job/{job_id}", to="stg")
    assert src.status == 200, src.body
    # The spec is what the job is; the `schedule` label stays behind (stg's cron must not take the job).
    assert src.body["spec"]["type"] == "report" and "schedule" not in src.body["spec"]["labels"]
    made = call(api, "POST", "/v1/envs/stg/promotions", {"from": src.body["from"], "spec": src.body["spec"]})
    assert made.status == 202, made.body
    new = made.body
    assert new["env"] == "stg" and new["owner"] == "root" and new["status"] == "queued"
    assert new["promoted_from"]["env"] == "dev" and new["promoted_from"]["id"] == job_id
    assert new["labels"] == {"team": "data", "promoted_from": "dev"}
    assert d.dispatchers["stg"].dispatched == [(new["id"], 0, None)]
    rec = call(api, "POST", f"/v1/envs/dev/promotions/job/{job_id}:record", {"to": {"env": "stg", "id": new["id"]}})
    assert rec.status == 200, rec.body
    assert [(link["env"], link["id"]) for link in rec.body["promoted_to"]] == [("stg", new["id"])]
    assert d.stores["dev"].get(job_id).promoted_to[0].id == new["id"]
    # Again: the same job (200, nothing new run), the link recorded once.
    again = call(api, "POST", "/v1/envs/stg/promotions", {"from": src.body["from"], "spec": src.body["spec"]})
    assert again.status == 200 and again.body["id"] == new["id"] and len(d.stores["stg"].docs) == 1
    call(api, "POST", f"/v1/envs/dev/promotions/job/{job_id}:record", {"to": {"env": "stg", "id": new["id"]}})
    assert len(d.stores["dev"].get(job_id).promoted_to) == 1


def test_refusals_write_nothing_anywhere(api: Api, d: Any) -> None:
    job_id = source_job(api)
    spec = call(api, "GET", f"/v1/envs/dev/promotions/job/{job_id}", to="stg").body["spec"]
    before = docs(d)
    cases = [
        # step 1: skipping an env, backwards, unknown id, a non-operator
        ("GET", f"/v1/envs/dev/promotions/job/{job_id}", None, "root+admin", {"to": "prod"}, 422, "skips stg"),
        ("GET", f"/v1/envs/stg/promotions/job/{job_id}", None, "root+admin", {"to": "dev"}, 422, "backwards"),
        ("GET", "/v1/envs/dev/promotions/job/nope-not-there", None, "root+admin", {"to": "stg"}, 404, "not found"),
        ("GET", f"/v1/envs/dev/promotions/job/{job_id}", None, "alice", {"to": "stg"}, 403, "admin claim"),
        ("GET", f"/v1/envs/dev/promotions/job/{job_id}", None, "root+admin", {}, 422, "?to=ENV"),
        ("GET", f"/v1/envs/dev/promotions/thing/{job_id}", None, "root+admin", {"to": "stg"}, 404, "unknown kind"),
        # step 2 of a pipeline: into prod from dev, fields a promoted pipeline or step does not carry
        (
            "POST",
            "/v1/envs/prod/promotions",
            {"from": {"env": "dev", "kind": "pipeline", "id": "p" * 24}, "spec": PIPELINE},
            "root+admin",
            {},
            422,
            "skips stg",
        ),
        (
            "POST",
            "/v1/envs/stg/promotions",
            {"from": {"env": "dev", "kind": "pipeline", "id": "p" * 24}, "spec": {**PIPELINE, "idempotency_key": "k"}},
            "root+admin",
            {},
            422,
            "spec.idempotency_key: a promoted pipeline holds only name, labels, steps",
        ),
        (
            "POST",
            "/v1/envs/stg/promotions",
            {
                "from": {"env": "dev", "kind": "pipeline", "id": "p" * 24},
                "spec": {**PIPELINE, "steps": {"a": {**REPORT_STEP, "delay_seconds": 60}}},
            },
            "root+admin",
            {},
            422,
            "spec.steps.a.delay_seconds",
        ),
        # step 2: into prod from dev, a spec stg refuses (test-only type), a non-operator, extra fields
        (
            "POST",
            "/v1/envs/prod/promotions",
            {"from": {"env": "dev", "kind": "job", "id": job_id}, "spec": spec},
            "root+admin",
            {},
            422,
            "skips stg",
        ),
        (
            "POST",
            "/v1/envs/stg/promotions",
            {"from": {"env": "dev", "kind": "job", "id": job_id}, "spec": {"type": "sleep", "payload": {"seconds": 1}}},
            "root+admin",
            {},
            422,
            "unknown job type 'sleep'",
        ),
        (
            "POST",
            "/v1/envs/stg/promotions",
            {"from": {"env": "dev", "kind": "job", "id": job_id}, "spec": spec},
            "alice",
            {},
            403,
            "admin claim",
        ),
        (
            "POST",
            "/v1/envs/stg/promotions",
            {"from": {"env": "dev", "kind": "job", "id": job_id}, "spec": {**spec, "depends_on": ["abcdef"]}},
            "root+admin",
            {},
            422,
            "spec.depends_on",
        ),
        (
            "POST",
            "/v1/envs/stg/promotions",
            {"from": {"env": "dev", "kind": "job", "id": "../x"}, "spec": spec},
            "root+admin",
            {},
            422,
            "from.id",
        ),
        # step 3: a link to a skipped env, to a malformed id, on an unknown job
        (
            "POST",
            f"/v1/envs/dev/promotions/job/{job_id}:record",
            {"to": {"env": "prod", "id": "p" * 24}},
            "root+admin",
            {},
            422,
            "skips stg",
        ),
        (
            "POST",
            f"/v1/envs/dev/promotions/job/{job_id}:record",
            {"to": {"env": "stg", "id": "../../x"}},
            "root+admin",
            {},
            422,
            "to.id",
        ),
        (
            "POST",
            "/v1/envs/dev/promotions/job/nope-not-there:record",
            {"to": {"env": "stg", "id": "p" * 24}},
            "root+admin",
            {},
            404,
            "not found",
        ),
    ]
    for method, path, body, token, query, status, says in cases:
        r = call(api, method, path, body, token, **query)
        assert r.status == status and says in r.body["error"]["message"], (path, query, r.status, r.body)
    assert docs(d) == before
    assert d.stores["dev"].get(job_id).promoted_to == []
    assert all(not disp.dispatched for env, disp in d.dispatchers.items() if env != "dev")
