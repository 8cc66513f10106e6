"""GCRA rate limits, the shorthand parser and the AIMD controller, on a fake clock."""

from __future__ import annotations

import bisect
import math

import pytest

from tether._core._ratelimit import GCRA, AdaptiveRate, Limit, parse_limit
from tether._errors import ConfigError

# -- the shorthand --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate", "per"),
    [
        ("60/min", 60, 60),
        ("10/s", 10, 1),
        ("10/second", 10, 1),
        ("1000/h", 1000, 3600),
        ("5000/hour", 5000, 3600),
        ("100/day", 100, 86400),
        ("3/5s", 3, 5),
        ("2/10min", 2, 600),
        (" 7 / Minute ", 7, 60),
        ("0.5/s", 0.5, 1),
        ("20 per minute", 20, 60),
    ],
)
def test_parse_shorthand(text: str, rate: float, per: float) -> None:
    """Shorthand strings give the rate and period they spell, with burst 1 and a drained start."""
    assert parse_limit(text) == Limit(rate=rate, per=per, burst=1, start_full=False)


def test_parse_passes_burst_and_start_full() -> None:
    """Burst and start_full given to the parser end up in the Limit."""
    assert parse_limit("60/min", burst=10, start_full=True) == Limit(
        rate=60, per=60, burst=10, start_full=True
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot parse"),
        ("60", "cannot parse"),
        ("/min", "cannot parse"),
        ("sixty/min", "cannot parse"),
        ("60/fortnight", "unknown time unit"),
        ("0/min", "positive"),
        ("5/0s", "positive"),
        ("-1/s", "cannot parse"),
    ],
)
def test_parse_rejects_bad_strings(text: str, message: str) -> None:
    """Malformed shorthand raises ConfigError saying what was expected."""
    with pytest.raises(ConfigError, match=message):
        parse_limit(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0, "per": 1},
        {"rate": -1, "per": 1},
        {"rate": math.inf, "per": 1},
        {"rate": math.nan, "per": 1},
        {"rate": 1, "per": 0},
        {"rate": 1, "per": 1, "burst": 0},
        {"rate": 1, "per": 1, "burst": 1.5},
        {"rate": True, "per": 1},
    ],
)
def test_limit_validates(kwargs: dict[str, float]) -> None:
    """A Limit refuses non-positive, non-finite or non-integer-burst settings."""
    with pytest.raises(ConfigError):
        Limit(**kwargs)  # type: ignore[arg-type]


# -- burst semantics ------------------------------------------------------------------------


def admitted_at_once(gcra: GCRA, now: float, attempts: int) -> int:
    return sum(1 for _ in range(attempts) if gcra.try_reserve(now, max_wait=0.0) is not None)


def test_sixty_per_minute_is_not_sixty_at_once() -> None:
    """A limit of "60/min" admits one request at once and spaces the rest a second apart."""
    gcra = GCRA(parse_limit("60/min"))
    assert admitted_at_once(gcra, 100.0, 60) == 1
    assert gcra.peek(100.0) == pytest.approx(1.0)


def test_burst_is_not_granted_before_it_is_earned() -> None:
    """With burst=10 but a drained start, the burst must first build up while idle."""
    gcra = GCRA(parse_limit("60/min", burst=10))
    assert admitted_at_once(gcra, 0.0, 10) == 1
    # Ten idle seconds refill the whole burst.
    assert admitted_at_once(gcra, 11.0, 20) == 10


def test_start_full_grants_the_burst_immediately() -> None:
    """With burst=10 and start_full, ten requests pass at once and the eleventh waits."""
    gcra = GCRA(parse_limit("60/min", burst=10, start_full=True))
    assert [gcra.reserve(5.0) for _ in range(10)] == [0.0] * 10
    assert gcra.reserve(5.0) == pytest.approx(1.0)


def test_bucket_starts_at_first_use_not_at_construction() -> None:
    """A limiter idle since construction does not hand out a burst on its first use."""
    gcra = GCRA(parse_limit("10/s", burst=5))
    assert admitted_at_once(gcra, 3600.0, 5) == 1


