"""What a delivery tells its transport: acknowledge it, or deliver it again (and why).

Cloud Tasks hears it as an HTTP status (services/worker), the pool as an ack or a nack with a delay
(jobrelay.pool). The outcomes are an enum so that every place that reads one is checked by mypy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Delivery(StrEnum):
    """How one delivery ended, as the transport (Cloud Tasks, the pool) is told."""

    WRONG_ENV = "wrong_env"
    DRAINING = "draining"
    MISSING = "missing"
    NOT_YET = "not_yet"  # no document yet: its submit may still be writing it (docs/adr/0012)
    DUPLICATE = "duplicate"
    BUSY = "busy"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"
    SUCCEEDED = "succeeded"
    LEASE_LOST = "lease_lost"
    RETRY_SCHEDULED = "retry_scheduled"
    RETRY = "retry"
    HANDED_BACK = "handed_back"
    WAITING = "waiting"  # the handler spawned children and returned: the job waits for them
    FAN_IN = "fan_in"  # a delivery of a waiting job: a fan-in check was made
    PARKED = "parked"  # a gate holds the job (key slots, pause, breaker): acknowledged, no attempt used
    NOT_DUE = "not_due"  # the job's due time moved later (debounce): dispatched again for then

    @property
    def come_back_later(self) -> bool:
        """Not the job's failure: this worker cannot run it now (answered 503, not 500)."""
        return self in (Delivery.DRAINING, Delivery.HANDED_BACK, Delivery.BUSY, Delivery.NOT_YET)


@dataclass(frozen=True)
class Answer:
    """What the transport should do with the delivery."""

    ack: bool
    outcome: Delivery
    job_id: str
    status: str | None = None
    retry_after: float | None = None
    detail: str = ""

    def body(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "job_id": self.job_id, "status": self.status, "detail": self.detail}
