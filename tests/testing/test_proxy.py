"""The TCP fault proxy: Toxiproxy's toxics in front of a real server, and its HTTP API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

import tether
from tether.testing import FakeClock, FaultProxy, MockAPI, MockServer, Reply, Toxic

BODY = "x" * 20_000
SHORT = tether.Timeout(total=30.0, connect=5.0, attempt=0.5)


@pytest.fixture
async def upstream() -> AsyncIterator[MockServer]:
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/small", Reply(json={"ok": True}))
    api.stub("GET", "/big", Reply(body=BODY))
    async with api.serve() as server:
        yield server


@pytest.fixture
async def proxies() -> AsyncIterator[FaultProxy]:
    async with FaultProxy(seed=11) as fault_proxy:
        yield fault_proxy


def address(server: MockServer) -> str:
    return f"{server.host}:{server.port}"


async def test_clean_proxy_relays_both_ways(upstream: MockServer, proxies: FaultProxy) -> None:
    """Without toxics the proxy is transparent."""
    proxy = await proxies.create("api", upstream=address(upstream))
    async with tether.Client(proxy.url, retry=None) as client:
        assert (await client.get("/small")).json() == {"ok": True}
        assert (await client.get("/big")).text == BODY


async def test_latency_toxic_delays_the_answer(upstream: MockServer, proxies: FaultProxy) -> None:
    """A 150 ms downstream latency makes the call take at least that long."""
    proxy = await proxies.create("api", upstream=address(upstream))
    proxy.add_toxic(Toxic(type="latency", attributes={"latency": 150}))
    async with tether.Client(proxy.url, retry=None) as client:
        started = time.monotonic()
        await client.get("/small")
    assert time.monotonic() - started >= 0.15


async def test_bandwidth_toxic_throttles(upstream: MockServer, proxies: FaultProxy) -> None:
    """At 100 KB/s a 20 KB body needs about 0.2 s."""
    proxy = await proxies.create("api", upstream=address(upstream))
    proxy.add_toxic(Toxic(type="bandwidth", attributes={"rate": 100}))
    async with tether.Client(proxy.url, retry=None) as client:
        started = time.monotonic()
        assert len((await client.get("/big")).content) == len(BODY)
    assert time.monotonic() - started >= 0.18


async def test_reset_peer_is_a_network_failure(upstream: MockServer, proxies: FaultProxy) -> None:
    """reset_peer with timeout 0 resets every connection: the request fails after sending."""
    proxy = await proxies.create("api", upstream=address(upstream))
    proxy.add_toxic(Toxic(type="reset_peer", stream="upstream", attributes={"timeout": 0}))
    async with tether.Client(proxy.url, retry=None) as client:
        with pytest.raises(tether.RequestError):
            await client.get("/small")


async def test_timeout_toxic_swallows_data_until_the_client_gives_up(
    upstream: MockServer, proxies: FaultProxy
) -> None:
    """timeout 0 drops everything and never closes: only the client's timeout ends it."""
    proxy = await proxies.create("api", upstream=address(upstream))
    proxy.add_toxic(Toxic(type="timeout", stream="upstream", attributes={"timeout": 0}))
    async with tether.Client(proxy.url, retry=None, timeout=SHORT) as client:
        with pytest.raises(tether.ReadTimeout):
            await client.get("/small")


async def test_limit_data_cuts_the_body(upstream: MockServer, proxies: FaultProxy) -> None:
    """limit_data closes the connection after N bytes: a truncated body, NetworkError."""
    proxy = await proxies.create("api", upstream=address(upstream))
    proxy.add_toxic(Toxic(type="limit_data", attributes={"bytes": 1000}))
    async with tether.Client(proxy.url, retry=None) as client:
        with pytest.raises(tether.NetworkError):
            await client.get("/big")


async def test_slicer_and_slow_close_still_deliver(
    upstream: MockServer, proxies: FaultProxy
) -> None:
    """Slicing the stream and delaying the close change timing, not content."""
    proxy = await proxies.create("api", upstream=address(upstream))
    proxy.add_toxic(Toxic(type="slicer", attributes={"average_size": 512, "size_variation": 100}))
    proxy.add_toxic(Toxic(type="slow_close", attributes={"delay": 50}))
    async with tether.Client(proxy.url, retry=None) as client:
        assert (await client.get("/big")).text == BODY


