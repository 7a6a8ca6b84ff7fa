"""A bounded fuzz run of the API from its own OpenAPI document, as a user and as an operator.

schemathesis generates requests for every operation of `jobrelay/openapi.json`, valid ones and
invalid ones (wrong types, missing fields, values outside the document's patterns and bounds, the
boundary cases of each), and sends each with a user's token and again with an operator's. A call
fails the test when it answers 5xx; when its status, content type, headers or body are not what the
document says; when an input the document calls invalid is not refused with a 4xx; or when a call
that was refused (4xx) changed the caller's job documents (their count) or the env's redriven dead
letters.

Bounded and deterministic: a fixed seed (`JOBRELAY_FUZZ_SEED` explores others), a few examples per
operation, no stateful phase. A redrive is always a dry run here and the cleanup cancels what the
fuzz users submitted, so the run leaves the other tests' jobs and dead letters as they were.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from google.cloud import firestore

from jobrelay import clients, deadletters, openapi
from jobrelay.local.stack import Stack
from tests.support import FINAL, ApiUser

SEED = int(os.environ.get("JOBRELAY_FUZZ_SEED", "14"))
MAX_EXAMPLES = int(os.environ.get("JOBRELAY_FUZZ_EXAMPLES", "12"))
CHECKS = [
    getattr(schemathesis.checks, name)
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
    )
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none"},
        "phases": {
            "examples": {"enabled": False},
            # Boundary cases of every parameter and body field, valid and not (wrong methods excluded:
            # routing answers those, and the document lists no 405s).
            "coverage": {"enabled": True, "unexpected-methods": []},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        # 413 is how the API refuses a batch over its 500 specs: a refusal like any 4xx.
        "checks": {
            "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 409, 413, 415, 422, 429]}
        },
        # GET /v1/schedules answers 503 when a schedule is unhealthy (for load balancers): documented, and
        # the test schedules include a failing one. Any other 5xx is a failure.
        "operations": [
            {
                "include-operation-id": "schedules",
                "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
            }
        ],
    }
)
schema = schemathesis.openapi.from_path(openapi.OUT, config=CONFIG)
USER, OPERATOR = "fuzz-user", "fuzz-operator"


@pytest.fixture(scope="module")
def callers(stack: Stack) -> Iterator[dict[str, dict[str, ApiUser]]]:
    """A user and an operator in every env; afterwards every job they submitted is cancelled."""
    by_env = {
        env: {"user": ApiUser(stack, env, USER), "operator": ApiUser(stack, env, OPERATOR, admin=True)}
        for env in stack.infra.environments
    }
    yield by_env
    for env, who in by_env.items():
        admin = who["operator"]
        for uid in (USER, OPERATOR):
            for job in admin.list(owner=uid, page_size=200).json().get("jobs", []):
                if job["status"] not in FINAL:
                    admin.cancel(job["id"])


def env_of(case: schemathesis.Case) -> str | None:
    env = (case.path_parameters or {}).get("env")
    return env if isinstance(env, str) else None


class Ledger:
    """What a refused call must not change: each fuzz caller's jobs in an env, and redriven dead letters.

    Only the fuzz callers write these jobs, and only a redrive marks dead letters redriven, so the last
    count stands until a call succeeds: each call costs one count, taken after it.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.seen: dict[tuple[str, str], int] = {}

    def count(self, env: str, what: str) -> int:
        db = clients.firestore_client(self.stack.infra.env(env).project)
        if what == "redriven":
            q: Any = db.collection(deadletters.DEAD_LETTERS).where(filter=firestore.FieldFilter("redriven", "==", True))
        else:
            q = db.collection("jobs").where(filter=firestore.FieldFilter("owner", "==", what))
        return int(q.count().get()[0][0].value)

    def check(self, env: str, what: str, refused: bool) -> None:
        now = self.count(env, what)
        before = self.seen.setdefault((env, what), now) if refused else None
        if refused and now != before:
            raise AssertionError(f"a refused call changed {what} in {env}: {before} -> {now}")
        self.seen[(env, what)] = now


@pytest.fixture(scope="module")
def ledger(stack: Stack, callers: dict[str, dict[str, ApiUser]]) -> Ledger:
    book = Ledger(stack)
    for env, who in callers.items():
        for what in (*(u.uid for u in who.values()), "redriven"):
            book.seen[(env, what)] = book.count(env, what)
    return book


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck), database=None)
def test_fuzzed_requests_get_documented_answers_and_refusals_write_nothing(
    case: schemathesis.Case, stack: Stack, callers: dict[str, dict[str, ApiUser]], ledger: Ledger
) -> None:
    redrive = case.operation.path.endswith(":redrive")
    if redrive and isinstance(case.body, dict):
        case.body["dry_run"] = True  # a real redrive would rerun the other tests' dead jobs
    if case.operation.path.endswith("/jobs:cancel") and isinstance(case.body, dict):
        case.body["dry_run"] = True  # a real bulk cancel would cancel the other tests' jobs
    pause = case.operation.path.endswith(":pause")
    env = env_of(case)
    served = env if env in callers else None
    for role in ("user", "operator"):
        caller = callers[served or "dev"][role]
        response = case.call(base_url=stack.url("api"), headers=caller.headers, timeout=30)
        case.validate_response(response, checks=CHECKS)
        if served and case.method.upper() == "POST":  # only a POST to a served env can write
            refused = 400 <= response.status_code < 500
            ledger.check(served, caller.uid, refused)
            if redrive:
                ledger.check(served, "redriven", refused)
        if pause and response.status_code == 200:  # a type the fuzz paused runs again for the other tests
            job_type = (case.path_parameters or {})["job_type"]
            requests.post(f"{caller.url('/types/')}{job_type}:resume", headers=caller.headers, timeout=30)


def test_the_fuzz_run_covers_every_route(stack: Stack) -> None:
    """Guard against a run that generates nothing: the document loads and names every route."""
    assert {result.ok().label for result in schema.get_all_operations()} >= {
        "POST /v1/envs/{env}/jobs",
        "POST /v1/envs/{env}/jobs:batch",
        "POST /v1/envs/{env}/jobs/{job_id}:cancel",
        "POST /v1/envs/{env}/dead-letters:redrive",
        "POST /v1/cron/{name}",
        "POST /v1/envs/{env}/jobs:cancel",
        "POST /v1/envs/{env}/types/{job_type}:pause",
        "POST /v1/envs/{env}/types/{job_type}:resume",
        "GET /v1/envs/{env}/types",
        "GET /v1/envs/{env}/operations/{operation_id}",
    }
    assert requests.get(f"{stack.url('api')}/healthz", timeout=10).ok
