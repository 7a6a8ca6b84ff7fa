"""Queue settings (rate limits, retry policy): defaults, limits and validation, as the real API has them.

Defaults a fresh queue reports: 500 dispatches/s, burst 100, 1000 concurrent, 100 attempts,
min_backoff 0.1 s, max_backoff 3600 s, 16 doublings, no retry-duration limit. Durations a caller sets
are cut to whole seconds. `max_burst_size` is output only; the real service derives it from the rate
by an undocumented rule, ours is `burst_for()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobrelay.backoff import backoff_seconds
from jobrelay.local.cloudtasks.errors import invalid

if TYPE_CHECKING:
    from jobrelay.settings import JobClass

MAX_RATE = 500.0
MAX_CONCURRENT = 5000
DEFAULT_RATE = 500.0
DEFAULT_CONCURRENT = 1000
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 3600.0
DEFAULT_MAX_DOUBLINGS = 16


def burst_for(rate: float) -> int:
    """Token-bucket size for a dispatch rate: a fifth of a second's worth, 1 to 100 (500/s gives 100)."""
    return max(1, min(100, math.ceil(rate / 5)))


@dataclass(frozen=True, slots=True)
class RateLimits:
    max_dispatches_per_second: float = DEFAULT_RATE
    max_concurrent_dispatches: int = DEFAULT_CONCURRENT

    @property
    def max_burst_size(self) -> int:
        return burst_for(self.max_dispatches_per_second)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """RetryConfig in the API's terms; -1 attempts or 0 s duration mean no limit of that kind."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_duration: float = 0.0
    min_backoff: float = DEFAULT_MIN_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_doublings: int = DEFAULT_MAX_DOUBLINGS

    def delay(self, retry: int) -> float:
        """Seconds before retry number `retry` (1 = the first retry)."""
        return backoff_seconds(
            retry,
            min_backoff=self.min_backoff,
            max_backoff=self.max_backoff,
            max_doublings=self.max_doublings,
        )

    def gives_up(self, attempts: int, elapsed: float) -> bool:
        """True once retrying must stop: every limit that is set has been reached.

        The docs: retries stop only when both max_attempts and max_retry_duration are satisfied. A limit
        that is not set (-1 attempts, 0 s) does not hold retries back, so the other one decides alone;
        with neither set the task retries until its 31-day lifetime ends.
        """
        limits = []
        if self.max_attempts != -1:
            limits.append(attempts >= self.max_attempts)
        if self.max_retry_duration > 0:
            limits.append(elapsed >= self.max_retry_duration)
        return bool(limits) and all(limits)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """What a caller can set on a queue. Fields we only store and echo are kept as raw proto bytes."""

    rate_limits: RateLimits = RateLimits()
    retry: RetryPolicy = RetryPolicy()
    logging_sampling_ratio: float | None = None
    app_engine_routing_override: bytes | None = None


def make_rate_limits(max_dispatches_per_second: float | None, max_concurrent_dispatches: int | None) -> RateLimits:
    """Validate; None or 0 picks the default, as an unset field does in the API."""
    rate = max_dispatches_per_second or 0.0
    if math.isnan(rate):
        raise invalid("RateLimits.maxDispatchesPerSecond must be a number.")
    if rate < 0:
        raise invalid("RateLimits.maxDispatchesPerSecond cannot be negative.")
    if rate > MAX_RATE:
        raise invalid("RateLimits.maxDispatchesPerSecond must be less than or equal to 500.")
    concurrent = max_concurrent_dispatches or 0
    if concurrent < 0:
        raise invalid("RateLimits.maxConcurrentDispatches cannot be negative.")
    if concurrent > MAX_CONCURRENT:
        raise invalid("RateLimits.maxConcurrentDispatches must be less than or equal to 5000.")
    return RateLimits(rate or DEFAULT_RATE, concurrent or DEFAULT_CONCURRENT)


def make_retry(
    *,
    max_attempts: int | None = None,
    max_retry_duration: float | None = None,
    min_backoff: float | None = None,
    max_backoff: float | None = None,
    max_doublings: int | None = None,
) -> RetryPolicy:
    """Validate; None (or 0 attempts, which proto3 cannot tell from unset) picks the default."""
    if max_attempts is not None and max_attempts < -1:
        raise invalid("RetryConfig.maxAttempts must be greater or equal to -1.")
    if max_doublings is not None and max_doublings < 0:
        raise invalid("RetryConfig.maxDoublings cannot be negative.")
    for field, value in (
        ("maxRetryDuration", max_retry_duration),
        ("minBackoff", min_backoff),
        ("maxBackoff", max_backoff),
    ):
        if value is not None and value < 0:
            raise invalid(f"RetryConfig.{field} cannot be negative.")
    policy = RetryPolicy(
        max_attempts=max_attempts if max_attempts else DEFAULT_MAX_ATTEMPTS,
        max_retry_duration=max_retry_duration or 0.0,
        min_backoff=min_backoff if min_backoff is not None else DEFAULT_MIN_BACKOFF,
        max_backoff=max_backoff if max_backoff is not None else DEFAULT_MAX_BACKOFF,
        max_doublings=max_doublings if max_doublings is not None else DEFAULT_MAX_DOUBLINGS,
    )
    if policy.min_backoff > policy.max_backoff:
        raise invalid("RetryConfig.minBackoff must be less than or equal to RetryConfig.maxBackoff.")
    return policy


def settings_for_class(job_class: JobClass) -> QueueSettings:
    """Each queue (shard) of a job class in `infra/classes.yaml`: its share of the class's rate limits,
    the class's retry policy (durations cut to whole seconds)."""
    retry = job_class.retry
    per_shard = job_class.shard_rate_limits
    return QueueSettings(
        rate_limits=make_rate_limits(per_shard.max_dispatches_per_second, per_shard.max_concurrent_dispatches),
        retry=make_retry(
            max_attempts=retry.max_attempts,
            max_retry_duration=math.floor(retry.max_retry_duration_seconds),
            min_backoff=math.floor(retry.min_backoff_seconds),
            max_backoff=math.floor(retry.max_backoff_seconds),
            max_doublings=retry.max_doublings,
        ),
    )
