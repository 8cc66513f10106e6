"""Switch every wait off in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tether._clock import TESTING

__all__ = ["no_wait"]


@contextmanager
def no_wait() -> Iterator[None]:
    """Inside this block, backoff sleeps and server-advised waits return at once.

    Process-wide (the blocking client's loop thread sees it too); the previous state is restored
    on exit, so blocks nest.
    """
    previous = TESTING.no_wait
    TESTING.no_wait = True
    try:
        yield
    finally:
        TESTING.no_wait = previous
