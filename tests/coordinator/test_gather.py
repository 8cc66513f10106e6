"""`gather`: per-source Ok | Stale | Failed, bounded by the timeout, errors kept."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import tether
from tests.coordinator.conftest import SteppedClock
from tether._coordinator import Coordinator
from tether._gather import Failed, GatherError, Ok, Stale, gather
from tether.testing import FakeClock


async def value(result: Any) -> Any:
    return result


async def fail(error: BaseException) -> Any:
    raise error


async def forever() -> Any:
    await asyncio.Event().wait()


async def test_every_source_gets_an_answer() -> None:
    """Successes are Ok with the value; a failure is Failed carrying the very exception."""
    clock = FakeClock()
    error = tether.ServerError.__new__(tether.ServerError)
    results = await gather(
        {"weather": value(21), "grid": lambda: value({"kw": 3}), "air": fail(error)},
        timeout=5,
        clock=clock,
    )
    assert results["weather"] == Ok(21, clock.time())
    assert results["grid"] == Ok({"kw": 3}, clock.time())
    assert isinstance(results["air"], Failed)
    assert results["air"].error is error


async def test_a_slow_source_never_holds_the_others() -> None:
    """A source still running at the timeout is cancelled and marked DeadlineExceeded."""
    cancelled = asyncio.Event()

    async def slow() -> Any:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    started = time.monotonic()
    results = await gather({"fast": value(1), "slow": slow()}, timeout=0.05)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0  # real time is the point: the timeout bounds the call
    assert results["fast"] == Ok(1, results["fast"].at)  # type: ignore[union-attr]
    failed = results["slow"]
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, tether.DeadlineExceeded)
    assert "within 0.05 s" in str(failed.error)
    assert cancelled.is_set()


async def test_last_good_turns_failures_into_stale_data() -> None:
    """With a last_good dict, a source that fails now falls back on its last Ok, with its age."""
    clock = FakeClock()
    memory: dict[str, Ok[Any]] = {}
    await gather({"air": value({"aqi": 40})}, timeout=1, last_good=memory, clock=clock)
    clock.advance(90)
    error = RuntimeError("upstream 502")
    results = await gather({"air": fail(error)}, timeout=1, last_good=memory, clock=clock)
    assert results["air"] == Stale({"aqi": 40}, 90.0, error)


async def test_required_failure_raises_with_every_result() -> None:
    """A failed required source raises GatherError that still carries all results."""
    error = tether.NetworkError("reset")
    with pytest.raises(GatherError) as info:
        await gather({"grid": fail(error), "weather": value(1)}, timeout=1, required=["grid"])
    assert info.value.missing == ("grid",)
    assert info.value.__cause__ is error
    assert isinstance(info.value.results["weather"], Ok)
    assert "grid: NetworkError: reset" in str(info.value)


async def test_required_source_may_be_stale() -> None:
    """Stale data satisfies `required`: it is present, just old."""
    memory: dict[str, Ok[Any]] = {"grid": Ok(5, 0.0)}
    results = await gather(
        {"grid": fail(RuntimeError("x"))}, timeout=1, required=["grid"], last_good=memory
    )
    assert isinstance(results["grid"], Stale)


async def test_optional_failures_do_not_raise() -> None:
    """Without `required`, every failure is reported, none raised."""
    results = await gather({"a": forever(), "b": fail(KeyError("k"))}, timeout=0.01)
    assert all(isinstance(r, Failed) for r in results.values())


async def test_unknown_required_name_is_a_config_error() -> None:
    """Naming a required source that is not there is refused before anything runs."""
    with pytest.raises(tether.ConfigError):
        await gather({"a": value(1)}, timeout=1, required=["b"])


async def test_coordinator_endpoints_are_read_not_repolled() -> None:
    """An endpoint is Ok after a good poll, Stale while failing but available, Failed when
    unavailable; gather itself never calls its fetch."""
    clock = SteppedClock()
    answers: list[Any] = [{"v": 1}, RuntimeError("down"), RuntimeError("down")]
    calls = 0

    async def fetch() -> Any:
        nonlocal calls
        calls += 1
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    coord = Coordinator(clock=clock)
    endpoint = coord.endpoint(
        "x", fetch, interval=10, jitter=0, failure_interval=10, unavailable_after_failures=2
    )
    async with coord:
        await clock.advance(0)
        first = await gather({"x": endpoint}, timeout=1, clock=clock)
        assert first["x"] == Ok({"v": 1}, clock.time())
        await clock.advance(10)
        second = (await gather({"x": endpoint}, timeout=1, clock=clock))["x"]
        assert isinstance(second, Stale)
        assert (second.value, second.age) == ({"v": 1}, 10)
        await clock.advance(20)
        third = (await gather({"x": endpoint}, timeout=1, clock=clock))["x"]
        assert isinstance(third, Failed)
        assert str(third.error) == "down"
    assert calls == 3
