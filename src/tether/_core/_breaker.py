"""Circuit breaker state machine: a sliding time window, failure and slow-call rates, probes.

The model is Resilience4j's time-based breaker (and Polly's advanced breaker), which no Python
breaker implements; pybreaker, purgatory and aiobreaker count consecutive failures only:

* CLOSED records outcomes in a sliding window of `window` seconds, one bucket per second. Once
  it holds at least `minimum_calls`, the breaker opens when the failure rate or the slow-call
  rate reaches its threshold (Resilience4j compares with "equal or greater").
* OPEN rejects every call until its open duration has passed. The duration grows
  exponentially with each consecutive opening and is jittered downwards ("equal jitter" at the
  default 0.5, like Finagle's failure accrual `Backoff.equalJittered(5.seconds, 300.seconds)`),
  so a fleet of clients that saw the same outage does not probe in lockstep.
* HALF_OPEN admits `half_open_probes` calls. All of them succeeding (fast) closes the circuit
  and resets the backoff; one failing or slow probe opens it again for longer.

Outcomes come from `classify`: connection errors, timeouts and 5xx are failures; 429 is
ignored (the server is alive and rate limiting is the limiter's business) and other 4xx are
successes (the server answered correctly; the request was wrong).

Every method takes the monotonic time; randomness comes from the injected `random`. The
success path is O(1) and allocates nothing: `allow` returns a shared `ADMITTED` decision and
`record` only bumps counters. Transitions are returned as values for the async layer to turn
into hooks, logs and metrics.
"""

from __future__ import annotations

import enum
import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass

from tether._errors import ConfigError

__all__ = [
    "ADMITTED",
    "BreakerConfig",
    "BreakerMetrics",
    "BreakerState",
    "CircuitState",
    "Decision",
    "ErrorKind",
    "Outcome",
    "Transition",
    "TransitionReason",
    "classify",
]

# A result whose start time equals the state change (a probe admitted at the very instant of
# the transition) must count; float subtraction of two monotonic readings may be off by an ulp.
_START_TOLERANCE = 1e-6


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    #: Neither: the call says nothing about the server's health (429, a cancelled call).
    IGNORED = "ignored"


class ErrorKind(enum.StrEnum):
    """Why a call produced no response."""

    CONNECT = "connect"  # includes connect timeouts: the server was not reached
    TIMEOUT = "timeout"  # the server did not answer in time
    NETWORK = "network"  # the connection broke after the request was sent
    CANCELLED = "cancelled"  # the caller gave up; says nothing about the server
    OTHER = "other"  # a local error (bad body, validation): not the server's fault


_FAILURE_KINDS = frozenset({ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.NETWORK})


def classify(
    status: int | None,
    error_kind: ErrorKind | None = None,
    *,
    ignored_statuses: frozenset[int] = frozenset({429}),
) -> Outcome:
    """What a call's result says about the server's health.

    Transport failures (connect, timeout, network) and 5xx are failures. 429 is ignored by
    default: counting throttles as failures would open the circuit on a healthy but busy
    server, and counting them as successes would hide real failures. Every other status,
    4xx included, is a success: the server processed the request.
    """
    if error_kind is not None:
        return Outcome.FAILURE if error_kind in _FAILURE_KINDS else Outcome.IGNORED
    if status is None:
        return Outcome.IGNORED
    if status in ignored_statuses:
        return Outcome.IGNORED
    if status >= 500:
        return Outcome.FAILURE
    return Outcome.SUCCESS


