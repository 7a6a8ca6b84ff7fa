import pytest

from jobrelay.errors import RateLimited
from jobrelay.quotas import QuotaGuard
from jobrelay.settings import Quotas


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_rate_refills_over_time() -> None:
    clock = Clock()
    guard = QuotaGuard(count_waiting=lambda env, uid: 0, clock=clock)
    q = Quotas(submits_per_minute=60, max_waiting=10_000)
    guard.check("dev", "u", q, n=60)
    with pytest.raises(RateLimited) as err:
        guard.check("dev", "u", q)
    assert err.value.retry_after == 1
    clock.t = 1.0
    guard.check("dev", "u", q)
    guard.check("dev", "other", q, n=60)  # per user


def test_waiting_cap_counts_only_near_the_cap() -> None:
    calls: list[str] = []

    def count(env: str, uid: str) -> int:
        calls.append(uid)
        return 95

    guard = QuotaGuard(count_waiting=count, clock=Clock())
    q = Quotas(submits_per_minute=10_000, max_waiting=100)
    guard.check("dev", "u", q, n=10)
    assert calls == []  # far below the cap: no billed count
    with pytest.raises(RateLimited, match="already has 95 jobs waiting"):
        guard.check("dev", "u", q, n=45)
    assert calls == ["u"]
