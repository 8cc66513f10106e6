"""Backoff delays. Pure: randomness is passed in so tests are exact."""

from __future__ import annotations

__all__ = ["full_jitter"]


def full_jitter(retry: int, *, base: float, cap: float, rand: float) -> float:
    """Delay before retry number `retry` (1 for the first retry), with full jitter.

    Full jitter, `uniform(0, min(cap, base * 2 ** (retry - 1)))`, spreads a herd of clients
    that failed together across the whole window instead of re-synchronising them
    (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015). `rand` is in [0, 1];
    1.0 gives the ceiling itself, which is how jitter is switched off.
    """
    # The exponent is clamped so a large retry number cannot overflow the float.
    ceiling = min(cap, base * 2.0 ** min(retry - 1, 62))
    return ceiling * rand
