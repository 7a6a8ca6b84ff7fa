"""Fixtures: the emulator as a subprocess (via its launcher), the official client, a real HTTP target.

The emulator is started once per session on free ports, with the repo's classes.yaml pre-loaded in
three projects, and stopped by pid in teardown. Every test talks to it only through
`google-cloud-tasks` and sees its dispatches only through `Target`, a threaded HTTP server that
records what arrives and answers scripted statuses and delays.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
import requests
from google.api_core.exceptions import NotFound
from google.cloud import tasks_v2

from .helpers import LOCATION, PROJECTS, Emulator, QueueFactory, Rest, Target, serve_target, start_emulator


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = start_emulator(tmp_path_factory.mktemp("cloudtasks"))
    try:
        yield emu
    finally:
        emu.proc.stop()


@pytest.fixture(scope="session")
def client(emulator: Emulator) -> tasks_v2.CloudTasksClient:
    return emulator.client()


@pytest.fixture(scope="session")
def rest(emulator: Emulator) -> Iterator[Rest]:
    """The REST face over one keep-alive session, as gcloud and the Node client reach it."""
    session = requests.Session()
    try:
        yield Rest(emulator.rest_url, session)
    finally:
        session.close()


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    server = serve_target(t)
    try:
        yield t
    finally:
        t.released.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def make_queue(client: tasks_v2.CloudTasksClient) -> Iterator[QueueFactory]:
    """Create a fresh queue (unique id) with the given Queue fields; deleted after the test."""
    created: list[str] = []

    def make(project: str = PROJECTS[0], *, paused: bool = False, **fields: object) -> str:
        parent = f"projects/{project}/locations/{LOCATION}"
        name = f"{parent}/queues/t-{uuid.uuid4().hex[:12]}"
        client.create_queue(parent=parent, queue={"name": name, **fields})
        if paused:
            client.pause_queue(name=name)
        created.append(name)
        return name

    yield make
    for name in created:
        with contextlib.suppress(NotFound):  # the test deleted it itself
            client.delete_queue(name=name)
