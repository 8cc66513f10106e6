"""pytest plugin (registered as the `tether` entry point): fixtures for tether users.

Fixtures: `no_wait`, `fake_clock`, `mock_api` (a `MockAPI` on the test's `fake_clock`) and
`cassette` (a `Cassette` at `cassettes/<module>/<test>.json` beside the test file).
Markers: `@pytest.mark.mock_api(seed=..., strict=..., definition=...)` and
`@pytest.mark.cassette(path=..., mode=..., secrets=[...])`.
Options: `--tether-seed N` replays a run's fault schedule; `--cassette-mode MODE`.
"""

from __future__ import annotations

import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tether._clock import FakeClock
from tether.testing._cassette import Cassette, cassette_name
from tether.testing._definition import load_definition
from tether.testing._mockapi import MockAPI
from tether.testing._nowait import no_wait as _no_wait

_SEED_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tether")
    group.addoption(
        "--tether-seed",
        default=None,
        help="Seed for every mock_api fixture (default: derived from each test's id).",
    )
    group.addoption(
        "--cassette-mode",
        default=None,
        choices=["once", "replay", "record", "append"],
        help="Mode for every cassette fixture (CI=true still forces replay).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mock_api(seed=None, strict=True, definition=None): options for mock_api"
    )
    config.addinivalue_line(
        "markers", "cassette(path=None, mode=None, secrets=()): options for the cassette fixture"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    seed = item.stash.get(_SEED_KEY, None)
    if seed is not None and report.failed:
        # The seed decides every fault firing: printing it makes a flaky-looking run replayable.
        report.sections.append(
            ("tether mock_api", f"seed {seed}; replay with --tether-seed={seed}")
        )
    return report


@pytest.fixture
def no_wait() -> Iterator[None]:
    """Backoff and server-advised waits return at once for the duration of the test."""
    with _no_wait():
        yield


@pytest.fixture
def fake_clock() -> FakeClock:
    """A virtual clock to pass as `clock=`; sleeps advance it instantly and are recorded."""
    return FakeClock()


def _marker_options(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
def mock_api(request: pytest.FixtureRequest, fake_clock: FakeClock) -> Iterator[MockAPI]:
    """A `MockAPI` on the test's `fake_clock`; with strict (the default), a request that
    matched nothing fails the test at teardown, with the nearest stubs and their diffs.
    """
    options = _marker_options(request, "mock_api")
    seed = options.pop("seed", None)
    if seed is None:
        seed = request.config.getoption("--tether-seed")
    if seed is None:
        # Stable per test across runs and machines, different between tests.
        seed = zlib.crc32(request.node.nodeid.encode())
    request.node.stash[_SEED_KEY] = str(seed)
    definition = options.pop("definition", None)
    api = MockAPI(seed=seed, clock=fake_clock, **options)
    if definition is not None:
        path = Path(definition)
        if not path.is_absolute():
            path = Path(request.node.path).parent / path
        load_definition(path, api=api)
    yield api
    if api.strict:
        api.assert_all_matched()


@pytest.fixture
def cassette(request: pytest.FixtureRequest) -> Iterator[Cassette]:
    """A `Cassette` for this test, to pass as `transport=`; saved (and leak-checked) at
    teardown. Path: `cassettes/<test module>/<test name>.json` next to the test file.
    """
    options = _marker_options(request, "cassette")
    path = options.pop("path", None)
    if path is None:
        test_file = Path(request.node.path)
        path = test_file.parent / "cassettes" / test_file.stem / cassette_name(request.node.name)
    elif not Path(path).is_absolute():
        path = Path(request.node.path).parent / path
    mode = options.pop("mode", None) or request.config.getoption("--cassette-mode") or "once"
    recorder = Cassette(path, mode=mode, **options)
    yield recorder
    recorder.save()
