"""The local stack supervises its emulators as it does its services.

An emulator that dies comes back on the same port with what provisioning gave it (Pub/Sub topics and
subscriptions, Cloud Tasks queues, Firestore rules) and none of its data, as after any emulator
restart; afterwards jobs run on both routes and dead letters reach the dead-letter service again.
"""

from __future__ import annotations

import pytest
import requests

from jobrelay.local.stack import Stack
from tests.support import ApiUser, wait_for


@pytest.mark.parametrize("name", ["cloudtasks", "pubsub", "firestore"])
def test_a_killed_emulator_comes_back_and_the_stack_works_afterwards(
    stack: Stack, alice: ApiUser, admin: ApiUser, name: str
) -> None:
    port = stack.ports[name]
    old = stack.kill(name)
    stack.wait_restarted(name, old, timeout=120)
    assert stack.ports[name] == port and stack.emulator_specs[name].restarts >= 1
    jobs = [
        alice.submit({"type": "echo", "payload": {"message": f"after {name}"}}),
        alice.submit({"type": "echo", "payload": {"message": f"pool after {name}"}, "class": "D"}),
        alice.submit({"type": "flaky", "payload": {"fail_times": 1, "fatal": True}}),
    ]
    assert all(r.status_code == 202 for r in jobs), [r.text for r in jobs]
    tasks, pool, fatal = (r.json()["id"] for r in jobs)
    assert alice.wait(tasks, timeout=60)["status"] == "succeeded"
    assert alice.wait(pool, timeout=60)["status"] == "succeeded"
    assert alice.wait(fatal, timeout=60)["status"] == "dead_lettered"
    wait_for(
        lambda: requests.get(admin.url(f"/dead-letters/{fatal}"), headers=admin.headers, timeout=30).ok,
        timeout=30,
        what="dead letter recorded through the push subscription",
    )
