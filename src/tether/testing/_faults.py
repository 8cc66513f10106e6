"""Faults the mock API injects, and the seeded schedules that decide when they fire.

A fault is a frozen value: what goes wrong. A `Schedule` says on which matching requests it
goes wrong. Every random choice draws from a generator seeded by the mock's seed and the rule's
name, so the same seed replays the same failures, request for request, whatever other rules do.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from tether._errors import ConfigError

if TYPE_CHECKING:
    from tether.testing._match import MockRequest

__all__ = [
    "Drip",
    "EmptyResponse",
    "Fault",
    "FaultEvent",
    "FaultRule",
    "Hang",
    "Latency",
    "MalformedChunk",
    "RateLimited",
    "Reset",
    "Schedule",
    "ServerError",
    "Truncate",
]


# The checks take `object`: definitions also come from untyped TOML and JSON files.
def _seconds(name: str, value: object, *, allow_zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def check_count(name: str, value: object, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Latency:
    """The answer is held back `seconds` (plus up to `jitter`, drawn from the seeded generator)."""

    seconds: float
    jitter: float = field(default=0.0, kw_only=True)

    kind: Literal["latency"] = field(default="latency", init=False, repr=False)

    def __post_init__(self) -> None:
        _seconds("Latency.seconds", self.seconds)
        _seconds("Latency.jitter", self.jitter)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimited:
    """429 (or `status`) with `Retry-After` in seconds, or as an HTTP date when `as_date`."""

    retry_after: float | None = 1.0
    as_date: bool = False
    status: int = 429

    kind: Literal["rate_limited"] = field(default="rate_limited", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.retry_after is not None:
            _seconds("RateLimited.retry_after", self.retry_after)
        if not 400 <= self.status <= 599:
            raise ConfigError(f"RateLimited.status must be an error status, got {self.status}")


@dataclass(frozen=True, slots=True)
class ServerError:
    """A 5xx answer, optionally with `Retry-After` seconds."""

    status: int = 503
    retry_after: float | None = field(default=None, kw_only=True)

    kind: Literal["server_error"] = field(default="server_error", init=False, repr=False)

    def __post_init__(self) -> None:
        if not 500 <= self.status <= 599:
            raise ConfigError(f"ServerError.status must be 5xx, got {self.status}")
        if self.retry_after is not None:
            _seconds("ServerError.retry_after", self.retry_after)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset:
    """The connection is reset (TCP RST), before the status line or after the headers.

    `processed=True` lets the API handle the request first (a POST creates its resource), so
    the client cannot know whether it worked: the case idempotency keys exist for.
    """

    after_headers: bool = False
    processed: bool = False

    kind: Literal["reset"] = field(default="reset", init=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class EmptyResponse:
    """The connection is closed cleanly without a single byte of answer."""

    processed: bool = False

    kind: Literal["empty_response"] = field(default="empty_response", init=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class MalformedChunk:
    """A 200 with chunked encoding whose first chunk is garbage, then a close: WireMock's
    MALFORMED_RESPONSE_CHUNK, byte for byte in shape.
    """

    kind: Literal["malformed_chunk"] = field(default="malformed_chunk", init=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Truncate:
    """The headers promise the whole body; only `keep` bytes arrive before the connection closes."""

    keep: int = 0

    kind: Literal["truncate"] = field(default="truncate", init=False, repr=False)

    def __post_init__(self) -> None:
        check_count("Truncate.keep", self.keep)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hang:
    """No answer at all: the client's own timeout is the only way out.

    The mock still bounds the wait (its `hang_limit`), so a test without a timeout fails
    instead of never ending.
    """

    processed: bool = False

    kind: Literal["hang"] = field(default="hang", init=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Drip:
    """The body arrives in `chunks` pieces spread evenly over `duration` seconds."""

    chunks: int = 5
    duration: float = 1.0

    kind: Literal["drip"] = field(default="drip", init=False, repr=False)

    def __post_init__(self) -> None:
        check_count("Drip.chunks", self.chunks, minimum=1)
        _seconds("Drip.duration", self.duration)


Fault = (
    Latency
    | RateLimited
    | ServerError
    | Reset
    | EmptyResponse
    | MalformedChunk
    | Truncate
    | Hang
    | Drip
)

#: Faults that answer in place of the API: the API never sees the request.
REPLACING = (RateLimited, ServerError)
#: Faults that end the connection instead of answering.
DISCONNECTING = (Reset, EmptyResponse, Hang)
#: Faults that change how a real answer travels: the API has handled the request.
SHAPING = (Latency, Truncate, Drip, MalformedChunk)


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """On which matching requests a fault fires. Counting starts at 0 with the first match.

    Args:
        after: Let this many matching requests through first.
        times: Fire at most this many times (None: no limit).
        every: Look at requests in cycles of `every`...
        length: ...and fire on the first `length` of each cycle (a burst).
        probability: Then fire with this probability, drawn from the seeded generator.

    `Schedule()` fires on every match; `Schedule(times=2)` is "fail twice, then succeed";
    `Schedule(after=10, every=20, length=3)` is a 3-request burst every 20 requests.
    """

    after: int = 0
    times: int | None = None
    every: int = 1
    length: int = 1
    probability: float = 1.0

    def __post_init__(self) -> None:
        check_count("Schedule.after", self.after)
        check_count("Schedule.every", self.every, minimum=1)
        check_count("Schedule.length", self.length, minimum=1)
        if self.length > self.every:
            raise ConfigError(
                f"Schedule.length ({self.length}) cannot exceed Schedule.every ({self.every})"
            )
        if self.times is not None:
            check_count("Schedule.times", self.times)
        probability: object = self.probability
        if (
            isinstance(probability, bool)
            or not isinstance(probability, int | float)
            or not 0 <= probability <= 1
        ):
            raise ConfigError(f"Schedule.probability must be within 0..1, got {probability!r}")


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One firing of a fault, for the log a failing test prints and a rerun compares."""

    #: The mock's running request number (1 for the first request it saw).
    request: int
    rule: str
    fault: Fault
    method: str
    path: str


