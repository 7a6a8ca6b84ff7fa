"""The local stack survives a port that was free when chosen and taken before it was used."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from jobrelay.local import procs
from jobrelay.local.stack import Stack, StackOptions


def test_stack_starts_again_on_new_ports_when_one_was_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real = procs.free_port
    calls = {"n": 0}

    def first_api_port_is_taken() -> int:
        calls["n"] += 1
        return taken if calls["n"] == 5 else real()  # firestore, pubsub, cloudtasks, its http side, then api

    monkeypatch.setattr(procs, "free_port", first_api_port_is_taken)
    stack = Stack(StackOptions(state_dir=tmp_path, services=("api",), tick_seconds=0))
    try:
        stack.start()
        assert stack.ports["api"] != taken
        assert requests.get(f"{stack.url('api')}/healthz", timeout=10).json()["status"] == "ok"
    finally:
        stack.stop()
        squatter.close()
