"""The client's surface: URLs, bodies, errors, JSON models, hooks, timeouts, SyncClient."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pydantic
import pytest
from aiohttp import web

import tether
from tests.conftest import LoopbackServer, ThreadServerFactory
from tether.testing import FakeClock, MockTransport


class Device(pydantic.BaseModel):
    id: int
    name: str


def mock_client(handler, **options: object) -> tuple[tether.Client, MockTransport]:  # type: ignore[no-untyped-def]
    transport = MockTransport(handler)
    options.setdefault("clock", FakeClock())
    return tether.Client("https://api.example.com/v1", transport=transport, **options), transport  # type: ignore[arg-type]


class TestUrls:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/devices", "https://api.example.com/v1/devices"),
            ("devices", "https://api.example.com/v1/devices"),
            ("", "https://api.example.com/v1"),
            ("https://other.example.com/x", "https://other.example.com/x"),
        ],
    )
    async def test_base_url_joining(self, path: str, expected: str) -> None:
        """Relative paths extend the base URL's path; absolute URLs are used as they are."""
        c, transport = mock_client(lambda r: tether.Response(200))
        async with c:
            await c.get(path)
        assert transport.requests[0].url == expected

    @pytest.mark.parametrize(
        "base", ["api.example.com", "ftp://x.example.com", "https://x.example.com/?a=1"]
    )
    def test_bad_base_url(self, base: str) -> None:
        """A base URL that is not an absolute http(s) URL without query is refused."""
        with pytest.raises(tether.ConfigError):
            tether.Client(base)

    async def test_relative_url_without_base(self) -> None:
        """A relative URL with no base_url is a ConfigError, before any I/O."""
        async with tether.Client(transport=MockTransport(lambda r: tether.Response(200))) as c:
            with pytest.raises(tether.ConfigError, match="no base_url"):
                await c.get("/x")


class TestBodies:
    async def test_json_form_and_raw(self) -> None:
        """json=, data= and content= set the body and a matching content type."""
        c, transport = mock_client(lambda r: tether.Response(200))
        async with c:
            await c.post("/a", json={"x": [1, "é"]})
            await c.post("/b", data={"k": "v w", "m": ["1", "2"]})
            await c.post("/c", content="plain")
        a, b, cc = transport.requests
        assert a.content == '{"x":[1,"é"]}'.encode()
        assert a.headers["Content-Type"] == "application/json"
        assert b.content == b"k=v+w&m=1&m=2"
        assert b.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert cc.content == b"plain"

    async def test_two_bodies_is_an_error(self) -> None:
        """Passing json= and data= together is refused."""
        c, _ = mock_client(lambda r: tether.Response(200))
        async with c:
            with pytest.raises(tether.ConfigError):
                await c.post("/a", json={}, data={"a": "b"})

    async def test_default_and_call_headers_merge(self) -> None:
        """Call headers override client headers case-insensitively; User-Agent names tether."""
        c, transport = mock_client(lambda r: tether.Response(200), headers={"Accept": "text/csv"})
        async with c:
            await c.get("/a", headers={"accept": "application/json"})
        headers = transport.requests[0].headers
        assert headers.getall("Accept") == ["application/json"]
        assert headers["User-Agent"] == f"tether/{tether.__version__}"


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, tether.BadRequestError),
            (401, tether.AuthenticationError),
            (403, tether.PermissionDeniedError),
            (404, tether.NotFoundError),
            (409, tether.ConflictError),
            (422, tether.UnprocessableEntityError),
            (429, tether.RateLimitError),
            (500, tether.ServerError),
            (599, tether.ServerError),
            (418, tether.HTTPStatusError),
        ],
    )
    async def test_one_class_per_status(
        self, status: int, cls: type[tether.HTTPStatusError]
    ) -> None:
        """Each common status raises its own class, all under HTTPStatusError and TetherError."""
        c, _ = mock_client(
            lambda r: tether.Response(status, headers={"Request-Id": "req_42"}), retry=None
        )
        async with c:
            with pytest.raises(cls) as info:
                await c.get("/x")
        error = info.value
        assert type(error) is cls
        assert isinstance(error, tether.TetherError)
        assert error.status == status
        assert error.request_id == "req_42"
        assert "req_42" in str(error)

    async def test_body_excerpt_is_truncated(self) -> None:
        """The body on the error is a bounded excerpt, not the whole page."""
        c, _ = mock_client(lambda r: tether.Response(400, text="x" * 10_000))
        async with c:
            with pytest.raises(tether.BadRequestError) as info:
                await c.get("/x")
        assert len(info.value.body) == 503
        assert len(str(info.value)) < 700

    async def test_any_status_carries_the_servers_advice(self) -> None:
        """A 408 with a Retry-After beyond the cap carries the advised wait like a 429 does."""
        c, _ = mock_client(lambda r: tether.Response(408, headers={"Retry-After": "900"}))
        async with c:
            with pytest.raises(tether.HTTPStatusError) as info:
                await c.get("/x")
        assert info.value.retry_after == 900.0

    def test_retry_safety_is_in_the_type(self) -> None:
        """ConnectError and ConnectTimeout were never sent; the others may have been."""
        assert not tether.ConnectError("x").sent
        assert not tether.ConnectTimeout("x").sent
        assert tether.ReadTimeout("x").sent
        assert tether.NetworkError("x").sent
        assert issubclass(tether.ConnectTimeout, tether.TimeoutError)
        assert issubclass(tether.TimeoutError, tether.RequestError)


