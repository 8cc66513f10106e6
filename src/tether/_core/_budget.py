"""Retry budget: retries may add only a bounded fraction of load on top of first attempts.

Modelled on Finagle's `RetryBudget`: over a sliding window (default 10 s) retries are allowed up
to `percent` of first attempts plus a floor of `min_per_second * window`, so a quiet client can
still retry while a busy one in an outage cannot multiply its load into a retry storm.
"""

from __future__ import annotations

import math

__all__ = ["RetryBudgetState"]


class RetryBudgetState:
    """Counts first attempts and retries in one-second slots over a sliding window."""

    __slots__ = ("_floor", "_percent", "_requests", "_retries", "_slot", "_slots")

    def __init__(self, *, percent: float, min_per_second: float, window: float) -> None:
        self._slots = max(1, math.ceil(window))
        self._percent = percent
        self._floor = min_per_second * window
        self._requests = [0] * self._slots
        self._retries = [0] * self._slots
        # Absolute second number of the newest slot; older slots are cleared lazily on advance.
        self._slot = 0

    def _advance(self, now: float) -> int:
        current = int(now)
        gap = current - self._slot
        if gap > 0:
            if gap >= self._slots:
                for index in range(self._slots):
                    self._requests[index] = 0
                    self._retries[index] = 0
            else:
                for step in range(1, gap + 1):
                    index = (self._slot + step) % self._slots
                    self._requests[index] = 0
                    self._retries[index] = 0
            self._slot = current
        return current % self._slots

    def deposit(self, now: float) -> None:
        """Record a first attempt."""
        self._requests[self._advance(now)] += 1

    def try_withdraw(self, now: float) -> bool:
        """Spend one retry if the budget allows it; False means the retry must not happen."""
        index = self._advance(now)
        allowed = self._floor + self._percent * sum(self._requests)
        if sum(self._retries) + 1 > allowed:
            return False
        self._retries[index] += 1
        return True

    def balance(self, now: float) -> float:
        """Retries still allowed in the current window."""
        self._advance(now)
        return self._floor + self._percent * sum(self._requests) - sum(self._retries)
