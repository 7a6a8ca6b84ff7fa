"""The pytest plugin for job authors: a `jobrelay_stack` fixture with the local stack.

    # conftest.py at the root of your tests
    pytest_plugins = ["jobrelay.testing.pytest"]

The fixture (session scope) starts the whole local stack once (emulators, API, worker, pool, on free
ports; about 15 s) with your job modules, from the ini option `jobrelay_job_modules` or
`JOBRELAY_JOB_MODULES`, the rootdir on the services' import path, and stops it at the end. With
`JOBRELAY_TEST_STACK=DIR` it uses the stack already running there instead (`jobrelay dev up`'s
`.jobrelay`: keep it up, `jobrelay dev reload` after a change, and test again in a second).
It yields a `jobrelay.testing.LocalStack`; the emulator variables are set for the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobrelay.testing import LocalStack


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "jobrelay_job_modules",
        "job modules the jobrelay_stack fixture's services import (comma separated; default: jobs)",
        default=None,
    )


@pytest.fixture(scope="session")
def jobrelay_stack(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The local stack: a running one named by JOBRELAY_TEST_STACK, else one started for this session."""
    saved = {
        k: os.environ.get(k) for k in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "CLOUD_TASKS_EMULATOR_HOST")
    }
    running = os.environ.get("JOBRELAY_TEST_STACK")
    try:
        if running:
            handle = LocalStack.read(Path(running))
            os.environ.update(handle.emulator_env())
            yield handle
            return
        from jobrelay.local.stack import Stack, StackOptions

        modules = pytestconfig.getini("jobrelay_job_modules") or os.environ.get("JOBRELAY_JOB_MODULES") or None
        stack = Stack(
            StackOptions(
                state_dir=tmp_path_factory.mktemp("jobrelay-stack"),
                job_modules=modules,
                pythonpath=(pytestconfig.rootpath,),
                tick_seconds=0,
            )
        )
        stack.start()
        try:
            yield LocalStack.read(stack.state_dir)
        finally:
            stack.stop()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