class TestJson:
    async def test_model_validation(self, server: LoopbackServer) -> None:
        """get_json validates against a pydantic type, including generic ones like list[Model]."""
        server.script("GET", "/devices", lambda: web.json_response([{"id": 1, "name": "hall"}]))
        async with tether.Client(server.url) as c:
            devices = await c.get_json("/devices", model=list[Device])
        assert devices == [Device(id=1, name="hall")]

    async def test_mismatch_names_the_field_not_the_value(self) -> None:
        """A body that does not fit raises ResponseValidationError naming the field only."""
        c, _ = mock_client(lambda r: tether.Response(200, json=[{"id": "secret-ish", "name": 3}]))
        async with c:
            with pytest.raises(tether.ResponseValidationError) as info:
                await c.get_json("/devices", model=list[Device])
        message = str(info.value)
        assert "did not match list[" in message
        assert "Device]" in message
        assert "0.id" in message
        assert "0.name" in message
        assert "secret-ish" not in message
        assert info.value.response.status == 200

    async def test_invalid_json(self) -> None:
        """A body that is not JSON raises ResponseValidationError, not a bare ValueError."""
        c, _ = mock_client(lambda r: tether.Response(200, text="<html>"))
        async with c:
            with pytest.raises(tether.ResponseValidationError, match="not valid JSON"):
                await c.get_json("/x")


class TestHooks:
    async def test_hooks_fire_per_attempt(self) -> None:
        """on_request/on_response fire per attempt, on_retry per retry; async hooks work too."""
        answers = iter([tether.Response(503), tether.Response(200)])
        seen: list[str] = []

        async def on_response(response: tether.Response) -> None:
            seen.append(f"response {response.status}")

        c, _ = mock_client(
            lambda r: next(answers),
            retry=tether.Retry(jitter=False),
            on_request=lambda r: seen.append(f"request {r.method}"),
            on_response=on_response,
            on_retry=[lambda e: seen.append(f"retry {e.attempt} {e.reason} {e.delay}")],
        )
        async with c:
            await c.get("/x")
        assert seen == [
            "request GET",
            "response 503",
            "retry 1 status 503 0.5",
            "request GET",
            "response 200",
        ]

    async def test_attempt_log_records(self, caplog: pytest.LogCaptureFixture) -> None:
        """Each attempt writes one record on logger tether with structured fields."""
        answers = iter([tether.Response(503), tether.Response(200)])
        c, _ = mock_client(lambda r: next(answers), retry=tether.Retry(jitter=False))
        with caplog.at_level("DEBUG", logger="tether"):
            async with c:
                await c.get("/x")
        records = [r for r in caplog.records if r.name == "tether"]
        assert [(r.levelname, r.attempt, r.status, r.retry_reason) for r in records] == [  # type: ignore[attr-defined]
            ("INFO", 1, 503, "status 503"),
            ("DEBUG", 2, 200, None),
        ]
        assert records[0].url == "https://api.example.com/v1/x"  # type: ignore[attr-defined]


