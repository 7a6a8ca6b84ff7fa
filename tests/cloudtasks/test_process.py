"""The emulator process: configurable name reservations, clean shutdown, a signing key shared by file."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests
from google.api_core.exceptions import AlreadyExists

from jobrelay.local.oidc import LocalSigner

from .helpers import LOCATION, PROJECTS, eventually, http_task, start_emulator


@pytest.fixture(scope="module")
def short_memory(tmp_path_factory):
    """An emulator that holds finished task names for 1 s and deleted queue names for 1 s."""
    emu = start_emulator(
        tmp_path_factory.mktemp("short-memory"), name_reservation_seconds=1, queue_reservation_seconds=1
    )
    try:
        yield emu
    finally:
        emu.proc.stop()


def test_a_task_name_is_free_again_after_the_reservation_window(short_memory, target):
    client = short_memory.client()
    queue = f"projects/{PROJECTS[0]}/locations/{LOCATION}/queues/jobrelay-a"
    name = f"{queue}/tasks/once"
    client.create_task(parent=queue, task=http_task(target.url, name=name))
    target.wait_for(1)
    eventually(lambda: not list(client.list_tasks(parent=queue)), what="the task to finish")
    with pytest.raises(AlreadyExists):
        client.create_task(parent=queue, task=http_task(target.url, name=name))
    time.sleep(1.1)
    client.create_task(parent=queue, task=http_task(target.url, name=name))
    target.wait_for(2)


def test_a_queue_name_is_free_again_after_the_reservation_window(short_memory):
    client = short_memory.client()
    parent = f"projects/{PROJECTS[0]}/locations/{LOCATION}"
    name = f"{parent}/queues/recycled"
    client.create_queue(parent=parent, queue={"name": name})
    client.delete_queue(name=name)
    time.sleep(1.1)
    assert client.create_queue(parent=parent, queue={"name": name}).name == name


def test_sigterm_stops_the_emulator_cleanly(tmp_path):
    emu = start_emulator(tmp_path)
    pid = emu.proc.pid
    assert requests.get(f"http://127.0.0.1:{emu.http_port}/healthz", timeout=2).text == "ok\n"
    assert emu.proc.stop(sig=signal.SIGTERM) == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert "shutting down" in emu.log_path.read_text()


def test_a_signer_on_the_same_key_file_publishes_the_same_certs(emulator):
    served = requests.get(emulator.certs_url, timeout=2).json()
    assert set(LocalSigner(emulator.key_file).certs()) == set(served)  # same key, same kid
    assert oct(emulator.key_file.stat().st_mode & 0o777) == "0o600"
