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
from tests.support import ApiUser

TEST_SCHEDULES = {
    "test-echo": {"cron": "*/5 * * * *", "type": "echo", "payload": {"message": "tick"}, "envs": ["dev"]},
    "test-failing": {
        "cron": "*/5 * * * *",
        "type": "flaky",
        "payload": {"fail_times": 5, "fatal": True},
        "envs": ["dev"],
    },
    "test-paused": {
        "cron": "0 0 * * *",
        "type": "echo",
        "payload": {"message": "off"},
        "envs": ["dev"],
        "enabled": False,
    },
}


@pytest.fixture(scope="session")
def test_infra(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's infra/ plus schedules only the tests use."""
    d = Path(tmp_path_factory.mktemp("infra"))
    shutil.copytree(DEFAULT_INFRA_DIR, d, dirs_exist_ok=True)
    data = yaml.safe_load((d / "schedules.yaml").read_text())
    data["schedules"].update(TEST_SCHEDULES)
    (d / "schedules.yaml").write_text(yaml.safe_dump(data))
    return d


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, test_infra: Path) -> Iterator[Stack]:
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
