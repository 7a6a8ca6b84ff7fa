"""App Check where an env requires it (the session stack's stg, tests/conftest.py), through the API.

Submits from apps need a valid X-Firebase-AppCheck token (signed by the test's key, whose JWKS the
API fetches from 127.0.0.1); operators are exempt; a refusal names App Check and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from jobrelay.local.stack import Stack
from tests.appcheck_keys import AppCheckKeys
from tests.conftest import APP_CHECK_ENV
from tests.support import ApiUser, count_jobs, id_token

ENV = APP_CHECK_ENV
SPEC = {"type": "report", "payload": {"collection": "app-check"}}


def submit(
    stack: Stack, token: str, app_check: str | None, path: str = "/jobs", body: object = SPEC
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if app_check is not None:
        headers["X-Firebase-AppCheck"] = app_check
    return requests.post(f"{stack.url('api')}/v1/envs/{ENV}{path}", json=body, headers=headers, timeout=30)


def test_the_env_requires_app_check(stack: Stack) -> None:
    assert stack.infra.env(ENV).app_check == "required"
    assert stack.infra.env("dev").app_check == "unenforced"


def test_an_app_with_a_valid_token_submits(stack: Stack, app_check_keys: AppCheckKeys) -> None:
    user = ApiUser(stack, ENV, "app-check-user", roles=("reporter",))  # sends App Check tokens itself
    r = user.submit(SPEC)
    assert r.status_code == 202, r.text
    r = user.batch([SPEC, SPEC])
    assert r.status_code == 202, r.text


def project(stack: Stack) -> str:
    return stack.infra.env(ENV).project


CASES: list[tuple[str, str, Callable[[Stack, AppCheckKeys], str | None]]] = [
    ("missing", "App Check token missing", lambda s, k: None),
    ("garbage", "invalid App Check token", lambda s, k: "garbage"),
    ("expired", "expired", lambda s, k: k.token(project(s), issued_at=1_000_000, lifetime=60)),
    ("of another project", "audience", lambda s, k: k.token(s.infra.env("prod").project)),
    ("of an unknown key", "signing key", lambda s, k: k.token(project(s), kid="someone-elses")),
]


@pytest.mark.parametrize(("name", "says", "make"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("path", ["/jobs", "/jobs:batch"])
def test_an_app_without_a_valid_token_is_refused_and_nothing_is_written(
    stack: Stack, app_check_keys: AppCheckKeys, name: str, says: str, make: Callable[..., str | None], path: str
) -> None:
    token = id_token(stack, ENV, "app-check-user", roles=("reporter",))
    body = {"jobs": [SPEC]} if path.endswith("batch") else SPEC
    before = count_jobs(stack, ENV)
    r = submit(stack, token, make(stack, app_check_keys), path, body)
    assert r.status_code == 401, r.text
    error = r.json()["error"]
    assert "App Check" in error["message"] and says in error["message"], error
    assert error["code"] in ("app_check_required", "app_check_invalid")
    assert count_jobs(stack, ENV) == before


def test_operators_are_exempt(stack: Stack) -> None:
    r = submit(stack, id_token(stack, ENV, "app-check-root", admin=True), None)
    assert r.status_code == 202, r.text


def test_reads_need_no_app_check_token(stack: Stack, app_check_keys: AppCheckKeys) -> None:
    user = ApiUser(stack, ENV, "app-check-user", roles=("reporter",))
    job = user.submit(SPEC).json()
    bare = {"Authorization": f"Bearer {user.token()}"}
    r = requests.get(f"{stack.url('api')}/v1/envs/{ENV}/jobs/{job['id']}", headers=bare, timeout=30)
    assert r.status_code == 200, r.text


def test_cors_lets_apps_send_the_app_check_header(stack: Stack) -> None:
    origin = stack.infra.env("dev").app_origins[-1]
    r = requests.options(
        f"{stack.url('api')}/v1/envs/dev/jobs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-firebase-appcheck",
        },
        timeout=10,
    )
    assert r.status_code == 204
    assert "X-Firebase-AppCheck" in r.headers["Access-Control-Allow-Headers"]
