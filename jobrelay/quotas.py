"""Per-user quotas at submit: a submit rate and a cap on jobs waiting at once.

The rate is a token bucket per (env, user) in this instance's memory: exact on one instance and
approximate across many (each Cloud Run instance holds its own bucket), which is the trade for not
paying a Firestore read and write on every submit (docs/adr/0005-quotas.md). The waiting cap is
estimated from this instance's own submits and checked with a Firestore count() aggregation (one
billed read) only once the estimate passes half the cap; the count is then cached for
`cache_seconds`. A user far below the cap costs no read at all.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jobrelay.errors import RateLimited
from jobrelay.settings import Quotas


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class QuotaGuard:
    """Checks a user's submit rate and waiting jobs before anything is written."""

    count_waiting: Callable[[str, str], int]
    cache_seconds: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _waiting: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, env: str, uid: str, quotas: Quotas, n: int = 1) -> None:
        """Take `n` submits from the user's budget or raise RateLimited naming the limit."""
        rate = quotas.submits_per_minute / 60.0
        key = (env, uid)
        with self._lock:
            t = self.clock()
            b = self._buckets.get(key)
            if b is None:
                b = self._buckets[key] = _Bucket(tokens=float(quotas.submits_per_minute), updated=t)
            b.tokens = min(float(quotas.submits_per_minute), b.tokens + (t - b.updated) * rate)
            b.updated = t
            if b.tokens < n:
                wait = math.ceil((n - b.tokens) / rate)
                raise RateLimited(
                    f"user {uid} is over the limit of {quotas.submits_per_minute} submits a minute in env {env}",
                    retry_after=wait,
                    details={"limit": "submits_per_minute", "value": quotas.submits_per_minute},
                )
            b.tokens -= n
        waiting = self._waiting_count(env, uid, n, quotas.max_waiting)
        if waiting + n > quotas.max_waiting:
            with self._lock:
                self._buckets[key].tokens += n
            raise RateLimited(
                f"user {uid} already has {waiting} jobs waiting in env {env}; the limit is {quotas.max_waiting}",
                retry_after=30,
                details={"limit": "max_waiting", "value": quotas.max_waiting},
            )
        with self._lock:
            at, count = self._waiting.get(key, (-math.inf, 0))
            self._waiting[key] = (at, count + n)

    def _waiting_count(self, env: str, uid: str, n: int, cap: int) -> int:
        key = (env, uid)
        with self._lock:
            cached = self._waiting.get(key)
            estimate = cached[1] if cached is not None else 0
            if estimate + n <= cap // 2:
                return estimate
            if cached is not None and self.clock() - cached[0] < self.cache_seconds:
                return cached[1]
        count = self.count_waiting(env, uid)
        with self._lock:
            self._waiting[key] = (self.clock(), count)
        return count