class FaultRule:
    """A fault, the requests it applies to, and its schedule; it keeps its own count."""

    __slots__ = (
        "_fired",
        "_random",
        "_seed",
        "_seen",
        "fault",
        "match",
        "name",
        "schedule",
    )

    def __init__(
        self,
        fault: Fault,
        *,
        name: str,
        match: MatchFunc,
        schedule: Schedule,
        seed: int | str,
    ) -> None:
        self.fault = fault
        self.name = name
        self.match = match
        self.schedule = schedule
        # Seeded by name, not by position: adding a rule does not reshuffle the others.
        self._seed = f"{seed}/{name}"
        self._random = random.Random(self._seed)
        self._seen = 0
        self._fired = 0

    @property
    def fired(self) -> int:
        return self._fired

    def decide(self, request: MockRequest) -> bool:
        """Count `request` if it matches and say whether the fault fires on it."""
        if not self.match(request):
            return False
        index = self._seen
        self._seen += 1
        # Drawn on every match, fired or not, so the sequence of draws depends only on the
        # number of matches: that is what makes a seed replay exactly.
        draw = self._random.random()
        plan = self.schedule
        if index < plan.after:
            return False
        if (index - plan.after) % plan.every >= plan.length:
            return False
        if plan.times is not None and self._fired >= plan.times:
            return False
        if draw >= plan.probability:
            return False
        self._fired += 1
        return True

    def jitter(self, upper: float) -> float:
        return self._random.uniform(0.0, upper) if upper > 0 else 0.0

    def reset(self) -> None:
        self._random.seed(self._seed)
        self._seen = 0
        self._fired = 0

    def __repr__(self) -> str:
        return f"<FaultRule {self.name!r} {self.fault!r} {self.schedule!r} fired={self._fired}>"


if TYPE_CHECKING:
    from collections.abc import Callable

    MatchFunc = Callable[[MockRequest], bool]
