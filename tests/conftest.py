"""Shared fixtures: one local stack per test session, on free ports, stopped at the end.

A test that needs an emulator and cannot start one fails; nothing here skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobrelay.local.stack import Stack, StackOptions
from tests.support import ApiUser


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Firestore, Pub/Sub and Cloud Tasks emulators, the API, the worker and the dead-letter service."""
    state = tmp_path_factory.mktemp("stack")
    saved = dict(os.environ)
    st = Stack(StackOptions(state_dir=Path(state), lease_seconds=4.0, tick_seconds=0,
                            services=("api", "worker", "deadletter")))
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
