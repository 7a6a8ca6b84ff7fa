import pytest

from jobrelay.backoff import backoff_seconds


def test_documented_example_doubles_then_grows_linearly_then_caps() -> None:
    delays = [backoff_seconds(k, min_backoff=10, max_backoff=300, max_doublings=3) for k in range(1, 10)]
    assert delays == [10, 20, 40, 80, 160, 240, 300, 300, 300]


@pytest.mark.parametrize(("retry", "expected"), [(1, 1.0), (2, 2.0), (5, 16.0), (6, 32.0), (7, 48.0), (20, 60.0)])
def test_class_a_backoff(retry: int, expected: float) -> None:
    assert backoff_seconds(retry, min_backoff=1, max_backoff=60, max_doublings=4) == expected


def test_zero_doublings_grows_linearly() -> None:
    assert [backoff_seconds(k, min_backoff=5, max_backoff=100, max_doublings=0) for k in (1, 2, 3)] == [
        5,
        10,
        15,
    ]


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        backoff_seconds(0, min_backoff=1, max_backoff=2, max_doublings=1)
