"""The circuit breaker state machine, driven by a fake clock and fixed random draws."""

from __future__ import annotations

import pytest

from tether._core._breaker import (
    ADMITTED,
    BreakerConfig,
    BreakerState,
    CircuitState,
    Decision,
    ErrorKind,
    Outcome,
    Transition,
    TransitionReason,
    classify,
)
from tether._errors import ConfigError

S, F, IG = Outcome.SUCCESS, Outcome.FAILURE, Outcome.IGNORED


def breaker(rand: float = 0.0, **config: float) -> BreakerState:
    return BreakerState(BreakerConfig(**config), random=lambda: rand)  # type: ignore[arg-type]


def run(state: BreakerState, now: float, outcomes: list[Outcome], duration: float = 0.1) -> None:
    for outcome in outcomes:
        assert state.allow(now).admitted
        state.record(now, outcome, duration)


def open_breaker(state: BreakerState, now: float) -> Transition:
    """Fail enough calls at `now` to open the circuit and return the transition."""
    transition = None
    while transition is None:
        assert state.allow(now).admitted
        transition = state.record(now, F, 0.1)
    return transition


# -- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [
        (200, None, S),
        (204, None, S),
        (304, None, S),
        (400, None, S),
        (401, None, S),
        (404, None, S),
        (422, None, S),
        (429, None, IG),
        (500, None, F),
        (502, None, F),
        (503, None, F),
        (None, ErrorKind.CONNECT, F),
        (None, ErrorKind.TIMEOUT, F),
        (None, ErrorKind.NETWORK, F),
        (None, ErrorKind.CANCELLED, IG),
        (None, ErrorKind.OTHER, IG),
        (None, None, IG),
    ],
)
def test_classify(status: int | None, kind: ErrorKind | None, expected: Outcome) -> None:
    """Transport errors and 5xx are failures; 429 is ignored; other 4xx are successes."""
    assert classify(status, kind) is expected


def test_classify_ignored_statuses_are_configurable() -> None:
    """A caller may choose to ignore other statuses too, e.g. 503 used for throttling."""
    assert classify(503, ignored_statuses=frozenset({429, 503})) is IG


# -- opening --------------------------------------------------------------------------------


def test_starts_closed_and_admits_with_the_shared_decision() -> None:
    """A new breaker is closed and admits with the preallocated ADMITTED decision."""
    state = breaker()
    assert state.state is CircuitState.CLOSED
    assert state.allow(0.0) is ADMITTED


def test_minimum_calls_before_judging() -> None:
    """Failures below minimum_calls never open the circuit, however high the rate."""
    state = breaker(minimum_calls=10)
    run(state, 0.0, [F] * 9)
    assert state.metrics(0.0).state is CircuitState.CLOSED
    run(state, 0.0, [F])
    assert state.metrics(0.0).state is CircuitState.OPEN


@pytest.mark.parametrize(
    ("failures", "successes", "opens"),
    [(10, 10, True), (9, 11, False), (20, 0, True), (0, 20, False)],
)
def test_failure_rate_threshold(failures: int, successes: int, opens: bool) -> None:
    """The circuit opens when the failure rate reaches 50 % of at least 20 calls."""
    state = breaker()
    run(state, 0.0, [S] * successes + [F] * failures)
    assert (state.state is CircuitState.OPEN) is opens


def test_success_reaching_the_minimum_judges_the_window() -> None:
    """Ten failures then ten successes: the twentieth call (a success) opens the circuit."""
    state = breaker()
    run(state, 0.0, [F] * 10 + [S] * 9)
    assert state.state is CircuitState.CLOSED
    assert state.allow(0.0).admitted
    transition = state.record(0.0, S, 0.1)
    assert transition is not None
    assert transition.reason is TransitionReason.FAILURE_RATE
    assert transition.failure_rate == 0.5


def test_slow_calls_open_the_circuit() -> None:
    """Successful but slow calls open the circuit once they reach the slow-call rate."""
    state = breaker(slow_call_duration=2.0, slow_call_rate=0.8, minimum_calls=10)
    run(state, 0.0, [S] * 2, duration=0.5)
    run(state, 0.0, [S] * 7, duration=2.5)
    assert state.state is CircuitState.CLOSED
    assert state.allow(0.0).admitted
    transition = state.record(0.0, S, 2.5)
    assert transition is not None
    assert transition.reason is TransitionReason.SLOW_CALL_RATE
    assert transition.slow_call_rate == pytest.approx(0.8)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 429])
def test_client_errors_and_throttles_never_open(status: int) -> None:
    """A stream of 4xx or 429 answers leaves the circuit closed."""
    state = breaker()
    run(state, 0.0, [classify(status)] * 100)
    assert state.state is CircuitState.CLOSED