async def test_disabled_proxy_refuses_connections(
    upstream: MockServer, proxies: FaultProxy
) -> None:
    """A disabled proxy is down: the connection is refused, so even a POST is safe to retry."""
    proxy = await proxies.create("api", upstream=address(upstream))
    url = proxy.url
    await proxy.set_enabled(False)
    async with tether.Client(url, retry=None) as client:
        with pytest.raises(tether.ConnectError):
            await client.post("/small")


async def test_toxicity_is_seeded(upstream: MockServer) -> None:
    """With toxicity 0.5 the same seed poisons the same connections in every run."""
    patterns = []
    for _ in range(2):
        async with FaultProxy(seed=3) as fault_proxy:
            proxy = await fault_proxy.create("api", upstream=address(upstream))
            proxy.add_toxic(
                Toxic(type="reset_peer", stream="upstream", toxicity=0.5, attributes={"timeout": 0})
            )
            outcomes = []
            for _ in range(12):
                # A new client per call: one connection each, one toxicity roll each.
                async with tether.Client(proxy.url, retry=None) as client:
                    try:
                        await client.get("/small")
                        outcomes.append(True)
                    except tether.RequestError:
                        outcomes.append(False)
            patterns.append(outcomes)
    assert patterns[0] == patterns[1]
    assert 0 < patterns[0].count(False) < 12


def test_toxics_are_validated() -> None:
    """Unknown types, attributes or streams and out-of-range toxicity are ConfigErrors."""
    with pytest.raises(tether.ConfigError, match="unknown toxic type"):
        Toxic(type="meteor")
    with pytest.raises(tether.ConfigError, match="no attribute"):
        Toxic(type="latency", attributes={"lag": 1})
    with pytest.raises(tether.ConfigError, match="stream"):
        Toxic(type="latency", stream="sideways")  # type: ignore[arg-type]
    with pytest.raises(tether.ConfigError, match="toxicity"):
        Toxic(type="latency", toxicity=2)
    assert Toxic(type="latency").name == "latency_downstream"


async def test_toxiproxy_http_api(upstream: MockServer, proxies: FaultProxy) -> None:
    """The Toxiproxy API creates proxies and toxics, lists, updates, deletes and resets them,
    with Toxiproxy's status codes."""
    async with proxies.serve_api() as api_url, aiohttp.ClientSession(api_url) as http:
        async with http.get("/version") as response:
            assert (await response.text()).startswith("2.")
        spec = {"name": "api", "listen": "127.0.0.1:0", "upstream": address(upstream)}
        async with http.post("/proxies", json=spec) as response:
            assert response.status == 201
            listen = (await response.json())["listen"]
        async with http.post("/proxies", json=spec) as response:
            assert response.status == 409
        toxic = {"type": "latency", "attributes": {"latency": 120}, "stream": "downstream"}
        async with http.post("/proxies/api/toxics", json=toxic) as response:
            assert response.status == 200
            assert (await response.json())["name"] == "latency_downstream"
        async with http.post(
            "/proxies/api/toxics/latency_downstream", json={"attributes": {"latency": 130}}
        ) as response:
            assert (await response.json())["attributes"]["latency"] == 130
        async with tether.Client(f"http://{listen}", retry=None) as client:
            started = time.monotonic()
            await client.get("/small")
            assert time.monotonic() - started >= 0.13
        async with http.get("/proxies") as response:
            listed = await response.json()
            assert listed["api"]["toxics"][0]["attributes"]["latency"] == 130
        async with http.post("/proxies/api", json={"enabled": False}) as response:
            assert (await response.json())["enabled"] is False
        async with http.post("/reset") as response:
            assert response.status == 204
        async with http.get("/proxies/api") as response:
            body = await response.json()
            assert body["enabled"] is True
            assert body["toxics"] == []
        async with http.post("/populate", json=[{**spec, "name": "other"}]) as response:
            assert response.status == 201
        async with http.delete("/proxies/other") as response:
            assert response.status == 204
        async with http.get("/proxies/other") as response:
            assert response.status == 404
        async with http.post("/proxies/api/toxics", json={"type": "nope"}) as response:
            assert response.status == 400
        async with http.delete("/proxies/api/toxics/missing") as response:
            assert response.status == 404
