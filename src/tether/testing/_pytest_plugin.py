"""pytest plugin (registered as the `tether` entry point): fixtures for tether users."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tether._clock import FakeClock
from tether.testing._nowait import no_wait as _no_wait


@pytest.fixture
def no_wait() -> Iterator[None]:
    """Backoff and server-advised waits return at once for the duration of the test."""
    with _no_wait():
        yield


@pytest.fixture
def fake_clock() -> FakeClock:
    """A virtual clock to pass as `clock=`; sleeps advance it instantly and are recorded."""
    return FakeClock()