def test_ignored_outcomes_do_not_dilute_failures() -> None:
    """429s between failures do not count as calls, so the failure rate stays 100 %."""
    state = breaker(minimum_calls=5)
    run(state, 0.0, [F, IG, F, IG, F, IG, F])
    assert state.metrics(0.0).calls == 4
    run(state, 0.0, [F])
    assert state.state is CircuitState.OPEN


def test_old_failures_leave_the_time_window() -> None:
    """Failures older than the window no longer count towards the rate."""
    state = breaker(window=30, minimum_calls=20)
    run(state, 0.0, [F] * 19)
    assert state.metrics(29.9).failures == 19
    assert state.metrics(30.0).failures == 0
    run(state, 30.0, [S] * 19 + [F])
    assert state.state is CircuitState.CLOSED


def test_window_slides_second_by_second() -> None:
    """Each second's bucket expires on its own as the window slides past it."""
    state = breaker(window=10, minimum_calls=100)
    for second in range(10):
        run(state, float(second), [F])
    assert state.metrics(9.5).failures == 10
    assert state.metrics(12.0).failures == 7
    assert state.metrics(19.0).failures == 0


def test_open_rejects_with_retry_at() -> None:
    """While open, calls are rejected with the time a probe will be let in."""
    state = breaker(rand=0.0, open_base=5.0)
    transition = open_breaker(state, 100.0)
    assert transition == Transition(
        from_state=CircuitState.CLOSED,
        to_state=CircuitState.OPEN,
        reason=TransitionReason.FAILURE_RATE,
        at=100.0,
        retry_at=105.0,
        failure_rate=1.0,
        slow_call_rate=0.0,
    )
    assert state.allow(104.9) == Decision(admitted=False, retry_at=105.0)
    assert state.retry_at == 105.0


def test_records_while_open_are_ignored() -> None:
    """Results of calls admitted before the circuit opened change nothing."""
    state = breaker()
    open_breaker(state, 0.0)
    assert state.record(0.5, S, 1.0) is None
    assert state.state is CircuitState.OPEN


# -- half-open ------------------------------------------------------------------------------


def test_half_open_admits_a_limited_number_of_probes() -> None:
    """After the open period, exactly half_open_probes calls are let through."""
    state = breaker(half_open_probes=3)
    open_breaker(state, 0.0)
    first = state.allow(5.0)
    assert first.admitted
    assert first.transition is not None
    assert first.transition.to_state is CircuitState.HALF_OPEN
    assert first.transition.reason is TransitionReason.OPEN_ELAPSED
    assert state.allow(5.0) is ADMITTED
    assert state.allow(5.0) is ADMITTED
    rejected = state.allow(5.0)
    assert not rejected.admitted
    assert rejected.retry_at is not None


def test_probes_succeeding_close_the_circuit() -> None:
    """All probes succeeding closes the circuit with a fresh window."""
    state = breaker(half_open_probes=3)
    open_breaker(state, 0.0)
    for _ in range(3):
        assert state.allow(5.0).admitted
    assert state.record(5.1, S, 0.1) is None
    assert state.record(5.1, S, 0.1) is None
    transition = state.record(5.1, S, 0.1)
    assert transition is not None
    assert (transition.from_state, transition.to_state) == (
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
    )
    assert transition.reason is TransitionReason.PROBES_SUCCEEDED
    assert state.metrics(5.1).calls == 0


@pytest.mark.parametrize(
    ("outcome", "duration", "reason"),
    [(F, 0.1, TransitionReason.PROBE_FAILED), (S, 30.0, TransitionReason.PROBE_SLOW)],
)
def test_a_bad_probe_reopens(outcome: Outcome, duration: float, reason: TransitionReason) -> None:
    """One failing or slow probe reopens the circuit."""
    state = breaker(half_open_probes=3)
    open_breaker(state, 0.0)
    assert state.allow(5.0).admitted
    transition = state.record(5.0 + duration, outcome, duration)
    assert transition is not None
    assert transition.to_state is CircuitState.OPEN
    assert transition.reason is reason


def test_ignored_probe_frees_its_slot() -> None:
    """A probe that ends ignored (a 429, a cancellation) lets another probe in."""
    state = breaker(half_open_probes=1)
    open_breaker(state, 0.0)
    assert state.allow(5.0).admitted
    assert not state.allow(5.0).admitted
    state.record(5.1, IG, 0.1)
    assert state.allow(5.1).admitted


