"""The Cloud Tasks retry backoff, as one pure function.

With m = min_backoff, D = max_doublings and k the retry number (1 for the first retry):
the delay doubles `D` times, then grows linearly by `m * 2**D` per retry, and is capped at max_backoff.
Documented example (m=10 s, D=3, cap 300 s): 10, 20, 40, 80, 160, 240, 300, 300, ...
"""

from __future__ import annotations


def backoff_seconds(retry: int, *, min_backoff: float, max_backoff: float, max_doublings: int) -> float:
    """Seconds to wait before retry number `retry` (1-based)."""
    if retry < 1:
        raise ValueError("retry numbers start at 1")
    k = retry - 1
    if k <= max_doublings:
        delay = min_backoff * 2**k
    else:
        delay = min_backoff * 2**max_doublings * (k - max_doublings + 1)
    return float(min(delay, max_backoff))
