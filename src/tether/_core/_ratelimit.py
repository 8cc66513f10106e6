"""Client-side rate limits: GCRA arithmetic, the shorthand parser and an AIMD controller.

GCRA (the generic cell rate algorithm of ATM networks, ITU-T I.371) is a token bucket kept as a
single number per limit: the *theoretical arrival time* (TAT), the moment the bucket would be
empty again if nothing else arrived. With emission interval `T = per / rate` and a capacity of
`burst` events, an event of weight `cost` arriving at `now` may proceed at

    max(TAT, now) + cost * T - burst * T

and moves TAT to `max(TAT, departure) + cost * T`. Because a reservation moves TAT even when
it has to wait, concurrent callers queue in the order they reserved (FIFO) and nobody can
overtake a large request, which is aiolimiter's starvation bug (#217). It is also what the
`limits` GCRA proposal (alisaifee/limits #358) and Redis 8.8's native `GCRA` command compute,
so a Redis-backed limiter can share these semantics.

Two semantics are chosen on purpose, after aiolimiter's most reported surprise (#90, #200,
#298, #304: an idle limiter admits a whole period's worth at once):

* `burst` defaults to 1: "60/min" means one request per second, evenly spaced. That is the only
  reading that no server-side algorithm (fixed window, sliding window, token bucket) can
  reject, and it delivers the same throughput over the period. A burst is opt-in.
* `start_full=False` (the default) starts the bucket drained: the first request is admitted at
  once, whatever its cost, and leaves the bucket empty; capacity then refills at `rate`, so a
  burst has to be earned by idle time. `start_full=True` starts with the full `burst` available.

The bucket starts at its first use, not at construction: a limiter built at import time and
first used an hour later still starts drained.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NoReturn

from tether._errors import ConfigError

__all__ = ["GCRA", "AdaptiveRate", "Cost", "Limit", "parse_limit"]


def _positive_number(value: object) -> bool:
    # bool is an int subclass; `rate=True` is a mistake, not "1".
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """At most `rate` events per `per` seconds, with up to `burst` of them at once."""

    rate: float
    per: float
    burst: int = 1
    start_full: bool = False

    def __post_init__(self) -> None:
        if not _positive_number(self.rate):
            raise ConfigError(f"rate limit rate must be a positive number, got {self.rate!r}")
        if not _positive_number(self.per):
            raise ConfigError(
                f"rate limit period must be a positive number of seconds, got {self.per!r}"
            )
        if not _positive_int(self.burst):
            raise ConfigError(f"rate limit burst must be an integer >= 1, got {self.burst!r}")
        if not isinstance(self.start_full, bool):
            raise ConfigError(f"start_full must be a bool, got {self.start_full!r}")

    @property
    def interval(self) -> float:
        """Seconds of capacity one unit of cost uses up (the GCRA emission interval)."""
        return self.per / self.rate


_UNITS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}

_SHORTHAND = re.compile(
    r"""\s*(?P<rate>\d+(?:\.\d+)?)\s*
        (?:/|\s+per\s+)\s*
        (?P<count>\d+(?:\.\d+)?)?\s*
        (?P<unit>[a-z]+)\s*""",
    re.IGNORECASE | re.VERBOSE,
)


def parse_limit(text: str, *, burst: int = 1, start_full: bool = False) -> Limit:
    """Parse shorthand such as "60/min", "10/s", "5000/hour", "100/day" or "3/5s".

    A number before the unit multiplies it ("3/5s" is three events per five seconds).
    """
    if not isinstance(text, str):
        raise ConfigError(f"rate limit must be a string like '60/min', got {type(text).__name__}")
    match = _SHORTHAND.fullmatch(text)
    if match is None:
        raise ConfigError(
            f"cannot parse rate limit {text!r}: expected '<count>/<unit>' such as '60/min', "
            "'10/s', '5000/hour', '100/day' or '3/5s'"
        )
    unit = _UNITS.get(match["unit"].lower())
    if unit is None:
        raise ConfigError(
            f"unknown time unit {match['unit']!r} in rate limit {text!r}: use s, min, h or day"
        )
    count = float(match["count"]) if match["count"] else 1.0
    rate = float(match["rate"])
    if rate <= 0 or count <= 0:
        raise ConfigError(f"rate limit {text!r} must have a positive count and period")
    return Limit(rate=rate, per=count * unit, burst=burst, start_full=start_full)


Cost = float | tuple[float, ...]
"""A weight for every limit alike, or one weight per limit (e.g. `(1, 1500)` for RPM + TPM)."""


class GCRA:
    """One or several limits acquired together, with weighted costs.

    All methods take the current monotonic time in seconds. `reserve` commits and returns the
    wait; the caller sleeps that long and then proceeds, so reservations are served in the
    order they were made. With several limits (say 10/s and 1000/h, or RPM and TPM) the wait
    is the longest of them and every limit is charged at the same departure time, or none is.

    A cost is one number charged to every limit, or a tuple with one number per limit, so
    requests-per-minute and tokens-per-minute can be taken in one atomic step.
    """

    __slots__ = (
        "_bursts",
        "_capacity",
        "_full",
        "_interval",
        "_limits",
        "_min_burst",
        "_n",
        "_tat",
    )

    def __init__(self, *limits: Limit) -> None:
        self._tat: list[float | None] = []
        self._limits: tuple[Limit, ...] = ()
        self._interval: tuple[float, ...] = ()
        self._capacity: tuple[float, ...] = ()
        self._bursts: tuple[int, ...] = ()
        self._full: tuple[bool, ...] = ()
        self._min_burst = 1
        self._n = 0
        self.retune(*limits)

    @property
    def limits(self) -> tuple[Limit, ...]:
        return self._limits

    def retune(self, *limits: Limit) -> None:
        """Replace the limits, keeping each position's queue.

        A TAT is a point in time (when the already committed reservations are through), so it
        stays valid under a new rate: reservations already handed out keep their slots and new
        ones are spaced at the new rate after them. This is how an adaptive controller changes
        the rate without letting a burst through.
        """
        if not limits:
            raise ConfigError("a rate limiter needs at least one limit")
        for limit in limits:
            if not isinstance(limit, Limit):
                raise ConfigError(f"expected a Limit, got {type(limit).__name__}")
        kept = self._tat[: len(limits)]
        self._tat = kept + [None] * (len(limits) - len(kept))
        self._limits = limits
        self._interval = tuple(limit.interval for limit in limits)
        self._capacity = tuple(limit.burst * limit.interval for limit in limits)
        self._bursts = tuple(limit.burst for limit in limits)
        self._full = tuple(limit.start_full for limit in limits)
        self._min_burst = min(self._bursts)
        self._n = len(limits)

    def _steps(self, cost: Cost) -> tuple[float, ...] | None:
        """Seconds of capacity the cost uses on each limit; None when it is free."""
        if not isinstance(cost, tuple):
            # One number for every limit: validate once against the smallest burst (NaN and
            # infinity fail the range check too).
            if not 0 <= cost <= self._min_burst:
                self._reject(cost, self._min_burst)
            if cost == 0:
                return None
            if self._n == 1:
                return (cost * self._interval[0],)
            return tuple([cost * interval for interval in self._interval])
        if len(cost) != self._n:
            raise ConfigError(f"expected {self._n} costs, one per limit, got {len(cost)}: {cost!r}")
        for value, burst in zip(cost, self._bursts, strict=True):
            if not 0 <= value <= burst:
                self._reject(value, burst)
        if not any(cost):
            return None
        return tuple(
            [value * interval for value, interval in zip(cost, self._interval, strict=True)]
        )

    def _reject(self, cost: float, burst: int) -> NoReturn:
        if not (cost >= 0 and math.isfinite(cost)):
            raise ConfigError(f"rate limit cost must be a finite number >= 0, got {cost!r}")
        # Waiting would never end: the bucket cannot hold this much at once.
        raise ConfigError(
            f"cost {cost:g} exceeds the burst capacity {burst} of this rate limit; "
            "raise burst to at least the largest cost"
        )

    def _departure(self, now: float, steps: tuple[float, ...]) -> float:
        """When a request arriving at `now` may proceed under every limit."""
        departure = now
        capacity = self._capacity
        tats = self._tat
        for index in range(self._n):
            tat = tats[index]
            if tat is None:
                # Unused limit: a full bucket admits at once, and so does a drained one for
                # its very first request (see the module docstring).
                continue
            # Conditional expressions instead of max(): this is the per-request hot path.
            allowed = (tat if tat > now else now) + steps[index] - capacity[index]  # noqa: FURB136
            if allowed > departure:  # noqa: PLR1730
                departure = allowed
        return departure

    def _commit(self, departure: float, steps: tuple[float, ...]) -> None:
        tats = self._tat
        for index in range(self._n):
            tat = tats[index]
            if tat is None:
                # Full: TAT0 = departure. Drained: TAT0 = departure + capacity - step, so the
                # first request passes and leaves the bucket exactly empty.
                tats[index] = departure + (
                    steps[index] if self._full[index] else self._capacity[index]
                )
            else:
                tats[index] = (tat if tat > departure else departure) + steps[index]  # noqa: FURB136

    def reserve(self, now: float, cost: Cost = 1.0) -> float:
        """Commit a request of weight `cost` and return the seconds to wait before sending it."""
        if self._n == 1 and not isinstance(cost, tuple):
            return self._reserve_one(now, cost, math.inf)
        steps = self._steps(cost)
        if steps is None:
            return 0.0
        departure = self._departure(now, steps)
        self._commit(departure, steps)
        return departure - now if departure > now else 0.0

    def _reserve_one(self, now: float, cost: float, max_wait: float) -> float:
        """`try_reserve` for the common case of one limit and one number, inlined; -1.0 means
        refused.

        With a single limit the departure never exceeds max(TAT, now), so the new TAT is
        simply max(TAT, now) + step.
        """
        if not 0 < cost <= self._min_burst:
            if cost == 0:
                return 0.0
            self._reject(cost, self._min_burst)
        step = cost * self._interval[0]
        tat = self._tat[0]
        if tat is None:
            self._tat[0] = now + (step if self._full[0] else self._capacity[0])
            return 0.0
        base = tat if tat > now else now  # noqa: FURB136
        wait = base + step - self._capacity[0] - now
        if wait <= 0:
            self._tat[0] = base + step
            return 0.0
        if wait > max_wait:
            return -1.0
        self._tat[0] = base + step
        return wait

    def peek(self, now: float, cost: Cost = 1.0) -> float:
        """Seconds a request of weight `cost` would wait now, without reserving anything."""
        steps = self._steps(cost)
        if steps is None:
            return 0.0
        departure = self._departure(now, steps)
        return departure - now if departure > now else 0.0

    def try_reserve(self, now: float, cost: Cost = 1.0, *, max_wait: float) -> float | None:
        """Reserve only if the wait is at most `max_wait`; otherwise commit nothing, return None."""
        if self._n == 1 and not isinstance(cost, tuple):
            wait = self._reserve_one(now, cost, max_wait)
            return None if wait < 0 else wait
        steps = self._steps(cost)
        if steps is None:
            return 0.0
        departure = self._departure(now, steps)
        wait = departure - now if departure > now else 0.0
        if wait > 0 and wait > max_wait:
            return None
        self._commit(departure, steps)
        return wait

    def refund(self, now: float, cost: Cost) -> None:
        """Give back capacity that was reserved but not used: a cancelled wait, or a request
        whose real cost turned out lower (LLM tokens). The bucket never ends up fuller than
        full, so a refund cannot create credit beyond `burst`.
        """
        steps = self._steps(cost)
        if steps is None:
            return
        tats = self._tat
        for index in range(self._n):
            tat = tats[index]
            if tat is None:
                continue
            refunded = tat - steps[index]
            tats[index] = max(now, refunded)

    def _per_limit(self, cost: Cost) -> tuple[float, ...]:
        costs = cost if isinstance(cost, tuple) else (cost,) * self._n
        if len(costs) != self._n:
            raise ConfigError(
                f"expected {self._n} costs, one per limit, got {len(costs)}: {cost!r}"
            )
        for value in costs:
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"rate limit cost must be a finite number >= 0, got {value!r}")
        return costs

    def charge(self, now: float, cost: Cost) -> None:
        """Charge capacity that was used without a reservation, without waiting: an overrun
        found after the response (more tokens than estimated). It may exceed `burst`, since
        it has already been spent; later callers wait for it instead.
        """
        tats = self._tat
        for index, value in enumerate(self._per_limit(cost)):
            if not value:
                continue
            tat = tats[index]
            base = now if tat is None or tat < now else tat
            tats[index] = base + value * self._interval[index]

    def reconcile(self, now: float, *, reserved: Cost, actual: Cost) -> None:
        """Settle a reservation once the real cost is known: refund what was not used, charge
        what was used beyond the reservation.
        """
        reserved_t = self._per_limit(reserved)
        actual_t = self._per_limit(actual)
        self.refund(now, tuple(max(0.0, r - a) for r, a in zip(reserved_t, actual_t, strict=True)))
        self.charge(now, tuple(max(0.0, a - r) for r, a in zip(reserved_t, actual_t, strict=True)))

    def available(self, now: float) -> float:
        """Units of cost a request could take right now without waiting (the smallest across
        limits); for metrics and the hub's status page.
        """
        best = math.inf
        for index in range(self._n):
            tat = self._tat[index]
            if tat is None:
                units = float(self._bursts[index])
            else:
                debt = tat - now if tat > now else 0.0
                units = (self._capacity[index] - debt) / self._interval[index]
            best = min(best, units)
        return max(0.0, best)


class AdaptiveRate:
    """An AIMD rate controller fed with what the server says about its quota.

    The allowed rate (events per second) is the smaller of two caps, either of which may be
    absent, which is how the controller starts when no limit is configured:

    * the *quota cap*: when the server's advertised `remaining` runs low (at most
      `low_watermark` of the quota, or less than the measured send rate would use before the
      reset), the rate is capped at `remaining / reset_in`, spreading what is left evenly
      over what is left of the window. Each observation replaces the previous one; when
      `remaining` is healthy again the cap is lifted. `remaining == 0` pauses all sending
      until the reset (`resume_at`).
    * the *AIMD cap*: a bare 429 multiplies the rate by `decrease` (TCP's multiplicative
      decrease; AWS SDK adaptive mode does the same with CUBIC), starting from the measured
      send rate when no cap was set yet. At most one cut per `cooldown`, so the burst of 429s
      that answers one burst of requests counts once. Healthy responses then add
      `increase * (rate before the cut)` (at least `floor`) per `increase_interval` (additive
      increase), so a halved rate is back where it was after `0.5 / increase` intervals
      (10 s by default). When the cap reaches `ceiling` it is dropped.

    `ceiling` is the configured static limit, if any: the controller never exceeds it.
    """

    __slots__ = (
        "_aimd",
        "_burst",
        "_ceiling",
        "_cooldown",
        "_count",
        "_decrease",
        "_floor",
        "_increase",
        "_increase_interval",
        "_last_cut",
        "_last_increase",
        "_low_watermark",
        "_measure_interval",
        "_measured",
        "_quota_cap",
        "_resume_at",
        "_step",
        "_version",
        "_window_start",
    )

    def __init__(
        self,
        *,
        ceiling: float | None = None,
        floor: float = 0.05,
        decrease: float = 0.5,
        increase: float = 0.05,
        increase_interval: float = 1.0,
        cooldown: float = 1.0,
        low_watermark: float = 0.1,
        measure_interval: float = 1.0,
        burst: int = 1,
    ) -> None:
        if ceiling is not None and not (math.isfinite(ceiling) and ceiling > 0):
            raise ConfigError(f"ceiling must be a positive rate or None, got {ceiling!r}")
        if not (math.isfinite(floor) and floor > 0):
            raise ConfigError(f"floor must be a positive rate, got {floor!r}")
        if not 0 < decrease < 1:
            raise ConfigError(f"decrease must be in (0, 1), got {decrease!r}")
        if not (math.isfinite(increase) and increase > 0):
            raise ConfigError(f"increase must be a positive fraction, got {increase!r}")
        if not 0 <= low_watermark < 1:
            raise ConfigError(f"low_watermark must be in [0, 1), got {low_watermark!r}")
        for name, value in (
            ("increase_interval", increase_interval),
            ("measure_interval", measure_interval),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if not (math.isfinite(cooldown) and cooldown >= 0):
            raise ConfigError(f"cooldown must be >= 0 seconds, got {cooldown!r}")
        if not _positive_int(burst):
            raise ConfigError(f"burst must be an integer >= 1, got {burst!r}")
        self._ceiling = ceiling
        self._floor = floor
        self._decrease = decrease
        self._increase = increase
        self._increase_interval = increase_interval
        self._cooldown = cooldown
        self._low_watermark = low_watermark
        self._measure_interval = measure_interval
        self._burst = burst
        self._aimd: float | None = None
        self._quota_cap: float | None = None
        self._resume_at = -math.inf
        self._last_cut = -math.inf
        self._last_increase = -math.inf
        self._step = 0.0
        self._measured = 0.0
        self._count = 0.0
        self._window_start: float | None = None
        self._version = 0

    # -- reading ---------------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """Allowed events per second now, or None while nothing limits the rate."""
        rate = self._ceiling
        for cap in (self._aimd, self._quota_cap):
            if cap is not None and (rate is None or cap < rate):
                rate = cap
        return rate

    @property
    def limit(self) -> Limit | None:
        """The current rate as a `Limit` to drive a `GCRA` with, or None when unlimited."""
        rate = self.rate
        if rate is None:
            return None
        return Limit(rate=rate, per=1.0, burst=self._burst, start_full=False)

    @property
    def resume_at(self) -> float:
        """Monotonic time before which nothing should be sent (quota exhausted, Retry-After)."""
        return self._resume_at

    @property
    def version(self) -> int:
        """Changes whenever `rate` or `resume_at` may have changed; compare to retune cheaply."""
        return self._version

    def measured_rate(self, now: float) -> float:
        """Smoothed events per second actually sent, as fed through `sent`."""
        start = self._window_start
        if start is None:
            return self._measured
        elapsed = now - start
        if elapsed >= self._measure_interval:
            return self._blend(self._count / elapsed)
        if self._measured == 0.0 and elapsed > 0 and self._count:
            # First window still open: a partial sample is better than claiming zero.
            return self._count / max(elapsed, self._measure_interval / 10)
        return self._measured

    def _blend(self, sample: float) -> float:
        if self._measured == 0.0:
            return sample
        return 0.5 * self._measured + 0.5 * sample

    # -- feeding ---------------------------------------------------------------------------

    def sent(self, now: float, cost: float = 1.0) -> None:
        """Count a request (of `cost`) going out, to measure the real send rate."""
        start = self._window_start
        if start is None:
            self._window_start = now
        elif now - start >= self._measure_interval:
            self._measured = self._blend(self._count / (now - start))
            self._window_start = now
            self._count = 0.0
        self._count += cost

    def observe(
        self,
        now: float,
        *,
        remaining: float | None,
        reset_in: float | None,
        limit: float | None = None,
    ) -> None:
        """Take in the server's quota (from `RateLimit` / `X-RateLimit-*` headers)."""
        if remaining is None or reset_in is None or reset_in < 0 or remaining < 0:
            return
        self._version += 1
        if remaining == 0:
            # Nothing left: stop until the window resets rather than collect 429s.
            self._resume_at = max(self._resume_at, now + reset_in)
            self._quota_cap = None
            return
        if reset_in == 0:
            self._quota_cap = None
            return
        low = (limit is not None and limit > 0 and remaining <= self._low_watermark * limit) or (
            self.measured_rate(now) * reset_in > remaining
        )
        self._quota_cap = remaining / reset_in if low else None

    def throttled(self, now: float, *, retry_after: float | None = None) -> None:
        """A 429 (or 503 with throttling advice) arrived: pause as advised and cut the rate."""
        self._version += 1
        if retry_after is not None and retry_after > 0:
            self._resume_at = max(self._resume_at, now + retry_after)
        if now - self._last_cut < self._cooldown:
            return
        base = self.rate
        if base is None:
            base = self.measured_rate(now)
        if base <= 0:
            base = self._floor
        cut = max(self._floor, base * self._decrease)
        if self._ceiling is not None:
            cut = min(cut, self._ceiling)
        self._aimd = cut
        # At least one floor's worth per interval, so a cut from an unknown rate down to the
        # floor does not take hours to recover.
        self._step = max(self._increase * base, self._floor)
        self._last_cut = now
        self._last_increase = now

    def succeeded(self, now: float) -> None:
        """A healthy response: grow the AIMD cap additively, one step per elapsed interval."""
        aimd = self._aimd
        if aimd is None:
            return
        elapsed = now - self._last_increase
        if elapsed < self._increase_interval:
            return
        steps = math.floor(elapsed / self._increase_interval)
        self._last_increase += steps * self._increase_interval
        aimd += steps * self._step
        self._version += 1
        if self._ceiling is not None and aimd >= self._ceiling:
            self._aimd = None
            return
        self._aimd = aimd
