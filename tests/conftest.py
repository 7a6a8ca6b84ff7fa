"""Shared fixtures: one local stack per test session, on free ports, stopped at the end.

A test that needs an emulator and cannot start one fails; nothing here skips.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from jobrelay.local.stack import Stack, StackOptions
from jobrelay.settings import DEFAULT_INFRA_DIR
from tests import support
from tests.appcheck_keys import AppCheckKeys
from tests.support import ApiUser

# The session stack's env that requires Firebase App Check (tests/e2e/test_app_check.py).
APP_CHECK_ENV = "stg"

TEST_SCHEDULES = {
    "test-echo": {"cron": "*/5 * * * *", "type": "echo", "payload": {"message": "tick"}, "envs": ["dev"]},
    "test-failing": {
        "cron": "*/5 * * * *",
        "type": "flaky",
        "payload": {"fail_times": 5, "fatal": True},
        "envs": ["dev"],
    },
    "test-pipeline": {
        "cron": "*/5 * * * *",
        "envs": ["dev"],
        "pipeline": {
            "steps": {
                "first": {"type": "echo", "payload": {"message": "tick"}},
                "then": {"type": "echo", "payload": {"message": "then"}, "after": ["first"]},
            }
        },
    },
    "test-paused": {
        "cron": "0 0 * * *",
        "type": "echo",
        "payload": {"message": "off"},
        "envs": ["dev"],
        "enabled": False,
    },
}


ORDERS_RULES = """    match /orders/{orderId} {
      allow create: if request.auth != null && request.resource.data.owner == request.auth.uid;
      allow get: if request.auth != null && (resource == null || resource.data.owner == request.auth.uid);
    }
"""


@pytest.fixture(scope="session")
def test_infra(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's infra/ plus schedules only the tests use."""
    d = Path(tmp_path_factory.mktemp("infra"))
    shutil.copytree(DEFAULT_INFRA_DIR, d, dirs_exist_ok=True)
    data = yaml.safe_load((d / "schedules.yaml").read_text())
    data["schedules"].update(TEST_SCHEDULES)
    (d / "schedules.yaml").write_text(yaml.safe_dump(data))
    # An app's own collection beside jobrelay's, as an app's rules would allow it (tests/e2e/test_job_requests*.py).
    rules = (d / "firestore.rules").read_text()
    fallback = "    match /{document=**} {"
    (d / "firestore.rules").write_text(rules.replace(fallback, ORDERS_RULES + fallback))
    envs = yaml.safe_load((d / "environments.yaml").read_text())
    envs["environments"][APP_CHECK_ENV]["app_check"] = "required"
    (d / "environments.yaml").write_text(yaml.safe_dump(envs, sort_keys=False))
    return d


@pytest.fixture(scope="session")
def app_check_keys() -> Iterator[AppCheckKeys]:
    """App Check's signing key for the session: its JWKS on 127.0.0.1, where the stack's API looks."""
    keys = AppCheckKeys().start()
    support.APP_CHECK = keys  # ApiUser sends a token of it where the env requires App Check
    try:
        yield keys
    finally:
        support.APP_CHECK = None
        keys.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, test_infra: Path, app_check_keys: AppCheckKeys) -> Iterator[Stack]:
    """The emulators, the API, the worker, the dead-letter service and a 3-slot Elastic Muscle pool."""
    state = tmp_path_factory.mktemp("stack")
    saved = dict(os.environ)
    st = Stack(
        StackOptions(
            state_dir=Path(state),
            infra_dir=test_infra,
            lease_seconds=4.0,
            tick_seconds=0,
            muscle_slots=3,
            drain_grace_seconds=6.0,
            pool_min_backoff=1,
            extra_env={
                "JOBRELAY_APP_CHECK_JWKS_URL": app_check_keys.url,
                # A pending job request is swept up a second after it was written (tests/e2e/test_job_requests.py).
                "JOBRELAY_REQUEST_SWEEP_SECONDS": "1",
            },
        )
    )
    st.start()
    try:
        yield st
    finally:
        st.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def alice(stack: Stack) -> ApiUser:
    return ApiUser(stack, "dev", "alice", roles=("reporter",))


@pytest.fixture
def bob(stack: Stack) -> ApiUser:
    return ApiUser(stack, "dev", "bob")


@pytest.fixture
def admin(stack: Stack) -> ApiUser:
    return ApiUser(stack, "dev", "root", admin=True)
