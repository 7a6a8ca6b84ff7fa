"""The engine at the edges of what a queue may ask for, in process with a recording delivery (no network)."""

from __future__ import annotations

import threading

from jobrelay.local.cloudtasks.config import QueueSettings, make_rate_limits
from jobrelay.local.cloudtasks.dispatch import Delivery, HttpTarget, Outcome
from jobrelay.local.cloudtasks.engine import Engine
from jobrelay.local.cloudtasks.names import QueueName

TARGET = HttpTarget("http://127.0.0.1:9/x", "POST", (), b"")


def test_a_queue_with_a_vanishing_rate_does_not_stop_the_scheduler():
    delivered: list[str] = []
    arrived = threading.Event()

    def deliver(delivery: Delivery) -> Outcome:
        delivered.append(delivery.queue)
        arrived.set()
        return Outcome(200, None, "", 0.0)

    engine = Engine(deliver, workers=2)
    engine.start()
    try:
        slow = QueueName("p", "l", "slow")
        engine.create_queue(slow, QueueSettings(rate_limits=make_rate_limits(1e-300, None)))
        for _ in range(2):  # the first uses the bucket's one token; the second is due in ~1e300 s
            engine.create_task(slow, None, TARGET, schedule_time=None, dispatch_deadline=60, retry=None)
        assert arrived.wait(5)
        arrived.clear()
        fast = QueueName("p", "l", "fast")
        engine.create_queue(fast, QueueSettings())
        engine.create_task(fast, None, TARGET, schedule_time=None, dispatch_deadline=60, retry=None)
        assert arrived.wait(5), "the scheduler stopped"
        assert delivered == [str(slow), str(fast)]
    finally:
        engine.stop()
