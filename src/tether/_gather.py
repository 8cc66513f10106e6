"""`gather`: ask several sources at once, wait at most `timeout`, and say per source what came
back: `Ok`, `Stale` (last good data, with its age and why it is not fresh) or `Failed`.

The usual hand-written version (asyncio.gather with return_exceptions, or wait_for per call)
either waits for the slowest API or drops the errors on the floor; here every source gets an
answer object, every error is kept on it, and only `required` sources can fail the call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from tether._clock import Clock, SystemClock
from tether._coordinator import Endpoint
from tether._errors import ConfigError, DeadlineExceeded, TetherError

__all__ = ["Failed", "GatherError", "Ok", "Result", "Source", "Stale", "gather"]

logger = logging.getLogger("tether.gather")

T = TypeVar("T")

#: How long cancelled sources get to unwind after the timeout before gather stops waiting.
_CANCEL_GRACE = 1.0


@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    """Fresh data. `at` is when it was obtained, in wall-clock epoch seconds."""

    value: T
    at: float


@dataclass(frozen=True, slots=True)
class Stale(Generic[T]):
    """The source failed now, but earlier data exists: `value` is `age` seconds old, and
    `error` says why it could not be refreshed."""

    value: T
    age: float
    error: BaseException


@dataclass(frozen=True, slots=True)
class Failed:
    """The source failed and there is nothing older to fall back on."""

    error: BaseException


Result: TypeAlias = Ok[Any] | Stale[Any] | Failed

#: A coroutine, a function returning one, or a coordinator endpoint (read, not re-polled).
Source: TypeAlias = Awaitable[Any] | Callable[[], Awaitable[Any]] | Endpoint[Any]


class GatherError(TetherError):
    """A required source failed. `results` holds every source's outcome, the others included,
    and `missing` names the required ones that failed; the first failure is the `__cause__`."""

    def __init__(
        self, message: str, *, results: dict[str, Result], missing: tuple[str, ...]
    ) -> None:
        super().__init__(message)
        self.results = results
        self.missing = missing


def _from_endpoint(endpoint: Endpoint[Any]) -> Result:
    snapshot = endpoint.snapshot()
    if snapshot.last_success is not None and snapshot.consecutive_failures == 0:
        return Ok(snapshot.data, snapshot.last_success)
    error = snapshot.last_error or DeadlineExceeded(f"{endpoint.name} has not been polled yet")
    if snapshot.available:
        return Stale(snapshot.data, snapshot.age or 0.0, error)
    return Failed(error)


async def _await(source: Awaitable[Any] | Callable[[], Awaitable[Any]]) -> Any:
    awaitable = source() if callable(source) else source
    if not inspect.isawaitable(awaitable):
        raise ConfigError("a gather source must be awaitable or return an awaitable")
    return await awaitable


async def gather(
    sources: Mapping[str, Source],
    *,
    timeout: float,
    required: Iterable[str] = (),
    last_good: MutableMapping[str, Ok[Any]] | None = None,
    clock: Clock | None = None,
) -> dict[str, Result]:
    """Run every source concurrently and return one `Ok | Stale | Failed` per name.

    No source is waited on past `timeout` seconds (real time: this races real I/O); one still
    running then is cancelled and becomes `Failed(DeadlineExceeded)`, or `Stale` if there is
    older data. Pass the same dict as `last_good` on every call to have gather remember each
    source's last `Ok` and fall back on it. A coordinator `Endpoint` as a source is read, not
    polled again: its last good data is its fallback (waiting for its first poll within the
    timeout if it has not finished one). Raises `GatherError` when a name in `required` ends
    up `Failed`; `Stale` data counts as present.
    """
    required = tuple(required)
    unknown = [name for name in required if name not in sources]
    if timeout <= 0 or unknown:
        # Coroutines handed in would otherwise be garbage "never awaited".
        for source in sources.values():
            if inspect.iscoroutine(source):
                source.close()
        if unknown:
            raise ConfigError(f"required names no source: {', '.join(map(repr, unknown))}")
        raise ConfigError("timeout must be a positive number of seconds")
    clock = clock if clock is not None else SystemClock()
    tasks: dict[str, asyncio.Task[Any]] = {}
    for name, source in sources.items():
        if isinstance(source, Endpoint):
            tasks[name] = asyncio.create_task(source.wait_first(), name=f"tether-gather {name}")
        else:
            tasks[name] = asyncio.create_task(_await(source), name=f"tether-gather {name}")
    done: set[asyncio.Task[Any]] = set()
    try:
        if tasks:
            done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
        else:
            pending = set()
    except BaseException:
        for task in tasks.values():
            task.cancel()
        raise
    for task in pending:
        task.cancel()
    if pending:
        # Give cancelled sources a moment to unwind, but never let one hold the call.
        await asyncio.wait(pending, timeout=_CANCEL_GRACE)
    now = clock.time()
    results = {
        name: _outcome(
            name, sources[name], task, done, timeout=timeout, now=now, last_good=last_good
        )
        for name, task in tasks.items()
    }
    _check_required(results, required)
    return results


def _outcome(
    name: str,
    source: Source,
    task: asyncio.Task[Any],
    done: set[asyncio.Task[Any]],
    *,
    timeout: float,
    now: float,
    last_good: MutableMapping[str, Ok[Any]] | None,
) -> Result:
    if isinstance(source, Endpoint):
        return _from_endpoint(source)
    error: BaseException | None
    if task in done and not task.cancelled():
        error = task.exception()
        if error is None:
            ok: Ok[Any] = Ok(task.result(), now)
            if last_good is not None:
                last_good[name] = ok
            return ok
    else:
        error = DeadlineExceeded(f"{name} did not answer within {timeout:g} s")
    logger.warning("gather: %s failed: %s: %s", name, type(error).__name__, error)
    previous = last_good.get(name) if last_good is not None else None
    if previous is not None:
        return Stale(previous.value, max(0.0, now - previous.at), error)
    return Failed(error)


def _check_required(results: dict[str, Result], required: tuple[str, ...]) -> None:
    missing = tuple(name for name in required if isinstance(results[name], Failed))
    if not missing:
        return
    failures = [
        (name, failure.error) for name in missing if isinstance(failure := results[name], Failed)
    ]
    reasons = "; ".join(f"{name}: {type(error).__name__}: {error}" for name, error in failures)
    raise GatherError(
        f"required source(s) failed: {reasons}", results=results, missing=missing
    ) from failures[0][1]
