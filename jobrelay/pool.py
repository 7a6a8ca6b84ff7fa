"""The Elastic Muscle pool: one process per VM pulling heavy jobs from every env's subscription.

Each time slots are free it asks the envs in priority order (prod, then stg, then dev) for at most
as many messages as it can start: never more of one env than that env's `muscle_concurrency`,
never more in all than the VM's `total_slots`. It pulls synchronously (not streaming) for exactly
that reason: a streaming pull would buffer messages per env and defeat the order.

A pulled message is one delivery of a job, run by the same `Runner` as the Cloud Run worker; the
job's lease and progress behave alike. While it runs, the pool keeps the message's ack deadline
extended; when it ends the message is acknowledged, or, for a retryable failure, its deadline is
set to the retry backoff so Pub/Sub redelivers it then (a nack with backoff). Poison messages that
are never acknowledged reach the subscription's dead-letter topic after `max_delivery_attempts`.
On SIGTERM the pool stops pulling, lets running jobs finish within the grace period, and hands the
rest back (their messages are nacked at once, to be redelivered to another VM).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from pydantic import ValidationError

from jobrelay import logging as jlog
from jobrelay import tracing
from jobrelay.answers import Answer, Delivery
from jobrelay.dispatch import TaskMessage
from jobrelay.runtime import Runner
from jobrelay.settings import Environment

log = logging.getLogger("jobrelay.pool")

ACK_DEADLINE = 60  # seconds; the subscription's own deadline, renewed every third of it
MAX_ACK_DEADLINE = 600


@dataclass
class Lane:
    """One env's subscription on this VM, with the jobs of that env running now."""

    env: Environment
    subscriber: Any
    subscription: str
    running: dict[str, str] = field(default_factory=dict)  # ack_id -> job_id

    @property
    def cap(self) -> int:
        return self.env.muscle_concurrency


@dataclass
class PoolStats:
    started: int = 0
    acked: int = 0
    nacked: int = 0
    peak_total: int = 0
    peak_by_env: dict[str, int] = field(default_factory=dict)


