"""The pytest plugin: fixtures mock_api, cassette, no_wait and fake_clock, seen from a user's
test suite (run in a throwaway pytest session)."""

from __future__ import annotations

import json
import os

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeini(INI)
    # The throwaway suite must behave the same whether or not the outer run is on CI.
    monkeypatch.delenv("CI", raising=False)
    return pytester


def test_fixtures_share_one_virtual_clock(suite: pytest.Pytester) -> None:
    """mock_api runs on the fake_clock fixture, so the client's waits and the mock's agree."""
    suite.makepyfile(
        """
        import tether
        from tether.testing import RateLimited, Reply

        async def test_it(mock_api, fake_clock):
            assert mock_api.clock is fake_clock
            mock_api.stub("GET", "/x", RateLimited(retry_after=30), Reply(json=1))
            async with mock_api.client(retry=tether.Retry(budget=None)) as client:
                assert (await client.get("/x")).json() == 1
            assert fake_clock.sleeps == [30.0]

        def test_no_wait(no_wait):
            from tether._clock import waits_disabled
            assert waits_disabled()
        """
    )
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_strict_mock_fails_on_unmatched_requests(suite: pytest.Pytester) -> None:
    """A request that matched no stub fails the test at teardown, with the near-miss diff."""
    suite.makepyfile(
        """
        import pytest

        async def test_typo(mock_api):
            mock_api.stub("GET", "/devices")
            async with mock_api.client(raise_for_status=False) as client:
                await client.get("/device")

        @pytest.mark.mock_api(strict=False)
        async def test_lenient(mock_api):
            async with mock_api.client(raise_for_status=False) as client:
                assert (await client.get("/anything")).status == 404
        """
    )
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*nearest: GET /devices*", "*path: expected '/devices'*"])


def test_failure_report_names_the_seed(suite: pytest.Pytester) -> None:
    """A failing test's report carries the mock's seed and how to replay it."""
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.mock_api(seed=4242)
        def test_fails(mock_api):
            assert mock_api.seed == 4242
            raise AssertionError("boom")

        def test_option_seed(mock_api):
            assert str(mock_api.seed) == "77"
        """
    )
    result = suite.runpytest("-p", "no:cacheprovider", "--tether-seed=77", "-k", "option")
    result.assert_outcomes(passed=1)
    result = suite.runpytest("-p", "no:cacheprovider", "-k", "fails")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*seed 4242; replay with --tether-seed=4242*"])


def test_default_seed_is_stable_per_test(suite: pytest.Pytester) -> None:
    """Without a seed option, each test gets a seed derived from its id, the same every run."""
    suite.makepyfile(
        """
        def test_a(mock_api):
            print(f"SEED={mock_api.seed}=")

        def test_b(mock_api):
            print(f"SEED={mock_api.seed}=")
        """
    )
    runs = []
    for _ in range(2):
        result = suite.runpytest("-p", "no:cacheprovider", "-s")
        result.assert_outcomes(passed=2)
        runs.append([line.split("=")[1] for line in result.outlines if "SEED=" in line])
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[0][1]


def test_cassette_fixture_records_then_replays(suite: pytest.Pytester) -> None:
    """The cassette fixture writes cassettes/<module>/<test>.json, then replays it offline."""
    suite.makepyfile(
        test_api="""
        import tether
        from tether.testing import FakeClock, MockAPI, Reply

        UPSTREAM = MockAPI(clock=FakeClock())
        UPSTREAM.stub("GET", "/v", Reply(json={"v": 1}))

        async def test_call(cassette):
            cassette._inner = UPSTREAM.transport()
            async with tether.Client(
                "http://api.localhost",
                transport=cassette,
                auth=tether.auth.Bearer("tok-secret-123"),
            ) as client:
                assert (await client.get("/v")).json() == {"v": 1}
        """
    )
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    stored = suite.path / "cassettes" / "test_api" / "test_call.json"
    data = json.loads(stored.read_text())
    assert len(data["interactions"]) == 1
    assert "tok-secret-123" not in stored.read_text()
    # Second run replays: break the upstream to prove it is not called.
    source = (suite.path / "test_api.py").read_text().replace('json={"v": 1}', "status=500")
    (suite.path / "test_api.py").write_text(source)
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_cassette_fixture_in_ci_fails_without_a_recording(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under CI=true a test whose cassette is missing fails instead of recording."""
    suite.makepyfile(
        """
        import pytest
        import tether
        from tether.testing import CassetteMismatch

        @pytest.mark.cassette(mode="record")
        async def test_call(cassette):
            async with tether.Client("http://api.localhost", transport=cassette) as client:
                with pytest.raises(CassetteMismatch, match="CI=true"):
                    await client.get("/v")
        """
    )
    monkeypatch.setenv("CI", "true")
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (suite.path / "cassettes").exists()
    assert os.environ["CI"] == "true"


def test_mock_api_marker_loads_a_definition_file(suite: pytest.Pytester) -> None:
    """@pytest.mark.mock_api(definition=...) loads a file next to the test into the fixture."""
    suite.makefile(
        ".toml",
        api="""
        [[stubs]]
        method = "GET"
        path = "/hello"
        replies = [{ json = "world" }]
        """,
    )
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.mock_api(definition="api.toml", seed=5)
        async def test_it(mock_api):
            async with mock_api.client() as client:
                assert (await client.get("/hello")).json() == "world"
            assert mock_api.seed == 5
        """
    )
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
