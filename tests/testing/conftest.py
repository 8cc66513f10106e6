"""Fixtures for the testing kit's own tests: one MockAPI, run in-process or on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import tether
from tether.testing import MockAPI

MODES = ("in_process", "loopback")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Each test that asks for `mode` runs once per way of running a MockAPI."""
    return str(request.param)


@asynccontextmanager
async def connect(api: MockAPI, mode: str, **options: Any) -> AsyncIterator[tether.Client]:
    """A client for `api`: through the in-process transport, or over a real loopback socket.

    Both share the mock's clock, so the client's waits are virtual in either mode.
    """
    options.setdefault("clock", api.clock)
    if mode == "in_process":
        async with api.client(**options) as client:
            yield client
        return
    async with api.serve() as server, tether.Client(server.url, **options) as client:
        yield client


def no_retry_jitter(**options: Any) -> tether.Retry:
    settings: dict[str, Any] = {"attempts": 3, "jitter": False, "base_delay": 1.0, "budget": None}
    settings.update(options)
    return tether.Retry(**settings)