class TestTimeouts:
    async def test_each_attempt_gets_the_smaller_of_its_limit_and_what_is_left(self) -> None:
        """Attempt limits shrink to the time left of the total; connect never exceeds them."""
        clock = FakeClock()
        limits: list[tuple[float | None, float | None]] = []

        def handler(request: tether.Request) -> tether.Response:
            limits.append((request.timeout, request.connect_timeout))
            clock.advance(4.0)
            return tether.Response(503)

        c, _ = mock_client(
            handler,
            clock=clock,
            timeout=tether.Timeout(total=10, attempt=5, connect=3),
            retry=tether.Retry(attempts=5, jitter=False, base_delay=1.0, budget=None),
        )
        async with c:
            with pytest.raises(tether.DeadlineExceeded) as info:
                await c.get("/x")
        # t=0: 5 s (own limit); t=5 (4 s attempt + 1 s wait): 5 s left.
        assert limits == [(5.0, 3.0), (5.0, 3.0)]
        # t=9 after the second attempt: a 2 s wait would cross the deadline, so it is not started.
        assert clock.sleeps == [1.0]
        assert isinstance(info.value.__cause__, tether.ServerError)

    async def test_per_call_timeout_sets_every_limit(self) -> None:
        """A Timeout passed to one call replaces the client's attempt and connect limits too."""
        limits: list[tuple[float | None, float | None]] = []

        def handler(request: tether.Request) -> tether.Response:
            limits.append((request.timeout, request.connect_timeout))
            return tether.Response(200)

        c, _ = mock_client(handler, timeout=tether.Timeout(total=60, attempt=30, connect=10))
        async with c:
            await c.get("/x", timeout=tether.Timeout(total=None, attempt=2, connect=1))
            await c.get("/x")
        assert limits == [(2.0, 1.0), (30.0, 10.0)]

    async def test_float_timeout_bounds_the_whole_call(self) -> None:
        """timeout=3.0 caps the first attempt at 3 s and the connect phase too."""
        limits: list[tuple[float | None, float | None]] = []

        def handler(request: tether.Request) -> tether.Response:
            limits.append((request.timeout, request.connect_timeout))
            return tether.Response(200)

        c, _ = mock_client(handler, timeout=3.0)
        async with c:
            await c.get("/x")
        assert limits == [(3.0, 3.0)]

    @pytest.mark.parametrize("bad", [0, -1, float("nan"), "10"])
    def test_bad_timeouts(self, bad: object) -> None:
        """Zero, negative, NaN or non-numeric timeouts are ConfigErrors."""
        with pytest.raises(tether.ConfigError):
            tether.Client("https://x.example.com", timeout=bad)  # type: ignore[arg-type]

    def test_bad_retry(self) -> None:
        """Retry(attempts=0) is refused: attempts count the first try."""
        with pytest.raises(tether.ConfigError, match="first try"):
            tether.Retry(attempts=0)


class TestSyncClient:
    def test_many_threads_share_one_client(self, server_thread: str) -> None:
        """Eight threads calling one SyncClient at once all get their answers."""
        with tether.SyncClient(server_thread) as client:

            def work(n: int) -> list[int]:
                return [client.get_json("/echo", params={"n": n * 100 + i})["n"] for i in range(25)]

            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(work, range(8)))
        assert [sorted(r) for r in results] == [[n * 100 + i for i in range(25)] for n in range(8)]

    def test_sync_errors_and_models(self, server_thread: str) -> None:
        """The blocking client raises the same errors and validates the same models."""
        with tether.SyncClient(server_thread, retry=None) as client:
            assert client.get_json("/device", model=Device) == Device(id=7, name="hall")
            with pytest.raises(tether.NotFoundError):
                client.get("/missing")

    def test_build_and_send(self, server_thread: str) -> None:
        """SyncClient has build_request and send like Client."""
        with tether.SyncClient(server_thread) as client:
            request = client.build_request("GET", "/echo", params={"n": 3})
            assert client.send(request).json() == {"n": 3}

    def test_closed_sync_client(self, server_thread: str) -> None:
        """A closed SyncClient refuses further calls; closing twice is harmless."""
        client = tether.SyncClient(server_thread)
        client.close()
        client.close()
        with pytest.raises(tether.ConfigError, match="closed"):
            client.get("/device")

    def test_sync_client_cannot_borrow_a_session(self) -> None:
        """A loop-bound aiohttp session cannot be shared with the blocking client's own loop."""
        with pytest.raises(tether.ConfigError, match="own event loop"):
            tether.SyncClient("https://x.example.com", session=object())


@pytest.fixture
def server_thread(thread_server: ThreadServerFactory) -> str:
    """A real aiohttp server on loopback in a thread, for the blocking client's tests."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"n": int(request.query["n"])})

    async def device(_: web.Request) -> web.Response:
        return web.json_response({"id": 7, "name": "hall"})

    return thread_server({"/echo": echo, "/device": device})