def test_stragglers_from_before_half_open_are_not_probes() -> None:
    """A result from a call that started before the probe period does not close the circuit."""
    state = breaker(half_open_probes=1)
    open_breaker(state, 0.0)
    assert state.allow(5.0).admitted
    # Started at 0.0, before the circuit went half-open at 5.0.
    assert state.record(6.0, S, 6.0) is None
    assert state.state is CircuitState.HALF_OPEN
    transition = state.record(6.0, S, 1.0)
    assert transition is not None
    assert transition.to_state is CircuitState.CLOSED


# -- open durations -------------------------------------------------------------------------


def reopen(state: BreakerState, now: float) -> float:
    """Let the circuit go half-open at `now`, fail the probe, and return the new open time."""
    assert state.allow(now).admitted
    transition = state.record(now, F, 0.0)
    assert transition is not None
    assert transition.retry_at is not None
    return transition.retry_at - now


@pytest.mark.parametrize(
    ("rand", "expected"),
    [
        (0.0, [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]),
        (0.5, [3.75, 7.5, 15.0, 30.0, 60.0, 120.0, 225.0, 225.0]),
        (0.999, [2.5025, 5.005, 10.01, 20.02, 40.04, 80.08, 150.15, 150.15]),
    ],
)
def test_open_duration_grows_with_jittered_backoff(rand: float, expected: list[float]) -> None:
    """Each consecutive opening doubles the open time up to the cap, minus up to half as jitter."""
    state = breaker(rand=rand, open_base=5.0, open_max=300.0)
    now = 0.0
    durations = [open_breaker(state, now).retry_at or 0.0]
    for _ in range(7):
        now += durations[-1]
        durations.append(reopen(state, now))
    assert durations == pytest.approx(expected)


def test_backoff_resets_after_a_successful_close() -> None:
    """After the probes close the circuit, the next opening starts from the base again."""
    state = breaker(open_base=5.0, half_open_probes=1)
    open_breaker(state, 0.0)
    assert reopen(state, 5.0) == 10.0
    assert state.allow(15.0).admitted
    state.record(15.0, S, 0.0)
    assert state.state is CircuitState.CLOSED
    transition = open_breaker(state, 20.0)
    assert transition.retry_at == 25.0


def test_jitter_comes_from_the_injected_random() -> None:
    """The random source is called for the open time, so tests and fleets can control it."""
    draws = iter([0.2, 0.8])
    state = BreakerState(BreakerConfig(open_base=10.0, jitter=0.5), random=lambda: next(draws))
    first = open_breaker(state, 0.0)
    assert first.retry_at == pytest.approx(9.0)
    assert reopen(state, 9.0) == pytest.approx(20.0 * 0.6)


# -- manual control, reporting, configuration -----------------------------------------------


def test_force_open_and_reset() -> None:
    """force_open rejects calls for the given time; reset closes and forgets the backoff."""
    state = breaker()
    transition = state.force_open(0.0, duration=60.0)
    assert transition.reason is TransitionReason.FORCED
    assert state.allow(59.0) == Decision(admitted=False, retry_at=60.0)
    reset = state.reset(1.0)
    assert reset is not None
    assert reset.to_state is CircuitState.CLOSED
    assert state.allow(1.0) is ADMITTED
    assert state.reset(2.0) is None


def test_metrics_snapshot() -> None:
    """metrics reports the window's counts and rates."""
    state = breaker(slow_call_duration=1.0)
    run(state, 0.0, [S, S, F], duration=0.1)
    run(state, 0.0, [S], duration=2.0)
    metrics = state.metrics(0.0)
    assert (metrics.state, metrics.calls, metrics.failures, metrics.slow_calls) == (
        CircuitState.CLOSED,
        4,
        1,
        1,
    )
    assert (metrics.failure_rate, metrics.slow_call_rate) == (0.25, 0.25)


@pytest.mark.parametrize(
    "config",
    [
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"slow_call_rate": 0.0},
        {"slow_call_duration": 0.0},
        {"minimum_calls": 0},
        {"window": 0},
        {"window": 2.5},
        {"open_base": 0.0},
        {"open_base": 10.0, "open_max": 5.0},
        {"open_multiplier": 0.5},
        {"jitter": 1.0},
        {"half_open_probes": 0},
    ],
)
def test_config_validation(config: dict[str, float]) -> None:
    """Out-of-range breaker settings raise ConfigError."""
    with pytest.raises(ConfigError):
        BreakerConfig(**config)  # type: ignore[arg-type]


def test_success_path_keeps_no_memory() -> None:
    """Thousands of admitted successful calls leave no allocations behind in the breaker."""
    import tracemalloc

    state = breaker()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(5000):
            state.allow(1.0)
            state.record(1.0, S, 0.01)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if stat.traceback[0].filename.endswith("_breaker.py")
    )
    # Only the two counters' int objects may remain (ints above 256 are not cached).
    assert grown <= 128