class Pool:
    """Pulls by priority within caps and runs each job in its own thread."""

    def __init__(
        self,
        runner: Runner,
        lanes: Sequence[Lane],
        *,
        total_slots: int,
        grace_seconds: float,
        poll_interval: float = 0.5,
    ) -> None:
        self.runner = runner
        self.lanes = sorted(lanes, key=lambda lane: lane.env.priority)
        self.total_slots = total_slots
        self.grace_seconds = grace_seconds
        self.poll_interval = poll_interval
        self.stats = PoolStats()
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- the loop ----------------------------------------------------------------------------

    def running_total(self) -> int:
        return sum(len(lane.running) for lane in self.lanes)

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called: the pool takes no more work and drains."""
        return self._stopping.is_set()

    def health(self) -> dict[str, Any]:
        """What the VM's health check answers."""
        return {
            "status": "draining" if self.stopping else "ok",
            "running": self.running_total(),
            "slots": self.total_slots,
        }

    def run(self) -> None:
        """Pull and run until `stop()`; then drain and return."""
        extender = threading.Thread(target=self._extend_loop, name="pool-ack-extender", daemon=True)
        extender.start()
        log.info(
            "pool started: %d slots; envs by priority %s",
            self.total_slots,
            [f"{lane.env.name} (cap {lane.cap})" for lane in self.lanes],
        )
        while not self._stopping.is_set():
            started = self.fill()
            if started == 0:
                with self._lock:
                    self._lock.wait(self.poll_interval)
        self._drain()

    def fill(self) -> int:
        """Start as many jobs as slots and caps allow, prod first; returns how many started."""
        started = 0
        for lane in self.lanes:
            if self._stopping.is_set():
                break
            with self._lock:
                free = min(self.total_slots - self.running_total(), lane.cap - len(lane.running))
            if free <= 0:
                if self.total_slots - self.running_total() <= 0:
                    break
                continue
            for msg in self._pull(lane, free):
                self._start(lane, msg)
                started += 1
        return started

    def _pull(self, lane: Lane, n: int) -> list[Any]:
        try:
            resp = lane.subscriber.pull(
                request={"subscription": lane.subscription, "max_messages": n, "return_immediately": True},
                timeout=10,
            )
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable) as exc:
            log.debug("pull from %s: %s", lane.subscription, exc)
            return []
        return list(resp.received_messages)

    def _start(self, lane: Lane, received: Any) -> None:
        try:
            msg = TaskMessage.model_validate_json(received.message.data)
        except ValidationError as exc:
            # Not a job: it can never succeed. Nack it; after max_delivery_attempts the subscription's
            # dead-letter policy moves it to the dead-letter topic, as it does any poison message.
            log.error(
                "message %s on %s is not a job message (%s)",
                received.message.message_id,
                lane.subscription,
                exc.errors()[0]["msg"],
            )
            self._modack(lane, [received.ack_id], 0)
            return
        if msg.env != lane.env.name:
            log.error("message for env %s arrived on %s's subscription; dropped", msg.env, lane.env.name)
            self._ack(lane, received.ack_id)
            return
        self._modack(lane, [received.ack_id], ACK_DEADLINE)  # ours for the next minute, renewed while it runs
        with self._lock:
            lane.running[received.ack_id] = msg.job_id
            total = self.running_total()
            self.stats.started += 1
            self.stats.peak_total = max(self.stats.peak_total, total)
            self.stats.peak_by_env[lane.env.name] = max(self.stats.peak_by_env.get(lane.env.name, 0), len(lane.running))
        t = threading.Thread(
            target=self._run_one,
            args=(lane, received.ack_id, msg),
            name=f"pool-{lane.env.name}-{msg.job_id}",
            daemon=True,
        )
        self._threads.append(t)
        t.start()

    def _run_one(self, lane: Lane, ack_id: str, msg: TaskMessage) -> None:
        try:
            with (
                tracing.span(
                    "jobrelay.run",
                    project=lane.env.project,
                    trace_id=msg.trace_id,
                    parent_span_id=msg.span_id,
                    attributes={"jobrelay.env": msg.env, "jobrelay.job_id": msg.job_id},
                ),
                jlog.labels(env=msg.env, job_id=msg.job_id),
            ):
                answer = self.runner.deliver(msg.env, msg.job_id, dispatch=msg.dispatch)
                self._settle(lane, ack_id, answer)
        except Exception:
            # The runner already recorded what it could; let Pub/Sub redeliver after a pause.
            log.exception("job %s: delivery failed in the pool", msg.job_id)
            self._modack(lane, [ack_id], 10)
        finally:
            with self._lock:
                lane.running.pop(ack_id, None)
                self._lock.notify_all()

    def _settle(self, lane: Lane, ack_id: str, answer: Answer) -> None:
        if answer.ack:
            self._ack(lane, ack_id)
            return
        # A hand-back goes to another VM at once; a failure waits for its backoff.
        delay = 0 if answer.outcome in (Delivery.HANDED_BACK, Delivery.DRAINING) else int(answer.retry_after or 10)
        self.stats.nacked += 1
        log.info("job %s: %s; redelivery in %ss", answer.job_id, answer.outcome, delay)
        self._modack(lane, [ack_id], min(MAX_ACK_DEADLINE, delay))

    # -- acknowledgements ----------------------------------------------------------------------

    def _ack(self, lane: Lane, ack_id: str) -> None:
        try:
            lane.subscriber.acknowledge(request={"subscription": lane.subscription, "ack_ids": [ack_id]})
            self.stats.acked += 1
        except gexc.GoogleAPIError as exc:
            log.error(
                "ack on %s failed (%s); the message will be redelivered and seen finished",
                lane.subscription,
                exc,
            )

    def _modack(self, lane: Lane, ack_ids: list[str], seconds: int) -> None:
        if not ack_ids:
            return
        try:
            lane.subscriber.modify_ack_deadline(
                request={
                    "subscription": lane.subscription,
                    "ack_ids": ack_ids,
                    "ack_deadline_seconds": seconds,
                }
            )
        except gexc.GoogleAPIError as exc:
            log.error("modify_ack_deadline on %s failed: %s", lane.subscription, exc)

    def _extend_loop(self) -> None:
        while not self._stopping.wait(ACK_DEADLINE / 3) or self.running_total():
            for lane in self.lanes:
                with self._lock:
                    ids = list(lane.running)
                self._modack(lane, ids, ACK_DEADLINE)
            if self._stopping.is_set() and not self.running_total():
                return

    # -- stopping ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop pulling; running jobs get the grace period, then are handed back."""
        if self._stopping.is_set():
            return
        log.warning("pool stopping: %d jobs running, %ss grace", self.running_total(), self.grace_seconds)
        self.runner.settings.drain_seconds = self.grace_seconds
        self.runner.begin_shutdown()
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace_seconds + 15
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        left = self.running_total()
        if left:
            log.error("pool stopped with %d jobs still running; their messages will be redelivered", left)
        log.info("pool stopped: %s", self.stats)