class TransitionReason(enum.StrEnum):
    FAILURE_RATE = "failure_rate"
    SLOW_CALL_RATE = "slow_call_rate"
    OPEN_ELAPSED = "open_elapsed"
    PROBES_SUCCEEDED = "probes_succeeded"
    PROBE_FAILED = "probe_failed"
    PROBE_SLOW = "probe_slow"
    FORCED = "forced"
    #: A quorum of other instances reported the circuit open (advisory gossip).
    SHARED_EVIDENCE = "shared_evidence"


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """A state change, for hooks, logs and metrics."""

    from_state: CircuitState
    to_state: CircuitState
    reason: TransitionReason
    at: float
    #: While OPEN: when the circuit will admit a probe.
    retry_at: float | None = None
    failure_rate: float | None = None
    slow_call_rate: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Whether a call may go ahead; a rejection says when to come back."""

    admitted: bool
    retry_at: float | None = None
    #: Set when deciding moved the breaker (OPEN -> HALF_OPEN).
    transition: Transition | None = None


#: The decision on the success path, shared so that admitting allocates nothing.
ADMITTED = Decision(admitted=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerMetrics:
    """What the window holds now, for the hub's status page and metrics."""

    state: CircuitState
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    retry_at: float | None
    consecutive_openings: int
    #: While OPEN, why it opened ("failure_rate", "shared_evidence", ...); None otherwise.
    open_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    """Thresholds and timings; defaults in the comments say where they come from."""

    #: Open when at least this share of calls in the window failed (Resilience4j: 50 %).
    failure_rate: float = 0.5
    #: Open when at least this share of calls was slower than `slow_call_duration`
    #: (Resilience4j: 100 % over 60 s; an HTTP API taking 10 s on 80 % of calls is down in
    #: all but name).
    slow_call_rate: float = 0.8
    slow_call_duration: float = 10.0
    #: Judge only with at least this many calls in the window (Resilience4j: 100, Polly: 100;
    #: third-party APIs see less traffic per client, so 20).
    minimum_calls: int = 20
    #: Sliding window length in seconds, bucketed per second (Polly samples over 30 s).
    window: int = 30
    #: First open duration; doubles with each consecutive opening up to `open_max`
    #: (Finagle failure accrual: 5 s to 300 s).
    open_base: float = 5.0
    open_max: float = 300.0
    open_multiplier: float = 2.0
    #: Share of the open duration taken off at random: 0.5 draws from [d/2, d].
    jitter: float = 0.5
    #: Probes admitted in HALF_OPEN; all must succeed to close (Hystrix uses 1,
    #: Resilience4j 10; 3 avoids closing on one lucky call).
    half_open_probes: int = 3

    def __post_init__(self) -> None:
        for name in ("failure_rate", "slow_call_rate"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"breaker {name} must be in (0, 1], got {value!r}")
        for name in ("slow_call_duration", "open_base", "open_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"breaker {name} must be positive seconds, got {value!r}")
        if self.open_max < self.open_base:
            raise ConfigError("breaker open_max must be at least open_base")
        if not (math.isfinite(self.open_multiplier) and self.open_multiplier >= 1):
            raise ConfigError(f"breaker open_multiplier must be >= 1, got {self.open_multiplier!r}")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"breaker jitter must be in [0, 1), got {self.jitter!r}")
        for name in ("minimum_calls", "window", "half_open_probes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"breaker {name} must be an integer >= 1, got {value!r}")


class BreakerState:
    """One circuit (typically per host) as a pure state machine."""

    __slots__ = (
        "_calls",
        "_config",
        "_failures",
        "_in_flight",
        "_min_calls",
        "_open_reason",
        "_open_until",
        "_openings",
        "_probe_successes",
        "_random",
        "_size",
        "_slot",
        "_slow",
        "_slow_duration",
        "_state",
        "_state_since",
        "_total_calls",
        "_total_failures",
        "_total_slow",
    )

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._config = config = config if config is not None else BreakerConfig()
        self._random = random
        self._size = config.window
        self._min_calls = config.minimum_calls
        self._slow_duration = config.slow_call_duration
        # Ring buffers of per-second counts plus running totals: O(1) per record.
        self._calls = [0] * config.window
        self._failures = [0] * config.window
        self._slow = [0] * config.window
        self._total_calls = 0
        self._total_failures = 0
        self._total_slow = 0
        self._slot: int | None = None  # absolute second of the newest bucket
        self._state = CircuitState.CLOSED
        self._state_since = -math.inf
        self._open_until = -math.inf
        self._open_reason: TransitionReason | None = None
        self._openings = 0
        self._in_flight = 0
        self._probe_successes = 0

    @property
    def config(self) -> BreakerConfig:
        return self._config

    @property
    def state(self) -> CircuitState:
        """The state as last decided; OPEN turns HALF_OPEN on the next `allow` after its time."""
        return self._state

    @property
    def retry_at(self) -> float | None:
        """While OPEN, when a probe will be admitted."""
        return self._open_until if self._state is CircuitState.OPEN else None

    @property
    def open_reason(self) -> TransitionReason | None:
        """While OPEN, why it opened."""
        return self._open_reason if self._state is CircuitState.OPEN else None

    # -- the window ------------------------------------------------------------------------

    def _advance(self, now: float) -> int:
        """Expire buckets older than the window and return the index of `now`'s bucket."""
        second = math.floor(now)
        slot = self._slot
        if slot is None:
            self._slot = second
            return second % self._size
        gap = second - slot
        if gap > 0:
            if gap >= self._size:
                self._clear_window()
            else:
                calls, failures, slow = self._calls, self._failures, self._slow
                for step in range(1, gap + 1):
                    index = (slot + step) % self._size
                    self._total_calls -= calls[index]
                    self._total_failures -= failures[index]
                    self._total_slow -= slow[index]
                    calls[index] = failures[index] = slow[index] = 0
            self._slot = slot = second
        # A result stamped slightly in the past (gap < 0) lands in the newest bucket.
        return slot % self._size

    def _clear_window(self) -> None:
        for buffer in (self._calls, self._failures, self._slow):
            for index in range(self._size):
                buffer[index] = 0
        self._total_calls = self._total_failures = self._total_slow = 0

    def _rates(self) -> tuple[float, float]:
        total = self._total_calls
        if not total:
            return 0.0, 0.0
        return self._total_failures / total, self._total_slow / total

    # -- decisions -------------------------------------------------------------------------

    def allow(self, now: float) -> Decision:
        """Whether a call may start now."""
        state = self._state
        if state is CircuitState.CLOSED:
            return ADMITTED
        if state is CircuitState.OPEN:
            if now < self._open_until:
                return Decision(admitted=False, retry_at=self._open_until)
            transition = self._move(now, CircuitState.HALF_OPEN, TransitionReason.OPEN_ELAPSED)
            self._in_flight = 1
            return Decision(admitted=True, transition=transition)
        if self._in_flight < self._config.half_open_probes:
            self._in_flight += 1
            return ADMITTED
        # All probes are out; their results decide. The earliest a new call could be let in
        # is when they all succeed, which is unknown, so point at the shortest open period.
        return Decision(
            admitted=False, retry_at=now + self._config.open_base * (1 - self._config.jitter)
        )

    def record(self, now: float, outcome: Outcome, duration: float = 0.0) -> Transition | None:
        """Take in the result of an admitted call that took `duration` seconds."""
        state = self._state
        if state is CircuitState.CLOSED:
            if outcome is Outcome.IGNORED:
                return None
            second = math.floor(now)
            # Same second as the last result is the common case; skip the expiry call.
            index = second % self._size if second == self._slot else self._advance(now)
            self._calls[index] += 1
            total = self._total_calls = self._total_calls + 1
            failed = outcome is Outcome.FAILURE
            if not failed and duration <= self._slow_duration:
                # A fast success can only lower the rates, so it needs judging only when the
                # window first reaches the minimum number of calls.
                return self._judge(now) if total == self._min_calls else None
            if failed:
                self._failures[index] += 1
                self._total_failures += 1
            if duration > self._slow_duration:
                self._slow[index] += 1
                self._total_slow += 1
            return self._judge(now) if total >= self._min_calls else None
        if state is CircuitState.HALF_OPEN:
            if now - duration < self._state_since - _START_TOLERANCE:
                # Started before the probe period: admitted while CLOSED, not a probe.
                return None
            if self._in_flight > 0:
                self._in_flight -= 1
            if outcome is Outcome.IGNORED:
                return None  # frees the probe slot for another probe
            if outcome is Outcome.FAILURE:
                return self._open(now, TransitionReason.PROBE_FAILED)
            if duration > self._slow_duration:
                return self._open(now, TransitionReason.PROBE_SLOW)
            self._probe_successes += 1
            if self._probe_successes >= self._config.half_open_probes:
                self._openings = 0
                return self._move(now, CircuitState.CLOSED, TransitionReason.PROBES_SUCCEEDED)
            return None
        # OPEN: a straggler admitted before the circuit opened; the decision is already made.
        return None

    def _judge(self, now: float) -> Transition | None:
        failure_rate, slow_rate = self._rates()
        if failure_rate >= self._config.failure_rate:
            return self._open(now, TransitionReason.FAILURE_RATE, failure_rate, slow_rate)
        if slow_rate >= self._config.slow_call_rate:
            return self._open(now, TransitionReason.SLOW_CALL_RATE, failure_rate, slow_rate)
        return None

    def open_duration(self, openings: int) -> float:
        """How long the circuit stays open after `openings` consecutive earlier openings."""
        config = self._config
        exponent = min(openings, 64)  # keeps the power finite; the cap applies long before
        ceiling = min(config.open_max, config.open_base * config.open_multiplier**exponent)
        return ceiling * (1.0 - config.jitter * self._random())

    def _open(
        self,
        now: float,
        reason: TransitionReason,
        failure_rate: float | None = None,
        slow_rate: float | None = None,
    ) -> Transition:
        self._open_until = now + self.open_duration(self._openings)
        self._openings += 1
        return self._move(
            now,
            CircuitState.OPEN,
            reason,
            failure_rate=failure_rate,
            slow_rate=slow_rate,
        )

    def _move(
        self,
        now: float,
        to_state: CircuitState,
        reason: TransitionReason,
        *,
        failure_rate: float | None = None,
        slow_rate: float | None = None,
    ) -> Transition:
        from_state = self._state
        self._state = to_state
        self._state_since = now
        self._open_reason = reason if to_state is CircuitState.OPEN else None
        self._in_flight = 0
        self._probe_successes = 0
        # Resilience4j resets the window on every transition: a closed circuit starts from
        # a clean slate, and the outcomes that opened it must not re-open it at once.
        self._clear_window()
        self._slot = None
        return Transition(
            from_state=from_state,
            to_state=to_state,
            reason=reason,
            at=now,
            retry_at=self._open_until if to_state is CircuitState.OPEN else None,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
        )

    # -- manual control and reporting ------------------------------------------------------

    def reset(self, now: float) -> Transition | None:
        """Close the circuit by hand and forget the backoff."""
        self._openings = 0
        if self._state is CircuitState.CLOSED:
            return None
        return self._move(now, CircuitState.CLOSED, TransitionReason.FORCED)

    def force_open(self, now: float, *, duration: float | None = None) -> Transition:
        """Open the circuit by hand, for `duration` seconds or the next backoff period."""
        if duration is None:
            self._open_until = now + self.open_duration(self._openings)
            self._openings += 1
        else:
            self._open_until = now + duration
        return self._move(now, CircuitState.OPEN, TransitionReason.FORCED)

    def open_on_evidence(self, now: float) -> Transition | None:
        """Open a CLOSED circuit because a quorum of other instances report it open.

        It opens like any other opening (growing, jittered duration, then half-open probes of
        its own), so the evidence decides when to stop calling but never when to resume.
        """
        if self._state is not CircuitState.CLOSED:
            return None
        return self._open(now, TransitionReason.SHARED_EVIDENCE)

    def metrics(self, now: float) -> BreakerMetrics:
        """A snapshot of the window as of `now`."""
        if self._state is CircuitState.CLOSED and self._slot is not None:
            self._advance(now)
        failure_rate, slow_rate = self._rates()
        return BreakerMetrics(
            state=self._state,
            calls=self._total_calls,
            failures=self._total_failures,
            slow_calls=self._total_slow,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
            retry_at=self.retry_at,
            consecutive_openings=self._openings,
            open_reason=None if self.open_reason is None else str(self.open_reason),
        )