def test_reservations_queue_in_fifo_order() -> None:
    """Each reservation waits behind the previous ones, even when they arrive together."""
    gcra = GCRA(parse_limit("2/s"))
    waits = [gcra.reserve(10.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


def test_large_request_is_not_overtaken_by_small_ones() -> None:
    """A heavy request that has to wait keeps its place: later light requests queue behind it."""
    gcra = GCRA(Limit(rate=10, per=1, burst=10, start_full=True))
    assert gcra.reserve(0.0, 10) == 0.0
    heavy = gcra.reserve(0.0, 10)
    light = gcra.reserve(0.0, 1)
    assert heavy == pytest.approx(1.0)
    assert light > heavy


@pytest.mark.parametrize(("cost", "wait"), [(1, 0.1), (4, 0.4), (10, 1.0)])
def test_weighted_cost_waits_in_proportion(cost: float, wait: float) -> None:
    """Once the bucket is empty, a request of weight n waits n emission intervals."""
    gcra = GCRA(Limit(rate=10, per=1, burst=10, start_full=True))
    gcra.reserve(0.0, 10)
    assert gcra.reserve(0.0, cost) == pytest.approx(wait)


def test_first_request_passes_whatever_its_cost() -> None:
    """On a drained start the first request passes at once and leaves the bucket empty."""
    gcra = GCRA(Limit(rate=100, per=1, burst=100))
    assert gcra.reserve(0.0, 60) == 0.0
    assert gcra.peek(0.0, 1) == pytest.approx(0.01)


def test_cost_above_burst_is_a_config_error() -> None:
    """A cost the bucket can never hold raises instead of waiting forever."""
    gcra = GCRA(parse_limit("10/s", burst=5))
    with pytest.raises(ConfigError, match="burst"):
        gcra.reserve(0.0, 6)


@pytest.mark.parametrize("cost", [-1.0, math.nan, math.inf])
def test_invalid_cost_is_a_config_error(cost: float) -> None:
    """Negative, NaN and infinite costs are rejected."""
    with pytest.raises(ConfigError):
        GCRA(parse_limit("10/s")).reserve(0.0, cost)


def test_zero_cost_is_free() -> None:
    """A request of cost 0 neither waits nor uses capacity."""
    gcra = GCRA(parse_limit("1/s"))
    gcra.reserve(0.0)
    assert gcra.reserve(0.0, 0) == 0.0
    assert gcra.peek(0.0) == pytest.approx(1.0)


def test_peek_commits_nothing() -> None:
    """peek reports the wait without taking capacity."""
    gcra = GCRA(parse_limit("1/s"))
    gcra.reserve(0.0)
    assert gcra.peek(0.0) == gcra.peek(0.0) == pytest.approx(1.0)
    assert gcra.reserve(0.0) == pytest.approx(1.0)


# -- several limits at once -----------------------------------------------------------------


def test_several_limits_wait_for_the_strictest() -> None:
    """With 10/s and 20/min the wait is the longer of the two."""
    gcra = GCRA(Limit(rate=10, per=1, burst=10, start_full=True), parse_limit("20/min"))
    assert gcra.reserve(0.0) == 0.0
    assert gcra.reserve(0.0) == pytest.approx(3.0)


def test_refused_reservation_consumes_no_limit() -> None:
    """When one limit would wait too long, try_reserve takes nothing from the other either."""
    per_second = Limit(rate=10, per=1, burst=10, start_full=True)
    gcra = GCRA(per_second, Limit(rate=2, per=3600, burst=2, start_full=True))
    assert gcra.reserve(0.0) == 0.0
    assert gcra.reserve(0.0) == 0.0
    assert gcra.try_reserve(0.0, max_wait=5.0) is None
    assert gcra.peek(0.0) == pytest.approx(1800.0)
    # Dropping the hourly limit keeps the per-second queue: its eight units are all still there.
    gcra.retune(per_second)
    assert gcra.available(0.0) == pytest.approx(8)


def test_all_limits_are_charged_at_the_common_departure() -> None:
    """A request delayed by one limit is charged to the others when it actually leaves."""
    fast = Limit(rate=1, per=1, burst=1, start_full=True)
    slow = Limit(rate=1, per=10, burst=1, start_full=True)
    gcra = GCRA(fast, slow)
    assert gcra.reserve(0.0) == 0.0
    assert gcra.reserve(0.0) == pytest.approx(10.0)
    # The second request leaves at t=10, so the fast limit is busy until 11, not until 2.
    assert gcra.reserve(0.0) == pytest.approx(20.0)


def test_per_limit_costs_take_requests_and_tokens_together() -> None:
    """A tuple cost charges each limit its own weight, e.g. one request and 1500 tokens."""
    rpm = Limit(rate=60, per=60, burst=60, start_full=True)
    tpm = Limit(rate=6000, per=60, burst=6000, start_full=True)
    gcra = GCRA(rpm, tpm)
    assert gcra.reserve(0.0, (1, 3000)) == 0.0
    assert gcra.reserve(0.0, (1, 3000)) == 0.0
    # Tokens are exhausted; 1500 more refill at 100 tokens/s.
    assert gcra.reserve(0.0, (1, 1500)) == pytest.approx(15.0)


def test_per_limit_costs_must_match_the_limits() -> None:
    """A tuple cost with the wrong number of entries is a ConfigError."""
    gcra = GCRA(parse_limit("1/s"), parse_limit("10/min"))
    with pytest.raises(ConfigError, match="one per limit"):
        gcra.reserve(0.0, (1, 1, 1))


# -- max_wait, refund, reconcile ------------------------------------------------------------


@pytest.mark.parametrize("limits", [1, 2])
def test_max_wait_refusal_commits_nothing(limits: int) -> None:
    """A try_reserve refused for max_wait leaves the state exactly as it was."""
    gcra = GCRA(*[parse_limit("1/s")] * limits)
    gcra.reserve(0.0)
    gcra.reserve(0.0)
    assert gcra.try_reserve(0.0, max_wait=1.5) is None
    assert gcra.peek(0.0) == pytest.approx(2.0)
    assert gcra.try_reserve(0.0, max_wait=2.0) == pytest.approx(2.0)


def test_refund_returns_capacity() -> None:
    """Refunding a reservation lets the next caller go as if it had never been made."""
    gcra = GCRA(Limit(rate=1, per=1, burst=5, start_full=True))
    gcra.reserve(0.0, 5)
    assert gcra.peek(0.0, 3) == pytest.approx(3.0)
    gcra.refund(0.0, 3)
    assert gcra.peek(0.0, 3) == 0.0


def test_refund_never_fills_beyond_full() -> None:
    """A refund larger than what was used cannot create credit beyond the burst."""
    gcra = GCRA(Limit(rate=1, per=1, burst=5, start_full=True))
    gcra.reserve(0.0, 1)
    gcra.refund(0.0, 5)
    assert gcra.available(0.0) == 5
    assert [gcra.try_reserve(0.0, max_wait=0) for _ in range(6)][-1] is None


def test_reconcile_refunds_unused_tokens() -> None:
    """Estimated 4000 tokens, used 1000: the 3000 difference is available again."""
    gcra = GCRA(Limit(rate=100, per=1, burst=5000, start_full=True))
    gcra.reserve(0.0, 4000)
    gcra.reconcile(0.0, reserved=4000, actual=1000)
    assert gcra.available(0.0) == pytest.approx(4000)


def test_reconcile_charges_an_overrun_to_later_callers() -> None:
    """Used more than reserved: the overrun is charged and later callers wait for it."""
    gcra = GCRA(Limit(rate=100, per=1, burst=1000, start_full=True))
    gcra.reserve(0.0, 1000)
    gcra.reconcile(0.0, reserved=1000, actual=1500)
    assert gcra.peek(0.0, 100) == pytest.approx(6.0)


def test_retune_keeps_the_queue() -> None:
    """Changing the rate keeps reservations already made and spaces new ones at the new rate."""
    gcra = GCRA(parse_limit("1/s"))
    gcra.reserve(0.0)
    gcra.reserve(0.0)  # leaves at 1.0; the bucket is busy until 2.0
    gcra.retune(parse_limit("1/10s"))
    assert gcra.reserve(0.0) == pytest.approx(2.0)
    assert gcra.reserve(0.0) == pytest.approx(12.0)


# -- accuracy -------------------------------------------------------------------------------


def max_in_window(stamps: list[float], window: float) -> int:
    """The most events in any half-open window [t, t + window) over sorted timestamps."""
    return max(bisect.bisect_left(stamps, t + window - 1e-9) - i for i, t in enumerate(stamps))


@pytest.mark.parametrize(
    "limit",
    [
        parse_limit("10/s"),
        parse_limit("100/s", burst=20),
        parse_limit("100/s", burst=20, start_full=True),
        parse_limit("30/5s", burst=3),
        parse_limit("60/min", burst=1),
    ],
    ids=str,
)
@pytest.mark.parametrize("callers", [1, 8])
def test_accuracy_over_ten_seconds(limit: Limit, callers: int) -> None:
    """Greedy callers get >= 97 % of the rate and never more than rate*window + burst."""
    duration = 10.0
    gcra = GCRA(limit)
    clocks = [0.0] * callers
    admitted: list[float] = []
    while True:
        caller = min(range(callers), key=clocks.__getitem__)
        now = clocks[caller]
        departure = now + gcra.reserve(now)
        if departure >= duration:
            break
        admitted.append(departure)
        clocks[caller] = departure
    allowed = limit.rate / limit.per * duration
    assert len(admitted) >= 0.97 * allowed
    admitted.sort()
    for window in (limit.per, duration / 4, duration):
        assert max_in_window(admitted, window) <= limit.rate / limit.per * window + limit.burst


# -- the AIMD controller --------------------------------------------------------------------


def test_adaptive_starts_unlimited() -> None:
    """With no limit configured and no signal yet there is no rate to enforce."""
    adaptive = AdaptiveRate()
    assert adaptive.rate is None
    assert adaptive.limit is None
    assert adaptive.resume_at == -math.inf


def test_adaptive_starts_at_the_ceiling() -> None:
    """A configured ceiling is the rate until the server says otherwise."""
    adaptive = AdaptiveRate(ceiling=5.0, burst=2)
    assert adaptive.limit == Limit(rate=5.0, per=1.0, burst=2)


def feed(adaptive: AdaptiveRate, *, rate: float, start: float, seconds: float) -> float:
    now = start
    while now < start + seconds:
        adaptive.sent(now)
        now += 1 / rate
    return now


def test_bare_429_halves_the_measured_rate() -> None:
    """A 429 with nothing else known cuts the rate to half of what was being sent."""
    adaptive = AdaptiveRate()
    now = feed(adaptive, rate=20, start=0.0, seconds=3.0)
    adaptive.throttled(now)
    assert adaptive.rate == pytest.approx(10.0, rel=0.05)


def test_repeated_429s_cut_once_per_cooldown() -> None:
    """A burst of 429s answering one burst of requests counts as one signal."""
    adaptive = AdaptiveRate(ceiling=8.0)
    adaptive.throttled(0.0)
    for _ in range(5):
        adaptive.throttled(0.5)
    assert adaptive.rate == 4.0
    adaptive.throttled(1.0)
    assert adaptive.rate == 2.0


def test_rate_never_drops_below_the_floor() -> None:
    """However many 429s arrive, the rate stays at or above the floor."""
    adaptive = AdaptiveRate(ceiling=1.0, floor=0.25, cooldown=0.0)
    for second in range(10):
        adaptive.throttled(float(second))
    assert adaptive.rate == 0.25


def test_healthy_responses_recover_additively() -> None:
    """After a cut, each healthy second adds 5 % of the old rate until the ceiling is back."""
    adaptive = AdaptiveRate(ceiling=10.0)
    adaptive.throttled(0.0)
    assert adaptive.rate == 5.0
    adaptive.succeeded(0.5)
    assert adaptive.rate == 5.0
    adaptive.succeeded(1.0)
    assert adaptive.rate == pytest.approx(5.5)
    adaptive.succeeded(4.0)
    assert adaptive.rate == pytest.approx(7.0)
    adaptive.succeeded(20.0)
    assert adaptive.rate == 10.0


def test_retry_after_pauses_sending() -> None:
    """A 429 with Retry-After sets resume_at so that nothing is sent before then."""
    adaptive = AdaptiveRate()
    adaptive.throttled(100.0, retry_after=30.0)
    assert adaptive.resume_at == 130.0


def test_low_remaining_spreads_the_rest_over_the_window() -> None:
    """When little quota is left the rate becomes remaining / reset_in."""
    adaptive = AdaptiveRate()
    adaptive.observe(0.0, remaining=5, limit=100, reset_in=10.0)
    assert adaptive.rate == pytest.approx(0.5)


def test_healthy_remaining_lifts_the_quota_cap() -> None:
    """A later observation with plenty left removes the quota cap again."""
    adaptive = AdaptiveRate()
    adaptive.observe(0.0, remaining=5, limit=100, reset_in=10.0)
    adaptive.observe(10.0, remaining=100, limit=100, reset_in=60.0)
    assert adaptive.rate is None


def test_remaining_that_the_send_rate_would_exhaust_is_low() -> None:
    """Without a known limit, remaining is low when the current pace would use it up early."""
    adaptive = AdaptiveRate()
    now = feed(adaptive, rate=10, start=0.0, seconds=3.0)
    adaptive.observe(now, remaining=100, reset_in=30.0)
    assert adaptive.rate == pytest.approx(100 / 30)
    adaptive.observe(now, remaining=1000, reset_in=30.0)
    assert adaptive.rate is None


def test_exhausted_quota_pauses_until_reset() -> None:
    """remaining == 0 pauses all sending until the window resets."""
    adaptive = AdaptiveRate()
    adaptive.observe(50.0, remaining=0, limit=60, reset_in=12.0)
    assert adaptive.resume_at == 62.0


def test_quota_and_aimd_caps_combine() -> None:
    """The allowed rate is the smaller of the quota cap and the AIMD cap."""
    adaptive = AdaptiveRate(ceiling=10.0)
    adaptive.throttled(0.0)
    adaptive.observe(0.0, remaining=2, limit=100, reset_in=1.0)
    assert adaptive.rate == 2.0
    adaptive.observe(0.0, remaining=50, limit=100, reset_in=1.0)
    assert adaptive.rate == 5.0


def test_adaptive_limit_drives_a_gcra() -> None:
    """The controller's Limit can retune a GCRA, and the version tells when to do so."""
    adaptive = AdaptiveRate(ceiling=4.0)
    gcra = GCRA(adaptive.limit or parse_limit("4/s"))
    version = adaptive.version
    adaptive.throttled(0.0)
    assert adaptive.version != version
    assert adaptive.limit is not None
    gcra.retune(adaptive.limit)
    gcra.reserve(0.0)
    assert gcra.reserve(0.0) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ceiling": 0.0},
        {"floor": 0.0},
        {"decrease": 1.0},
        {"decrease": 0.0},
        {"increase": 0.0},
        {"low_watermark": 1.0},
        {"cooldown": -1.0},
        {"burst": 0},
    ],
)
def test_adaptive_validates(kwargs: dict[str, float]) -> None:
    """Nonsensical controller settings raise ConfigError."""
    with pytest.raises(ConfigError):
        AdaptiveRate(**kwargs)  # type: ignore[arg-type]
